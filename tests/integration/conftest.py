"""The running stack for integration tests: one mock server and one proxy on
ephemeral ports for the whole session (config-mock.toml, pointed at the mock)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import ServerProcess


@dataclass(frozen=True)
class Stack:
    mock_url: str
    proxy_url: str
    mock: ServerProcess
    proxy: ServerProcess


@pytest.fixture(scope="session")
def stack():
    mock = ServerProcess(["mock"])
    try:
        proxy = ServerProcess(["serve", "--config", "config-mock.toml"], env={"MOCK_URL": mock.url})
    except Exception:
        mock.stop()
        raise
    yield Stack(mock.url, proxy.url, mock, proxy)
    proxy.stop()
    mock.stop()
