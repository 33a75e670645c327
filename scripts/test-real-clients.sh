#!/usr/bin/env bash
# Real agent CLIs (Claude Code, Gemini CLI, Codex) through the proxy and the mock, once per
# configured backend, each finishing a tool loop. Options and exit status: --help
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$repo/.venv/bin/python" ]; then
    python="$repo/.venv/bin/python"
else
    python="python3"
fi
# No cd: relative --config/--json paths stay relative to where the user stands.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m scripts.real_clients "$@"
