"""Where the matrix finds its fixtures and config, its default ports, per-cell timeout and exit codes."""
from __future__ import annotations

from pathlib import Path

from mocks.scenarios import DEFAULT_ROOT

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = DEFAULT_ROOT
DEFAULT_CONFIG = "config-mock.toml"
MOCK_PORT = 8888
PROXY_PORT = 9001
REQUEST_TIMEOUT = (5, 60)  # (connect, read) seconds per cell

EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 130


def _config_path(value: str | Path) -> Path:
    """A relative path is taken from the current directory, else from the repository."""
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path.resolve()
    return REPO / path
