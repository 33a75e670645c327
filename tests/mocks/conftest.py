"""One mock server process per test session (starting one per test would
dominate the run time), plus the fixture library read in-process."""
from __future__ import annotations

import pytest

from mocks.scenarios import ScenarioLibrary
from tests.conftest import ServerProcess


@pytest.fixture(scope="session")
def mock_server():
    server = ServerProcess(["mock"])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mock_url(mock_server) -> str:
    return mock_server.url


@pytest.fixture(scope="session")
def library() -> ScenarioLibrary:
    return ScenarioLibrary()
