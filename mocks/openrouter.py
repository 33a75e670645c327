"""OpenRouter (`POST /api/v1/chat/completions`, `GET /api/v1/models`; protocols B §4):
OpenAI's Chat Completions body plus OpenRouter's own fields, a Bearer key checked
against the mock account's, OpenRouter's error envelope `{"error": {"code": <int>,
"message", "metadata"}}`, streams that open with `: OPENROUTER PROCESSING` comments
and always end with the usage chunk (`stream_options` is a no-op there), and
in-stream errors as a chunk with `error` and `finish_reason: "error"`.

Per-model rules, as the real router applies them: a model only reasons
(`reasoning`, `reasoning_effort`) and only takes images if it can; otherwise
reasoning settings are ignored (OpenRouter drops parameters a model does not
support) and images get OpenRouter's 404 "No endpoints found".
"""
from __future__ import annotations

from typing import Any

from flask import Response

from mocks import openai as oa
from mocks.provider import Call
from mocks.scenarios import ScenarioFrame
from mocks.wire import ApiError, compact_json, stable_id

API_KEY = "sk-or-v1-mock-openrouter-key"  # the mock account's key (config-mock.toml's default)

# Model id -> (reasons, takes images, context length).
MODELS: dict[str, tuple[bool, bool, int]] = {
    "meta-llama/llama-3.1-8b-instruct": (False, False, 131072),
    "mistralai/mistral-7b-instruct": (False, False, 32768),
    "deepseek/deepseek-r1": (True, False, 163840),
    "anthropic/claude-sonnet-4.5": (True, True, 1000000),
}
OPENROUTER_FIELDS = frozenset({
    "models", "route", "provider", "plugins", "reasoning", "usage", "transforms", "top_k", "top_a", "min_p",
    "repetition_penalty", "debug", "session_id", "trace", "fallback",
})
TOP_LEVEL_FIELDS = (oa.TOP_LEVEL_FIELDS - {"functions", "function_call"}) | OPENROUTER_FIELDS
PROVIDER_FIELDS = frozenset({
    "order", "allow_fallbacks", "require_parameters", "data_collection", "zdr", "enforce_distillable_text", "only",
    "ignore", "quantizations", "sort", "preferred_min_throughput", "preferred_max_latency", "max_price",
})
REASONING_FIELDS = frozenset({"effort", "max_tokens", "exclude", "enabled", "summary"})
REASONING_BACK = frozenset({"reasoning", "reasoning_details"})  # assistant message fields
EFFORTS = ("max", "xhigh", "high", "medium", "low", "minimal", "none")


def error_body(status: int, message: str, **metadata: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"code": status, "message": message}
    if metadata:
        err["metadata"] = metadata
    return {"error": err}


def invalid(message: str) -> ApiError:
    return ApiError(400, error_body(400, message))


def _as_openrouter(err: ApiError) -> ApiError:
    """An OpenAI-shaped validation error (the shared message checks) in OpenRouter's envelope."""
    inner = err.body.get("error") if isinstance(err.body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else str(err.body)
    return ApiError(err.status, error_body(err.status, message), err.headers)


def _string_list(body: dict, key: str) -> None:
    value = body.get(key)
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) and v for v in value)):
        raise invalid(f"Invalid '{key}': expected an array of strings.")


def _check_openrouter_fields(body: dict) -> None:
    _string_list(body, "models")
    _string_list(body, "transforms")
    for model in body.get("models") or ():
        if model not in MODELS:
            raise invalid(f"{model} is not a valid model ID")
    if body.get("route") is not None and body["route"] not in ("fallback", "sort"):
        raise invalid("Invalid 'route': expected \"fallback\" or \"sort\".")
    provider = body.get("provider")
    if provider is not None:
        if not isinstance(provider, dict):
            raise invalid("Invalid 'provider': expected an object.")
        for key in provider:
            if key not in PROVIDER_FIELDS:
                raise invalid(f"Invalid 'provider': unrecognized key '{key}'.")
        for key in ("order", "only", "ignore", "quantizations"):
            _string_list(provider, key)
        if provider.get("allow_fallbacks") is not None and not isinstance(provider["allow_fallbacks"], bool):
            raise invalid("Invalid 'provider.allow_fallbacks': expected a boolean.")
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise invalid("Invalid 'reasoning': expected an object.")
        for key in reasoning:
            if key not in REASONING_FIELDS:
                raise invalid(f"Invalid 'reasoning': unrecognized key '{key}'.")
        if reasoning.get("effort") is not None and reasoning["effort"] not in EFFORTS:
            raise invalid(f"Invalid 'reasoning.effort': expected one of {', '.join(EFFORTS)}.")
        if "effort" in reasoning and "max_tokens" in reasoning:
            raise invalid("Invalid 'reasoning': give effort or max_tokens, not both.")
        budget = reasoning.get("max_tokens")
        if budget is not None and (not oa._is_int(budget) or budget < 1):
            raise invalid("Invalid 'reasoning.max_tokens': expected a positive integer.")
        for key in ("exclude", "enabled"):
            if reasoning.get(key) is not None and not isinstance(reasoning[key], bool):
                raise invalid(f"Invalid 'reasoning.{key}': expected a boolean.")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        raise invalid(f"Invalid 'reasoning_effort': expected one of {', '.join(EFFORTS)}.")


