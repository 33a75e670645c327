"""app.wsgi with provider instances, for tests under gunicorn: INTERCHANGE_CONFIG names the
config, INTERCHANGE_TEST_INSTANCES a JSON file of instances in tests/instance_proxy.py's form.

    INTERCHANGE_CONFIG=config-mock.toml INTERCHANGE_TEST_INSTANCES=i.json \\
        gunicorn -k gevent -w 1 -b 127.0.0.1:9001 tests.instance_wsgi:application
"""
from __future__ import annotations

import dataclasses
import json
import os

from app.config import load_config
from app.server import create_app
from tests.instance_proxy import instances_from

_config = load_config(os.environ["INTERCHANGE_CONFIG"])
with open(os.environ["INTERCHANGE_TEST_INSTANCES"]) as _f:
    _config = dataclasses.replace(_config, instances=instances_from(json.load(_f), _config))
application = create_app(_config)
