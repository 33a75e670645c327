"""The command line: python -m scripts.matrix."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from app.config import ConfigError, load_config
from scripts.matrix.capabilities import CAPABILITIES
from scripts.matrix.defaults import (DEFAULT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SETUP, MOCK_PORT,
                                     PROXY_PORT, _config_path)
from scripts.matrix.frontends import FRONTENDS
from scripts.matrix.report import render_details, render_table, write_report
from scripts.matrix.run import run_matrix
from scripts.matrix.servers import Interrupted, Servers, StartupError, install_signal_handlers, restore_signal_handlers


EPILOG = f"""\
Without --proxy-url/--mock-url the runner starts the mock (python -m app mock --port {MOCK_PORT})
and the proxy (python -m app serve --config CONFIG --port {PROXY_PORT}), waits for GET /health on
both, runs the cells, and stops both servers again, also on Ctrl-C or failure.

Each cell checks meaning, not just HTTP 200: the reply against the fixture's expect: section
(scenarios/<the fixtures the backend kind's mock replays>/<scenario>.yaml), the stream framing
of the frontend, and the one generation request the mock recorded (GET {{mock}}/_mock/requests).
A registry model ([models]) on a backend gets rows of its own.
A cell is n/a only when the backend's (or registry model's) declared capabilities rule it out.

capabilities: {", ".join(CAPABILITIES)}
frontends:    {", ".join(FRONTENDS)}

exit status: 0 every cell passed or is n/a; 1 a cell failed; 2 bad options or the
servers could not be started; 130 interrupted."""


def _csv(known: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(value: str) -> list[str]:
        names = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)} (known: {', '.join(known)})")
        return names
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="matrix", description="Run every frontend x backend x capability cell through the proxy and the mock.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frontend", type=_csv(list(FRONTENDS), "frontend"),
                   help="comma-separated frontends to run (default: all)")
    p.add_argument("--backend", help="comma-separated backends from the config to run (default: all)")
    p.add_argument("--capability", type=_csv(list(CAPABILITIES), "capability"),
                   help="comma-separated capabilities to run (default: all)")
    p.add_argument("--proxy-url", help="test a proxy already running at URL (needs --mock-url; starts nothing)")
    p.add_argument("--mock-url", help="the mock server the running proxy talks to (needs --proxy-url)")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"proxy config naming the backends (default: {DEFAULT_CONFIG} in the repository)")
    p.add_argument("--json", type=Path, metavar="PATH", help='write {"cells": [...]} to PATH')
    p.add_argument("-v", "--verbose", action="store_true", help="print each failing request and response")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.proxy_url) != bool(args.mock_url):
        parser.error("--proxy-url and --mock-url go together")
    config_path = _config_path(args.config)
    try:
        config = load_config(config_path)
    except ConfigError as e:
        parser.error(f"config {config_path}: " + "; ".join(e.problems))
    backends = None
    if args.backend:
        try:
            backends = _csv(list(config.backends), "backend")(args.backend)
        except argparse.ArgumentTypeError as e:
            parser.error(str(e))
    selection = {"frontends": args.frontend, "backends": backends, "capabilities": args.capability}

    previous = install_signal_handlers()
    try:
        if args.proxy_url:
            cells = run_matrix(args.proxy_url, args.mock_url, config, progress=sys.stderr, **selection)
        else:
            with Servers(config_path) as (proxy_url, mock_url):
                print(f"mock at {mock_url}, proxy at {proxy_url}", file=sys.stderr)
                cells = run_matrix(proxy_url, mock_url, config, progress=sys.stderr, **selection)
    except StartupError as e:
        print(f"matrix: {e}", file=sys.stderr)
        return EXIT_SETUP
    except (KeyboardInterrupt, Interrupted):
        print("\nmatrix: interrupted; servers stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        restore_signal_handlers(previous)

    print(render_table(cells))
    if args.verbose and any(c.status == "fail" for c in cells):
        print("\n" + render_details(cells))
    if args.json:
        write_report(cells, args.json)
        print(f"\nreport written to {args.json}", file=sys.stderr)
    return EXIT_FAILED if any(c.status == "fail" for c in cells) else EXIT_OK
