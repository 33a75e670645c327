"""IBM watsonx.ai text chat and text generation, and the IBM Cloud IAM token service in front
of it (protocols B §2).

- IAM: `POST /identity/token`, form `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=…`
  (the test key API_KEY), answered with a JWT-shaped access token (IBM's SDKs decode its
  `iat`/`exp`) and its `expires_in` / `expiration`. Test hooks: `GET /_mock/iam` counts token
  requests and issued tokens; `POST /_mock/iam {"expires_in": N}` sets the lifetime of tokens
  issued from then on; `POST /_mock/iam {"revoke": true}` revokes every token issued so far;
  `DELETE /_mock/iam` resets counters and lifetime.
- watsonx: `POST /ml/v1/text/chat`, `/text/chat_stream`, `/text/generation`,
  `/text/generation_stream`, each with `?version=YYYY-MM-DD` (missing or malformed: 400) and an
  IAM bearer token this mock issued and that has neither expired nor been revoked (else 401
  `authentication_token_expired` / `authorization_rejected`); the body names exactly one of
  `project_id` / `space_id` and a `model_id` the mock serves with that API; unknown fields are
  refused (400 `json_validation_error` naming the field), as the service's JSON schema does.
- Replies replay the OpenAI Chat fixtures (scenarios/openai: the content is the same), written
  in watsonx's wire: chat replies with `model_id`, `created_at` and plain OpenAI usage; chat
  streams as `id: N` / `event: message` frames with the usage chunk always sent and no
  `[DONE]`; generation replies as `results[0]` (`generated_text`, token counts, `stop_reason`),
  streamed with text deltas, a cumulative output count and the input count in the first event;
  errors in `{"errors": [...], "trace", "status_code"}`; an in-stream error as `event: error`.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from mocks import replay
from mocks.provider import Call, Provider
from mocks.replay import Lookup
from mocks.scenarios import ScenarioFrame, fill_text
from mocks.wire import ApiError, compact_json, json_type_name, stable_id

API_KEY = "mock-watsonx-api-key"
GRANT_TYPE = "urn:ibm:params:oauth:grant-type:apikey"
DEFAULT_LIFETIME = 3600
DOCS = "https://cloud.ibm.com/apidocs/watsonx-ai"
# model id -> the text APIs it serves
MODELS = {
    "ibm/granite-3-8b-instruct": {"chat", "generation"},
    "ibm/granite-3-2-8b-instruct": {"chat", "generation"},
    "meta-llama/llama-3-3-70b-instruct": {"chat", "generation"},
    "meta-llama/llama-3-1-8b-instruct": {"chat", "generation"},
    "ibm/granite-3-8b-base": {"generation"},
}
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FIRST_VERSION = "2023-05-29"

CHAT_FIELDS = frozenset({
    "model_id", "project_id", "space_id", "messages", "tools", "tool_choice_option", "tool_choice", "max_tokens",
    "max_completion_tokens", "temperature", "top_p", "stop", "n", "frequency_penalty", "presence_penalty", "seed",
    "logprobs", "top_logprobs", "response_format", "time_limit", "include_reasoning", "reasoning_effort",
    "guided_choice", "guided_regex", "guided_grammar", "guided_json", "repetition_penalty", "length_penalty",
    "context",
})
GENERATION_FIELDS = frozenset({"model_id", "project_id", "space_id", "input", "parameters", "moderations"})
PARAMETER_FIELDS = frozenset({
    "decoding_method", "max_new_tokens", "min_new_tokens", "temperature", "top_k", "top_p", "stop_sequences",
    "repetition_penalty", "random_seed", "time_limit", "truncate_input_tokens", "include_stop_sequence",
    "length_penalty", "return_options",
})
MESSAGE_FIELDS = {
    "system": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "reasoning_content"},
    "tool": {"role", "content", "tool_call_id"},
}
TOOL_CHOICE_OPTIONS = ("none", "auto", "required")
REASONING_EFFORTS = ("low", "medium", "high")
_FINISH_TO_GENERATION = {"stop": "eos_token", "length": "max_tokens", "tool_calls": "eos_token"}


def watsonx_error(status: int, code: str, message: str, *, target: str | None = None,
                  api: str = "text-chat") -> ApiError:
    item: dict[str, Any] = {"code": code, "message": message, "more_info": f"{DOCS}#{api}"}
    if target is not None:
        item["target"] = {"type": "field", "name": target}
    return ApiError(status, {"errors": [item], "trace": secrets.token_hex(16), "status_code": status})


# ------------------------------------------------------------------ IAM


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class IamIssuer:
    """IBM Cloud IAM for the test key: expiring JWT-shaped access tokens."""
    lifetime: int = DEFAULT_LIFETIME
    token_requests: int = 0
    tokens_issued: int = 0
    _issued: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch seconds)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def grant(self, form_body: bytes) -> tuple[int, dict]:
        with self._lock:
            self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(form_body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != GRANT_TYPE:
            return 400, _iam_error("BXNIM0308E", "Grant type is not supported.")
        if not form.get("apikey"):
            return 400, _iam_error("BXNIM0109E", "Property missing or empty. Property name(s): 'apikey'.")
        if form["apikey"] != API_KEY:
            return 400, _iam_error("BXNIM0415E", "Provided API key could not be found.")
        now = int(time.time())
        with self._lock:
            lifetime = self.lifetime
        claims = {"iam_id": "IBMid-mock", "sub": "mock@example.com", "iat": now, "exp": now + lifetime,
                  "jti": secrets.token_hex(8), "scope": "ibm openid"}
        token = ".".join((_b64url(b'{"kid":"mock","alg":"RS256"}'), _b64url(json.dumps(claims).encode()),
                          _b64url(secrets.token_bytes(32))))
        with self._lock:
            self._issued[token] = now + lifetime
            self.tokens_issued += 1
        return 200, {"access_token": token, "refresh_token": "not_supported", "token_type": "Bearer",
                     "expires_in": lifetime, "expiration": now + lifetime, "scope": "ibm openid"}

    def check(self, token: str) -> str | None:
        """None for a live token; else why it is refused ("expired" or "unknown")."""
        with self._lock:
            expiry = self._issued.get(token)
        if expiry is None:
            return "unknown"
        return None if time.time() < expiry else "expired"

    def revoke(self) -> None:
        with self._lock:
            self._issued.clear()

    def stats(self) -> dict:
        with self._lock:
            return {"token_requests": self.token_requests, "tokens_issued": self.tokens_issued,
                    "expires_in": self.lifetime}

    def reset(self) -> None:
        with self._lock:
            self.token_requests = self.tokens_issued = 0
            self.lifetime = DEFAULT_LIFETIME


def _iam_error(code: str, message: str) -> dict:
    return {"errorCode": code, "errorMessage": message, "context": {"requestId": secrets.token_hex(16)}}


# ------------------------------------------------------------------ watsonx


class _SseWriter:
    """`id: N`, `event: message` (or `error`), `data: <json>` per event; raw text after its id/event lines."""

    def __init__(self) -> None:
        self._n = 0

    def frame(self, frame: ScenarioFrame, lookup: Lookup) -> bytes:
        self._n += 1
        head = f"id: {self._n}\nevent: {frame.event or 'message'}\n"
        if frame.raw is not None:
            return (head + fill_text(frame.raw, lookup)).encode()
        return f"{head}data: {fill_text(frame.encoded(compact_json), lookup)}\n\n".encode()

    def end(self) -> bytes:
        return b""


def _type_error(path: str, expected: str, value: Any, api: str) -> ApiError:
    return watsonx_error(400, "json_type_error", f"Json field type error: {path} must be of type {expected}, "
                         f"got {json_type_name(value)}", target=path, api=api)


class WatsonxProvider(Provider):
    name = "watsonx"
    scenario_set = "openai"  # the same content; the wire is rewritten below

    def __init__(self) -> None:
        self.iam = IamIssuer()

    # ----------------------------------------------------------- rules
    def authenticate(self, call: Call) -> None:
        scheme, _, token = (call.header("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise watsonx_error(401, "authorization_rejected", "Failed to authenticate the request due to no "
                                "Authorization header", api=self._api(call))
        why = self.iam.check(token)
        if why == "expired":
            raise watsonx_error(401, "authentication_token_expired", "Failed to authenticate the request due to "
                                "an expired token", api=self._api(call))
        if why is not None:
            raise watsonx_error(401, "authorization_rejected", "Failed to authenticate the request due to an "
                                "invalid token", api=self._api(call))

    def invalid_json(self, call: Call, detail: str) -> ApiError:
        return watsonx_error(400, "json_validation_error", "Json document validation error: the body is not a "
                             "JSON object", api=self._api(call))

    def too_large(self, call: Call) -> ApiError:
        return watsonx_error(413, "request_entity_too_large", "The request body is too large", api=self._api(call))

    def error(self, status: int, message: str, call: Call) -> ApiError:
        code = "invalid_request_entity" if status < 500 else "internal_server_error"
        return watsonx_error(status, code, message, api=self._api(call))

    def not_found(self, call: Call) -> ApiError:
        return watsonx_error(404, "not_found", f"Path {call.path} not found", api=self._api(call))

    @staticmethod
    def _api(call: Call) -> str:
        return "text-generation" if call.notes.get("api") == "generation" else "text-chat"

    def validate(self, call: Call) -> None:
        api, doc = call.notes["api"], self._api(call)
        version = call.query.get("version")
        if version is None:
            raise watsonx_error(400, "invalid_request_entity", "Missing query parameter 'version'", target="version",
                                api=doc)
        if not _VERSION.match(version) or version < FIRST_VERSION:
            raise watsonx_error(400, "invalid_request_entity", f"Invalid version '{version}': use a date "
                                f"YYYY-MM-DD from {FIRST_VERSION} on", target="version", api=doc)
        body = call.body
        allowed = GENERATION_FIELDS if api == "generation" else CHAT_FIELDS
        for key in body:
            if key not in allowed:
                raise watsonx_error(400, "json_validation_error", f"Json document validation error: '{key}' is not "
                                    "a known field", target=key, api=doc)
        scopes = [k for k in ("project_id", "space_id") if k in body]
        if len(scopes) != 1:
            raise watsonx_error(400, "json_validation_error", "Json document validation error: exactly one of "
                                "project_id or space_id must be given", target="project_id", api=doc)
        if not isinstance(body[scopes[0]], str) or not body[scopes[0]]:
            raise _type_error(scopes[0], "string", body[scopes[0]], doc)
        model = body.get("model_id")
        if not isinstance(model, str) or not model:
            raise watsonx_error(400, "json_validation_error", "Json document validation error: 'model_id' is "
                                "required", target="model_id", api=doc)
        call.model = model
        if model not in MODELS:
            raise watsonx_error(404, "model_not_supported", f"Model '{model}' is not supported", api=doc)
        if api not in MODELS[model]:
            raise watsonx_error(400, "model_no_support_for_function", f"Model '{model}' does not support "
                                f"function 'text_{api}'", target="model_id", api=doc)
        if api == "generation":
            self._validate_generation(body, doc)
        else:
            self._validate_chat(body, doc)

    def _validate_generation(self, body: dict, doc: str) -> None:
        if not isinstance(body.get("input"), str):
            raise _type_error("input", "string", body.get("input"), doc)
        parameters = body.get("parameters", {})
        if not isinstance(parameters, dict):
            raise _type_error("parameters", "object", parameters, doc)
        for key, value in parameters.items():
            if key not in PARAMETER_FIELDS:
                raise watsonx_error(400, "json_validation_error", f"Json document validation error: "
                                    f"'parameters.{key}' is not a known field", target=f"parameters.{key}", api=doc)
        if parameters.get("decoding_method", "greedy") not in ("greedy", "sample"):
            raise watsonx_error(400, "json_validation_error", "parameters.decoding_method must be greedy or sample",
                                target="parameters.decoding_method", api=doc)
        max_new = parameters.get("max_new_tokens")
        if max_new is not None and (not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 0):
            raise _type_error("parameters.max_new_tokens", "non-negative integer", max_new, doc)

    def _validate_chat(self, body: dict, doc: str) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise watsonx_error(400, "json_validation_error", "Json document validation error: 'messages' must be "
                                "a non-empty array", target="messages", api=doc)
        call_ids: set[str] = set()
        for i, m in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(m, dict) or m.get("role") not in MESSAGE_FIELDS:
                raise watsonx_error(400, "json_validation_error", f"{where}.role must be one of "
                                    f"{', '.join(MESSAGE_FIELDS)}", target=f"{where}.role", api=doc)
            for key in m:
                if key not in MESSAGE_FIELDS[m["role"]]:
                    raise watsonx_error(400, "json_validation_error", f"Json document validation error: "
                                        f"'{where}.{key}' is not a known field", target=f"{where}.{key}", api=doc)
            for call in m.get("tool_calls") or ():
                if not isinstance(call, dict) or call.get("type") != "function" or not call.get("id") \
                        or not isinstance((call.get("function") or {}).get("arguments"), str):
                    raise watsonx_error(400, "json_validation_error", f"{where}.tool_calls: each needs id, type "
                                        "function and function.arguments as a string", target=f"{where}.tool_calls",
                                        api=doc)
                call_ids.add(call["id"])
            if m["role"] == "tool" and m.get("tool_call_id") not in call_ids:
                raise watsonx_error(400, "json_validation_error", f"{where}.tool_call_id does not name an earlier "
                                    "tool call", target=f"{where}.tool_call_id", api=doc)
            content = m.get("content")
            if isinstance(content, list):
                if m["role"] != "user":
                    raise _type_error(f"{where}.content", "string", content, doc)
                for j, part in enumerate(content):
                    if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                        raise watsonx_error(400, "json_validation_error", f"{where}.content[{j}].type must be text "
                                            "or image_url", target=f"{where}.content[{j}].type", api=doc)
            elif content is not None and not isinstance(content, str):
                raise _type_error(f"{where}.content", "string", content, doc)
        for i, tool in enumerate(body.get("tools") or ()):
            if not isinstance(tool, dict) or tool.get("type") != "function" \
                    or not isinstance((tool.get("function") or {}).get("name"), str):
                raise watsonx_error(400, "json_validation_error", f"tools[{i}] must be a function with a name",
                                    target=f"tools[{i}]", api=doc)
        option = body.get("tool_choice_option")
        if option is not None and option not in TOOL_CHOICE_OPTIONS:
            raise watsonx_error(400, "json_validation_error", f"tool_choice_option must be one of "
                                f"{', '.join(TOOL_CHOICE_OPTIONS)}", target="tool_choice_option", api=doc)
        choice = body.get("tool_choice")
        if choice is not None and not (isinstance(choice, dict) and choice.get("type") == "function"
                                       and isinstance((choice.get("function") or {}).get("name"), str)):
            raise watsonx_error(400, "json_validation_error", "tool_choice must be {type: function, function: "
                                "{name}} (the string forms go in tool_choice_option)", target="tool_choice", api=doc)
        if ("tool_choice" in body or "tool_choice_option" in body) and not body.get("tools"):
            raise watsonx_error(400, "json_validation_error", "tool_choice needs tools", target="tool_choice",
                                api=doc)
        effort = body.get("reasoning_effort")
        if effort is not None and effort not in REASONING_EFFORTS:
            raise watsonx_error(400, "json_validation_error", "reasoning_effort must be low, medium or high",
                                target="reasoning_effort", api=doc)
        stop = body.get("stop")
        if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            raise _type_error("stop", "array of strings", stop, doc)

    def detect(self, call: Call) -> str:
        if call.notes["api"] == "generation":
            return "text"
        body = call.body
        messages = body["messages"]
        if any(m.get("role") == "tool" for m in messages):
            return "after_tool_result"
        if body.get("tools"):
            return "function_calling"
        if body.get("reasoning_effort") is not None:
            return "thinking"
        if any(m.get("role") == "user" and isinstance(m.get("content"), list)
               and any(p.get("type") == "image_url" for p in m["content"]) for m in messages):
            return "vision"
        return "text"

    # ----------------------------------------------------------- rendering
    def encode_body(self, body: Any, status: int, call: Call) -> bytes:
        return compact_json(body).encode()

    def stream_writer(self, call: Call) -> _SseWriter:
        return _SseWriter()

    def response_headers(self, call: Call) -> dict[str, str]:
        return {"x-global-transaction-id": stable_id(call.path.encode() + call.raw_body, "trace", 32).lower()}

    def select_body(self, body: Any, call: Call) -> Any:
        if not isinstance(body, dict):
            return body
        if "error" in body:
            return _error_envelope(body["error"], self._status_of(call), self._api(call)).body
        choice = (body.get("choices") or [{}])[0]
        message, usage = choice.get("message") or {}, body.get("usage") or {}
        if call.notes["api"] == "generation":
            return {"model_id": call.model, "model_version": "1.1.0", "created_at": _CREATED_AT,
                    "results": [{"generated_text": message.get("content") or "",
                                 "generated_token_count": usage.get("completion_tokens", 0),
                                 "input_token_count": usage.get("prompt_tokens", 0),
                                 "stop_reason": self._stop_reason(choice.get("finish_reason"), call)}]}
        wx_message = {k: message[k] for k in ("role", "content", "tool_calls", "reasoning_content") if k in message}
        return {"id": body.get("id"), "object": "chat.completion", "model_id": call.model, "model": call.model,
                "model_version": "1.1.0", "created": body.get("created"), "created_at": _CREATED_AT,
                "choices": [{"index": 0, "message": wx_message, "finish_reason": choice.get("finish_reason")}],
                "usage": _usage(usage)}

    def select_frames(self, frames: list[ScenarioFrame], call: Call) -> list[ScenarioFrame]:
        if call.notes["api"] == "generation":
            return self._generation_frames(frames, call)
        out = []
        for f in frames:
            data = f.data
            if f.raw is not None:
                out.append(ScenarioFrame(raw=f.raw, delay_ms=f.delay_ms))  # written after its id / event lines
            elif isinstance(data, dict) and "error" in data:
                out.append(ScenarioFrame(event="error", data=_error_envelope(data["error"], 500, "text-chat-stream").body,
                                 delay_ms=f.delay_ms))
            elif isinstance(data, dict):
                out.append(ScenarioFrame(data=self._chunk(data, call), delay_ms=f.delay_ms))
        return out

    def _chunk(self, chunk: dict, call: Call) -> dict:
        out = {"id": chunk.get("id"), "object": "chat.completion.chunk", "model_id": call.model, "model": call.model,
               "model_version": "1.1.0", "created": chunk.get("created"), "created_at": _CREATED_AT,
               "choices": [{"index": c.get("index", 0), "finish_reason": c.get("finish_reason"),
                            "delta": {k: v for k, v in (c.get("delta") or {}).items() if k != "refusal"}}
                           for c in chunk.get("choices") or ()]}
        if "usage" in chunk:
            out["usage"] = _usage(chunk["usage"])
        return out

    def _generation_frames(self, frames: list[ScenarioFrame], call: Call) -> list[ScenarioFrame]:
        usage = next((f.data["usage"] for f in frames if isinstance(f.data, dict) and f.data.get("usage")), {})
        out = [ScenarioFrame(data=self._result("", 0, usage.get("prompt_tokens", 0), "not_finished", call))]
        count = 0
        for f in frames:
            data = f.data
            if f.raw is not None:
                out.append(ScenarioFrame(raw=f.raw, delay_ms=f.delay_ms))
            elif isinstance(data, dict) and "error" in data:
                out.append(ScenarioFrame(event="error", data=_error_envelope(data["error"], 500, "text-generation-stream").body,
                                 delay_ms=f.delay_ms))
            elif isinstance(data, dict):
                for c in data.get("choices") or ():
                    text = (c.get("delta") or {}).get("content") or ""
                    finish = c.get("finish_reason")
                    if text:
                        count += 1
                        out.append(ScenarioFrame(data=self._result(text, count, 0, "not_finished", call), delay_ms=f.delay_ms))
                    if finish is not None:
                        out.append(ScenarioFrame(data=self._result("", usage.get("completion_tokens", count), 0,
                                                           self._stop_reason(finish, call), call), delay_ms=f.delay_ms))
        return out

    @staticmethod
    def _result(text: str, generated: int, prompt: int, stop_reason: str, call: Call) -> dict:
        return {"model_id": call.model, "model_version": "1.1.0", "created_at": _CREATED_AT,
                "results": [{"generated_text": text, "generated_token_count": generated,
                             "input_token_count": prompt, "stop_reason": stop_reason}]}

    @staticmethod
    def _stop_reason(finish: str | None, call: Call) -> str:
        if call.scenario == "stop_sequence":
            return "stop_sequence"
        return _FINISH_TO_GENERATION.get(finish or "stop", "eos_token")

    @staticmethod
    def _status_of(call: Call) -> int:
        return call.notes.get("status", 500)

    def choose_scenario(self, call: Call, library) -> Any:
        scenario = super().choose_scenario(call, library)
        call.notes["status"] = scenario.status  # an error body's envelope repeats it
        return scenario


_CREATED_AT = "2025-10-09T08:53:20.000Z"
_CODE_BY_STATUS = {400: "invalid_input_argument", 401: "authorization_rejected", 404: "not_found",
                   429: "token_quota_reached", 500: "internal_server_error", 503: "service_unavailable"}


def _usage(usage: dict) -> dict:
    return {k: usage.get(k, 0) for k in ("completion_tokens", "prompt_tokens", "total_tokens")}


def _error_envelope(error: dict, status: int, api: str) -> ApiError:
    """An OpenAI fixture error, as watsonx words its own."""
    return watsonx_error(status, _CODE_BY_STATUS.get(status, "internal_server_error"),
                         str(error.get("message") or "Internal error"), target=error.get("param"), api=api)
