#!/usr/bin/env bash
# Cross-protocol matrix: every frontend x backend x capability through the proxy
# and the mock server. Options and exit status: scripts/test-cross-protocol.sh --help
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$repo/.venv/bin/python" ]; then
    python="$repo/.venv/bin/python"
else
    python="python3"
fi
# No cd: relative --config/--json paths stay relative to where the user stands.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m scripts.matrix "$@"
