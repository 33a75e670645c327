"""The request inspector (the admin page's): what the proxy does with one client request.

Given a client protocol and either a model and a prompt (composed into that
protocol's smallest request) or a pasted client request, it answers side by side:

    client request   -> the body as the client would send it, and the path it would send it to
    route            -> the Router's decision: backend, upstream model, reason
    upstream request -> method, URL, headers (every secret masked), body, as provider.prepare makes it
    when sent:
    upstream reply   -> status, headers, body as received (secrets masked)
    client reply     -> what the client would get, in its own protocol

It is not a second request path: the decision is Pipeline.plan (the step every client
request starts with), the upstream request is the provider's own prepare, the send is
provider.exchange and the reply is converted by the pipeline's own complete_reply or
upstream_failure. Streams are sent non-streamed (a stream's frames would not fit a
pane); the answer says so when the request asked for one. A Responses request sent here
is not kept in the state store (the request path's keeper is not called).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from app.errors import ProxyError, redact, redact_error
from app.jsonutil import loads
from app.pipeline import Pipeline, Plan, Reply, decode_body, secrets_of
from app.protocols import protocol_module
from app.protocols.base import UpstreamRequest
from app.upstream.http import read_body

log = logging.getLogger("interchange.inspector")

MASK = "[MASKED]"
# Headers that carry a credential, in any provider's scheme: never shown.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key",
                                "x-amz-security-token", "cookie", "set-cookie"})
# A signature scheme's parameters say which key and headers were signed: worth seeing. Only
# the signature itself is masked (SigV4's `Signature=<hex>`, OCI's `signature="<base64>"`).
_SIGNED = re.compile(r"^(AWS4-HMAC-SHA256 |Signature )")
_SIGNATURE = re.compile(r'((?:^|[\s,])[Ss]ignature=)("?)[^",\s]+')
_MAX_SHOWN_REPLY = 1024 * 1024  # a larger upstream reply is not shown: the answer says it is too large


@dataclass(frozen=True, slots=True)
class ClientProtocol:
    """A protocol a client may speak to the proxy, as the inspector composes its requests."""
    name: str  # the app.protocols name
    label: str
    path: str  # where the client sends it; {model} for protocols that put the model in the URL
    compose: Callable[[str, str], dict]  # (model, prompt) -> the smallest request body
    model_in_url: bool = False
    stream_fields: tuple[str, ...] = ("stream", "stream_options")  # what a streamed request adds


CLIENT_PROTOCOLS: dict[str, ClientProtocol] = {p.name: p for p in (
    ClientProtocol("openai", "OpenAI Chat Completions", "/v1/chat/completions",
                   lambda model, prompt: {"model": model, "messages": [{"role": "user", "content": prompt}]}),
    ClientProtocol("openai_responses", "OpenAI Responses", "/v1/responses",
                   lambda model, prompt: {"model": model, "input": prompt}),
    ClientProtocol("anthropic", "Anthropic Messages", "/v1/messages",
                   lambda model, prompt: {"model": model, "max_tokens": 1024,
                                          "messages": [{"role": "user", "content": prompt}]}),
    ClientProtocol("gemini", "Gemini generateContent", "/v1beta/models/{model}:generateContent",
                   lambda model, prompt: {"contents": [{"role": "user", "parts": [{"text": prompt}]}]},
                   model_in_url=True, stream_fields=()),
)}

STREAM_NOTE = ("The request asks for a stream; the inspector sends it non-streamed (a stream's frames do not "
               "fit a pane), so the upstream request here is the non-streamed one.")


class InspectorError(Exception):
    """What stopped the inspector, with what was built before: bad input (a 400 naming the
    field), or a backend whose credentials cannot be had (a 502: the proxy's problem, not the input's)."""

    def __init__(self, message: str, param: str | None = None, stage: str = "input", status: int = 400,
                 **shown: Any):
        super().__init__(message)
        self.message, self.param, self.stage, self.status, self.shown = message, param, stage, status, shown

    def body(self) -> dict:
        return {"error": {"message": self.message, "param": self.param, "stage": self.stage}, **self.shown}


def inspect(pipeline: Pipeline, data: object) -> tuple[int, dict]:
    """The inspector's answer to one request (the decoded JSON the page posted): (200, panes)
    or (400 or 502, {"error": {...}, and the panes built before the error}). Never raises."""
    try:
        return 200, _inspect(pipeline, data)
    except InspectorError as e:
        return e.status, e.body()
    except Exception:  # a bug: the page still gets a JSON answer
        log.exception("request inspector: internal error")
        return 500, {"error": {"message": "Internal error in the request inspector (see the proxy's log).",
                               "param": None, "stage": "internal"}}


def _inspect(pipeline: Pipeline, data: object) -> dict:
    if not isinstance(data, dict):
        raise InspectorError("The inspector takes a JSON object: protocol, and model + prompt or request.")
    protocol = _protocol(data.get("protocol"))
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise InspectorError("`model` must be a string.", "model")
    model = (model or "").strip() or None
    send = data.get("send", False)
    if not isinstance(send, bool):
        raise InspectorError("`send` must be true or false.", "send")
    body = _client_body(protocol, data, model)
    notes: list[str] = []
    if body.get("stream") is True:
        notes.append(STREAM_NOTE)
    sent = {k: v for k, v in body.items() if k not in protocol.stream_fields}
    url_model = None
    if protocol.model_in_url:
        if model is None:
            raise InspectorError(f"{protocol.label} puts the model in the URL: pick a model.", "model")
        url_model = model
    client = {"method": "POST", "path": protocol.path.format(model=url_model or ""), "body": body}
    shown: dict[str, Any] = {"protocol": protocol.name, "notes": notes, "client_request": client}

    frontend = protocol_module(protocol.name)
    outcome: dict[str, str] = {}
    try:
        plan = pipeline.plan(frontend, sent, {}, url_model=url_model, url_stream=False if url_model else None,
                             outcome=outcome)
    except ProxyError as e:
        if "reason" not in outcome:
            stage = "parse"
        elif outcome["reason"] == "failed":
            stage = "route"
        else:  # routed, then refused by the backend's writer (a field it cannot carry)
            stage, shown["route"] = "build", {"backend": outcome["backend"], "reason": outcome["reason"]}
        raise InspectorError(e.message, e.param, stage, **shown) from None
    shown["route"] = _route(plan)
    try:
        upstream = plan.provider.prepare(plan.call)
    except ProxyError as e:  # credentials that cannot be had (a token endpoint down, no AWS credentials)
        raise InspectorError(redact(e.message, secrets_of(plan.provider)), None, "prepare", 502, **shown) from None
    secrets = secrets_of(plan.provider)  # after prepare: a token fetched now is one of them
    shown["upstream_request"] = _shown_request(upstream, secrets)
    if send:
        shown["upstream_reply"], reply = _send(pipeline, frontend, plan)
        shown["client_reply"] = _shown_reply(reply.status, reply.headers, _bytes(reply.body), ())
    return shown


def _protocol(name: object) -> ClientProtocol:
    protocol = CLIENT_PROTOCOLS.get(name) if isinstance(name, str) else None
    if protocol is None:
        raise InspectorError(f"Unknown client protocol {name!r}; one of: {', '.join(CLIENT_PROTOCOLS)}.",
                             "protocol")
    return protocol


def _client_body(protocol: ClientProtocol, data: dict, model: str | None) -> dict:
    """The pasted request (a JSON object or its text), or the one composed from model and prompt."""
    pasted = data.get("request")
    if isinstance(pasted, str) and pasted.strip():
        try:
            pasted = decode_body(pasted.encode())
        except ProxyError as e:
            raise InspectorError(f"The pasted request: {e.message}", "request") from None
    if isinstance(pasted, dict):
        if model is not None and not protocol.model_in_url and "model" not in pasted:
            pasted = {"model": model, **pasted}
        return pasted
    if pasted not in (None, ""):
        raise InspectorError("`request` must be a JSON object (or its text).", "request")
    prompt = data.get("prompt")
    if model is None:
        raise InspectorError("Pick a model (or paste a client request).", "model")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InspectorError("Write a prompt (or paste a client request).", "prompt")
    return protocol.compose(model, prompt)


def _route(plan: Plan) -> dict:
    backend = plan.route.backend
    return {"backend": backend.name, "kind": backend.kind, "protocol": plan.provider.wire,
            "upstream_model": plan.route.upstream_model, "reason": plan.route.reason,
            "passthrough": plan.same}


def _send(pipeline: Pipeline, frontend, plan: Plan) -> tuple[dict, Reply]:
    """Send the plan's call as the request path does (provider.exchange) and convert the reply with
    the pipeline's own steps: (the upstream reply as shown, the client's reply)."""
    provider, cfg = plan.provider, plan.route.backend
    try:
        resp = provider.exchange(plan.call, pipeline.client)
    except ProxyError as e:  # no answer at all (refused, timed out)
        secrets = secrets_of(provider)
        return ({"error": redact(e.message, secrets)},
                pipeline.error_reply(frontend, redact_error(e, secrets)))
    secrets = secrets_of(provider)
    try:
        body = read_body(resp, cfg, limit=_MAX_SHOWN_REPLY)
    except ProxyError as e:
        return ({"status": resp.status_code, "headers": _masked_headers(resp.headers, secrets),
                 "error": redact(e.message, secrets)}, pipeline.error_reply(frontend, e))
    shown = _shown_reply(resp.status_code, resp.headers, body, secrets)
    if resp.status_code >= 400:
        err = pipeline.upstream_failure(plan, secrets, resp.status_code, resp.headers, body)
        return shown, pipeline.error_reply(frontend, err)
    try:
        reply = pipeline.complete_reply(frontend, plan.wire, cfg, plan.req, body, plan.same, plan.target, secrets)
    except ProxyError as e:
        reply = pipeline.error_reply(frontend, e)
    return shown, reply


# ------------------------------------------------------------------ showing, masked


def _shown_request(req: UpstreamRequest, secrets: tuple[str, ...]) -> dict:
    return {"method": req.method, "url": redact(req.url, secrets),
            "headers": _masked_headers(req.headers, secrets), **_shown_body(req.body, secrets)}


def _shown_reply(status: int, headers: Mapping[str, str], body: bytes, secrets: tuple[str, ...]) -> dict:
    return {"status": status, "headers": _masked_headers(headers, secrets), **_shown_body(body, secrets)}


def _masked_headers(headers: Mapping[str, str], secrets: tuple[str, ...]) -> dict[str, str]:
    return {name: masked_header(name, value, secrets) for name, value in headers.items()}


def masked_header(name: str, value: str, secrets: tuple[str, ...] = ()) -> str:
    """A header as the page shows it: a credential header's value masked (a signature scheme
    keeps its parameters, only the signature goes), any other value with the provider's secrets
    masked wherever they appear."""
    if name.lower() in CREDENTIAL_HEADERS:
        if _SIGNED.match(value):
            return redact(_SIGNATURE.sub(lambda m: m.group(1) + m.group(2) + MASK, value), secrets)
        scheme, space, _ = value.partition(" ")
        return f"{scheme} {MASK}" if space and scheme.isalpha() else MASK
    return redact(value, secrets)


def _shown_body(body: bytes, secrets: tuple[str, ...]) -> dict:
    """{"body": JSON value | text} or, for bytes that are not text (an AWS event stream),
    {"body": None, "body_note": "binary, N bytes"}."""
    if not body:
        return {"body": None, "body_note": "empty"}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"body": None, "body_note": f"binary, {len(body)} bytes (not shown)"}
    text = redact(text, secrets)
    try:
        return {"body": loads(text)}
    except ValueError:
        return {"body": text, "body_note": "not JSON"}


def _bytes(body) -> bytes:
    return body if isinstance(body, (bytes, bytearray)) else b"".join(body)


def protocols_for_page() -> list[dict[str, Any]]:
    """The client protocols the page offers, in order."""
    return [{"name": p.name, "label": p.label, "model_in_url": p.model_in_url} for p in CLIENT_PROTOCOLS.values()]

