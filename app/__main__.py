"""CLI: interchange serve | mock | check-config.

The test harness (the matrix, the benchmark, the real-clients run) drives the
bundled mock and its fixtures, so it runs from a source checkout:
`python -m scripts.matrix`, `python -m scripts.bench` (see the README).

gevent's monkey patching must come before anything imports socket/ssl, so
each server command patches first and imports its app afterwards.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from gevent import monkey
    monkey.patch_all()
    from app.server import serve
    return serve(config_path=args.config, host=args.host, port=args.port, backend=args.backend)


def _mock(args: argparse.Namespace) -> int:
    from gevent import monkey
    monkey.patch_all()
    from mocks.server import DEFAULT_ROOT, serve
    return serve(host=args.host, port=args.port, scenario_root=args.scenarios or DEFAULT_ROOT)


def _check_config(args: argparse.Namespace) -> int:
    from app.config import check_config
    notes, problems = check_config(args.file)
    for line in notes + problems:
        print(line)
    if not problems:
        print(f"{args.file}: OK")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interchange", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the proxy")
    p.add_argument("--config", default=None,
                   help="config file (default: none; MODEL_CONFIG_PATH's models.yaml, backends from the environment)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--backend", default=None, help="default backend when no route matches")

    p = sub.add_parser("mock", help="run the mock provider server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--scenarios", type=Path, default=None, help="scenario folder (default: the bundled scenarios/)")

    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file")

    args = parser.parse_args(argv)
    return {"serve": _serve, "mock": _mock, "check-config": _check_config}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
