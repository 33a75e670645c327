"""A proxy with provider instances, for tests: `python -m tests.instance_proxy --config
config-mock.toml --instances FILE.json --port 0` serves the config with the instances the
JSON file describes (each built on one of its backends), as `interchange serve` would.

Instances are built here, programmatically, from a small description (until the config
files say them, app/config.py): each names the `backend` it is built on (renamed after the
instance; its `url`, `timeout`, `api_key`, `forward_headers` and `settings` overridable, a
setting given as null removed),
its type, mode, endpoints and labels.

    {"bedrock_transparent": {"type": "bedrock", "mode": "transparent", "backend": "bedrock",
                             "endpoints": [["/transparent/bedrock", ["GET", "POST"]]],
                             "region": "us-east-1", "settings": {"aws_access_key_id": "..."}}}
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys


def instances_from(description: dict, config) -> dict:
    from app.instances import Authentication, InstanceConfig, InstancePath
    out = {}
    for name, d in description.items():
        base = config.backends[d["backend"]]
        settings = {k: v for k, v in {**base.settings, **d.get("settings", {})}.items() if v is not None}
        backend = dataclasses.replace(base, name=name, settings=settings, url=d.get("url", base.url),
                                      timeout=d.get("timeout", base.timeout), api_key=d.get("api_key", base.api_key),
                                      forward_headers=tuple(d.get("forward_headers", base.forward_headers)))
        out[name] = InstanceConfig(
            name=name, type=d["type"], mode=d["mode"], backend=backend,
            authentication=Authentication(d.get("auth", "none")),
            endpoints=tuple(InstancePath(path, tuple(methods)) for path, methods in d["endpoints"]),
            protocol=d.get("protocol"), region=d.get("region"), metrics_enabled=d.get("metrics", True),
            extra_labels=d.get("labels", {}))
    return out


def main(argv: list[str] | None = None) -> int:
    from gevent import monkey
    monkey.patch_all()
    from gevent.pywsgi import WSGIServer

    from app.config import load_config
    from app.http_handler import handler_class
    from app.server import create_app

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--instances", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    with open(args.instances) as f:
        config = dataclasses.replace(config, instances=instances_from(json.load(f), config))
    logging.basicConfig(level=config.server.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = WSGIServer(("127.0.0.1", args.port), create_app(config), log=None,
                        error_log=logging.getLogger("interchange.wsgi"),
                        handler_class=handler_class(config.server.head_timeout, config.server.keepalive_timeout))
    server.start()
    print(f"Interchange listening on http://127.0.0.1:{server.address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
