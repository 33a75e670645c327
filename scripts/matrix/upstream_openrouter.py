"""Reader of an OpenRouter request the proxy sent upstream: the OpenAI Chat wire at
`/api/v1/chat/completions`, thinking as OpenRouter's `reasoning` object."""
from __future__ import annotations

from typing import Any, Mapping

from scripts.matrix.upstream import OpenAIUpstream, UpstreamView

_NO_USAGE = "streamed upstream request did not ask for usage (stream_options.include_usage)"


class OpenRouterUpstream(OpenAIUpstream):
    def view(self, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> UpstreamView:
        v = super().view(body, path, query)
        # OpenRouter always streams usage last (stream_options is a no-op there): not asking is fine.
        v.problems = [p for p in v.problems if p != _NO_USAGE]
        reasoning = body.get("reasoning")
        if isinstance(reasoning, dict) and reasoning.get("effort") != "none" and reasoning.get("enabled") is not False:
            how = next((f"reasoning.{k}={reasoning[k]}" for k in ("effort", "max_tokens", "enabled") if k in reasoning),
                       None)
            v.thinking = how
        return v

    def place(self, v: UpstreamView, body: Mapping[str, Any], path: str, query: Mapping[str, list[str]]) -> None:
        if path != "/api/v1/chat/completions":
            v.problems.append(f"path {path!r} is not /api/v1/chat/completions")
