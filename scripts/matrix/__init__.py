"""Cross-protocol matrix: every frontend x backend x capability, through the proxy and the mock.

Each cell sends one request in the frontend's wire format (plain `requests`, no SDK:
we check bytes and shapes), reads the reply into one normalized `Reply`, compares it
with the scenario fixture's `expect:` section, then reads the mock's request log and
checks the single generation request the proxy made upstream, read in the wire format of
the backend's kind at that provider's URLs (UPSTREAM_KINDS).

Rows: each backend's first mapped model, plus each registry model on it (`[models]`), whose
capabilities may narrow the backend's. A cell is n/a only where those declared capabilities
rule it out.

    python -m scripts.matrix --help

The package, one job a module: capabilities (what we send), reply (what we read it into),
frontend + one driver module per client protocol (FRONTENDS), upstream (readers of the
request the mock saw) and kinds (which reader serves which backend kind; which mock calls
count), checks, run (rows, cells), servers, report, cli. The names below are what the
tests and scripts/real_clients.py use.
"""
from __future__ import annotations

from scripts.matrix.capabilities import (CAPABILITIES, CAPABILITY_LIST, RED_SQUARE_PNG, TOOL_DESCRIPTION, TOOL_SCHEMA,
                                         Capability, Conversation, Image)
from scripts.matrix.checks import check_reply, check_upstream
from scripts.matrix.cli import main
from scripts.matrix.defaults import DEFAULT_CONFIG, REPO, SCENARIOS, _config_path
from scripts.matrix.frontends import FRONTENDS
from scripts.matrix.kinds import UPSTREAM_KINDS, is_generation_call
from scripts.matrix.reply import Reply, ToolCall
from scripts.matrix.report import TABLE_MARK, render_table
from scripts.matrix.run import Cell, backend_rows, not_applicable, run_matrix
from scripts.matrix.servers import Servers, StartupError
from scripts.matrix.upstream import BedrockUpstream

__all__ = ["CAPABILITIES", "CAPABILITY_LIST", "DEFAULT_CONFIG", "FRONTENDS", "RED_SQUARE_PNG", "REPO",
           "SCENARIOS", "TABLE_MARK", "TOOL_DESCRIPTION", "TOOL_SCHEMA", "UPSTREAM_KINDS", "BedrockUpstream",
           "Capability", "Cell", "Conversation", "Image", "Reply", "Servers", "StartupError", "ToolCall",
           "_config_path", "backend_rows", "check_reply", "check_upstream", "is_generation_call", "main",
           "not_applicable", "render_table", "run_matrix"]
