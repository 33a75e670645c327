"""Token counting endpoints (Anthropic count_tokens, Gemini countTokens).

When the routed backend can count (its provider offers the count_tokens
action and it speaks the client's protocol), the proxy asks it; otherwise it answers with an
estimate and says so in the `X-Interchange-Token-Count: estimate` header.
"""
from __future__ import annotations

import logging
from types import ModuleType
from typing import Mapping

from app import ir
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps
from app.protocols import protocol_module, protocol_name
from app.providers.base import COUNT_TOKENS, Call
from app.upstream.http import read_body

log = logging.getLogger("interchange.tokens")

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and JSON
TOKENS_PER_MESSAGE = 4  # role and separators
TOKENS_PER_IMAGE = 1600  # a mid-size image on the providers that publish a formula


def estimate_tokens(req: ir.Request) -> int:
    chars = 0
    images = 0
    for m in req.messages:
        for p in m.parts:
            if isinstance(p, (ir.Text, ir.Refusal)):
                chars += len(p.text)
            elif isinstance(p, ir.Thinking):
                chars += len(p.text)
            elif isinstance(p, ir.ToolCall):
                chars += len(p.name) + len(p.arguments)
            elif isinstance(p, ir.ToolResult):
                chars += len(p.text())
                images += sum(1 for c in p.content if isinstance(c, ir.Image))
            elif isinstance(p, ir.Image):
                images += 1
    for t in req.tools:
        chars += len(t.name) + len(t.description or "") + len(dumps(t.parameters or {}))
    return -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(req.messages) + TOKENS_PER_IMAGE * images


def count_tokens_reply(pipeline, frontend: ModuleType, body: bytes, headers: Mapping[str, str],
                       url_model: str | None = None):
    from app.pipeline import Reply, secrets_of  # the pipeline module imports protocols; keep this one light

    try:
        req = _parse(pipeline, frontend, body, url_model)
        route = pipeline.router.route(req.model, frozenset({"text"}))
        provider = pipeline.providers[route.backend.name]
        backend = protocol_module(provider.wire)
        if COUNT_TOKENS in provider.actions and backend is frontend:
            target, forwarded = pipeline.target_for(route, headers)
            call = Call(model=target.model, body=backend.count_tokens_body(req, target), action=COUNT_TOKENS,
                        headers=forwarded)
            resp = provider.exchange(call, pipeline.client)
            if resp.status_code >= 400:
                raise pipeline._upstream_error(backend, route.backend, secrets_of(provider), resp)
            count = backend.parse_count_tokens(read_body(resp, route.backend))
            return Reply(200, {"Content-Type": "application/json"}, dumps(_render(frontend, count)))
        count = estimate_tokens(req)
        return Reply(200, {"Content-Type": "application/json", "X-Interchange-Token-Count": "estimate"},
                     dumps(_render(frontend, count)))
    except ProxyError as e:
        return pipeline.error_reply(frontend, e)
    except Exception:  # a bug must still answer in the client's envelope (as Pipeline.handle does)
        log.exception("internal error counting tokens for a %s request", protocol_name(frontend))
        return pipeline.error_reply(frontend, ProxyError(ErrorKind.api_error, "Internal proxy error."))


def _parse(pipeline, frontend: ModuleType, body: bytes, url_model: str | None) -> ir.Request:
    from app.pipeline import decode_body
    data = decode_body(body)
    if frontend.__name__.endswith("anthropic"):
        # count_tokens bodies have no max_tokens; the Messages parser requires one.
        data = {**data, "max_tokens": 1}
    elif "generateContentRequest" in data and isinstance(data["generateContentRequest"], dict):
        data = {k: v for k, v in data["generateContentRequest"].items() if k != "model"}
    return frontend.parse_request(data, model=url_model, stream=False)


def _render(frontend: ModuleType, count: int) -> dict:
    if frontend.__name__.endswith("gemini"):
        return {"totalTokens": count}
    return {"input_tokens": count}