def _asks_reasoning(body: dict) -> bool:
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict):
        if reasoning.get("enabled") is False or reasoning.get("effort") == "none":
            return False
        if reasoning.get("effort") or reasoning.get("max_tokens") or reasoning.get("enabled"):
            return True
    return body.get("reasoning_effort") not in (None, "none", "minimal")


def _has_image(messages: list) -> bool:
    return any(m.get("role") == "user" and isinstance(m.get("content"), list)
               and any(isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"]) for m in messages)


class OpenRouterProvider(oa.OpenAIProvider):
    name = "openrouter"

    def authenticate(self, call: Call) -> None:
        scheme, _, key = (call.header("Authorization") or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(401, error_body(401, "No auth credentials found"))
        if key != API_KEY:
            raise ApiError(401, error_body(401, "User not found."))

    def invalid_json(self, call: Call, detail: str) -> ApiError:
        return invalid("Invalid JSON in request body")

    def too_large(self, call: Call) -> ApiError:
        return ApiError(413, error_body(413, "Request body too large"))

    def error(self, status: int, message: str, call: Call) -> ApiError:
        return ApiError(status, error_body(status, message))

    def not_found(self, call: Call) -> ApiError:
        return ApiError(404, error_body(404, "Not Found"))

    def validate(self, call: Call) -> None:
        body = call.body
        for key in body:
            if key not in TOP_LEVEL_FIELDS:
                raise invalid(f"Unrecognized request argument supplied: {key}")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            if not body.get("models"):
                raise invalid("No models provided")
            model = body["models"][0]
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise invalid("Input required: specify \"prompt\" or \"messages\"")
        call.model = model
        call.stream = body.get("stream") is True
        if model not in MODELS:
            raise invalid(f"{model} is not a valid model ID")
        try:
            self._check_openai_fields(body)
        except ApiError as err:
            raise _as_openrouter(err) from None
        _check_openrouter_fields(body)
        if _has_image(body["messages"]) and not MODELS[model][1]:
            raise ApiError(404, error_body(404, "No endpoints found that support image input"))

    @staticmethod
    def _check_openai_fields(body: dict) -> None:
        """OpenAI's own field rules, minus the per-model ones OpenRouter does not apply
        (it ignores a parameter a model lacks instead of refusing it)."""
        model_rules = {k: body[k] for k in ("reasoning_effort",) if k in body}
        checked = {k: v for k, v in body.items() if k not in model_rules}
        oa._check_sampling(checked, "gpt-4o")  # a model with every sampling knob: only types and ranges apply
        oa._check_tools(body)
        # OpenRouter takes an assistant turn's reasoning back (for models that need it): checked here,
        # not as an unknown field.
        messages = []
        for i, m in enumerate(body["messages"]):
            if isinstance(m, dict) and m.get("role") == "assistant" and REASONING_BACK & m.keys():
                if m.get("reasoning") is not None and not isinstance(m["reasoning"], str):
                    raise oa.type_error(f"messages[{i}].reasoning", "a string", m["reasoning"])
                if m.get("reasoning_details") is not None and not isinstance(m["reasoning_details"], list):
                    raise oa.type_error(f"messages[{i}].reasoning_details", "an array", m["reasoning_details"])
                m = {k: v for k, v in m.items() if k not in REASONING_BACK}
            messages.append(m)
        oa._check_messages(messages)

    def detect(self, call: Call) -> str:
        body = call.body
        messages = body["messages"]
        if any(m.get("role") == "tool" for m in messages):
            return "after_tool_result"
        if body.get("tools"):
            return "function_calling"
        if _asks_reasoning(body) and MODELS[call.model][0]:
            return "thinking"
        if _has_image(messages):
            return "vision"
        return "text"

    # ----------------------------------------------------------- rendering
    def encode_body(self, body: Any, status: int, call: Call) -> bytes:
        return compact_json(body).encode()

    def stream_writer(self, call: Call):
        return oa._SseWriter()  # `data: <json>`; raw frames (the PROCESSING comments) as written

    def response_headers(self, call: Call) -> dict[str, str]:
        return {"x-generation-id": "gen-" + stable_id(call.path.encode() + call.raw_body, "", 24)}

    def select_frames(self, frames: list[ScenarioFrame], call: Call) -> list[ScenarioFrame]:
        return frames  # usage always comes last; stream_options.include_usage is a no-op

    def select_body(self, body: Any, call: Call) -> Any:
        return body

    # ----------------------------------------------------------- other endpoints
    def list_models(self, call: Call) -> Response:
        data = [{"id": m, "canonical_slug": m, "name": m, "created": 1721260800, "context_length": ctx,
                 "architecture": {"modality": "text+image->text" if vision else "text->text",
                                  "input_modalities": ["text", "image"] if vision else ["text"],
                                  "output_modalities": ["text"], "tokenizer": "Other", "instruct_type": None},
                 "pricing": {"prompt": "0.00000002", "completion": "0.00000005", "request": "0", "image": "0"},
                 "top_provider": {"context_length": ctx, "max_completion_tokens": None, "is_moderated": False},
                 "per_request_limits": None, "default_parameters": {},
                 "supported_parameters": ["max_tokens", "temperature", "top_p", "stop", "tools", "tool_choice"]
                 + (["reasoning", "include_reasoning"] if reasons else [])}
                for m, (reasons, vision, ctx) in MODELS.items()]
        return self._json({"data": data}, call)
