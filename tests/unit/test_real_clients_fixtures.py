"""The real-clients run's tool call: each provider's function_calling fixture, retargeted at a
client's own tool, still means exactly its `expect` streamed and not (same checks as the bundled
fixtures), and leaves every other scenario alone."""
from __future__ import annotations

from pathlib import Path

import pytest

from mocks.scenarios import PROVIDERS, ScenarioLibrary
from scripts.real_clients import CLIENTS, write_scenarios
from tests.mocks.helpers import expected_summary
from tests.mocks.test_fixtures import summarize


@pytest.mark.parametrize("client", ["claude-code", "gemini-cli", "codex"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_retargeted_tool_call_means_expect(tmp_path: Path, client: str, provider: str):
    spec = CLIENTS[client]
    file = tmp_path / "work" / "notes.txt"
    library = write_scenarios(tmp_path / "scenarios", spec, file)
    scenario = library.get(provider, "function_calling")
    assert scenario.expect["tool_calls"] == [{"name": spec.tool, "arguments": spec.tool_arguments(file)}]
    expected = expected_summary(scenario.expect)
    assert summarize(provider, body=scenario.body) == expected
    assert summarize(provider, frames=scenario.stream) == expected


def test_other_scenarios_are_the_bundled_ones(tmp_path: Path):
    library = write_scenarios(tmp_path / "scenarios", CLIENTS["gemini-cli"], tmp_path / "notes.txt")
    bundled = ScenarioLibrary()
    for provider in PROVIDERS:
        for name in bundled.names(provider):
            if name != "function_calling":
                assert library.get(provider, name).body == bundled.get(provider, name).body
