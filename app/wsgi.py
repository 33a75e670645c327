"""WSGI entry for production servers:

    INTERCHANGE_CONFIG=config.toml gunicorn -k gevent -w 4 -b 0.0.0.0:9001 app.wsgi:application

gunicorn's gevent worker monkey-patches before loading this module. With
several workers, set PROMETHEUS_MULTIPROC_DIR so /metrics aggregates them.
"""
from __future__ import annotations

import logging
import os
import sys

from app.config import load_config
from app.server import create_app

_config = load_config(os.environ.get("INTERCHANGE_CONFIG", "config.toml"))
logging.basicConfig(level=_config.server.log_level.upper(), stream=sys.stdout,
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")
application = create_app(_config, default_backend=os.environ.get("INTERCHANGE_DEFAULT_BACKEND"))
