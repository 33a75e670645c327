"""Every path a client can call, written once: which protocol the client speaks
there, what serves it, where the model and stream flag come from, and under
which protocol-mode prefix it is also served pinned to one backend instance.

server.py builds everything from ENDPOINTS: the Flask rules, the fast path for
the generation endpoints (a dict lookup for exact paths, a prefix test for
Gemini's model paths; nothing compiled per request), and the error envelope for
a path that matches no rule (`protocol_for_path`).

Adding a route is adding an Endpoint (and, for a new `action`, its view in
server.py). Provider instances (issue 14) are one more derivation of the same
table: transparent `/{instance}{rule}` rules next to `pinned_rule`'s
`/{prefix}/{instance}{rule}` ones.
"""
from __future__ import annotations

from dataclasses import dataclass

# What serves an endpoint (server.py has one view per action).
GENERATE = "generate"  # the body is a generation request (model and stream in it)
MODEL_ACTION = "model_action"  # Gemini: `<model>:<method>` in the URL says model, method and stream
COUNT_TOKENS = "count_tokens"
MODELS = "models"  # the model list, in the protocol's shape
METRICS = "metrics"
HEALTH = "health"


@dataclass(frozen=True, slots=True)
class Endpoint:
    rule: str  # a werkzeug rule: "/v1/chat/completions", "/v1beta/models/<path:model_action>"
    protocol: str  # the client's protocol (app/protocols MODULES key): how its body reads, its error envelope
    action: str  # one of the actions above
    methods: tuple[str, ...] = ("POST",)
    pinned_as: str | None = None  # also served as /{pinned_as}/<instance>{rule} (a PROTOCOL_MODES key)


# Protocol mode: /{prefix}/{instance}/... pins the backend instance; the prefix names the
# protocol a client there speaks (its error envelope on any path under it).
PROTOCOL_MODES: dict[str, str] = {"openai": "openai", "anthropic": "anthropic", "gemini": "gemini"}

ENDPOINTS: tuple[Endpoint, ...] = (
    # ------------------------------------------------------------- generation
    Endpoint("/v1/chat/completions", "openai", GENERATE, pinned_as="openai"),
    # Also without /v1: the openai SDK with base_url http://host/openai/<instance> posts there.
    Endpoint("/chat/completions", "openai", GENERATE, pinned_as="openai"),
    Endpoint("/v1/responses", "openai_responses", GENERATE, pinned_as="openai"),
    Endpoint("/responses", "openai_responses", GENERATE, pinned_as="openai"),
    Endpoint("/v1/messages", "anthropic", GENERATE, pinned_as="anthropic"),
    # Both API versions: the google-genai SDK defaults to v1, older clients to v1beta.
    Endpoint("/v1beta/models/<path:model_action>", "gemini", MODEL_ACTION, pinned_as="gemini"),
    Endpoint("/v1/models/<path:model_action>", "gemini", MODEL_ACTION, pinned_as="gemini"),
    # --------------------------------------------------------- not generation
    Endpoint("/v1/messages/count_tokens", "anthropic", COUNT_TOKENS),
    Endpoint("/v1/models", "openai", MODELS, ("GET",), pinned_as="openai"),  # Anthropic's shape when anthropic-version is sent
    Endpoint("/models", "openai", MODELS, ("GET",), pinned_as="openai"),
    Endpoint("/v1beta/models", "gemini", MODELS, ("GET",)),
    Endpoint("/metrics", "openai", METRICS, ("GET",)),
    Endpoint("/health", "openai", HEALTH, ("GET",)),
    # Stored responses (GET/DELETE /v1/responses/<response_id>) belong here too.
)

_MODEL_ACTION_VARIABLE = "<path:model_action>"
# Gemini methods that generate: method -> streamed. countTokens and unknown methods are
# the Flask view's (it answers countTokens, and names the methods it serves otherwise).
GEMINI_GENERATE_METHODS: dict[str, bool] = {"generateContent": False, "streamGenerateContent": True}


def pinned_rule(endpoint: Endpoint) -> str:
    """The protocol-mode rule of an endpoint served pinned."""
    return f"/{endpoint.pinned_as}/<instance>{endpoint.rule}"


def exact_generation_paths(endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> dict[str, str]:
    """Path -> protocol of the generation endpoints without URL variables (the fast path's dict)."""
    return {e.rule: e.protocol for e in endpoints if e.action == GENERATE and "<" not in e.rule}


def model_action_prefixes(endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> dict[str, str]:
    """Path prefix -> protocol of the endpoints whose rule ends in `<model>:<method>`."""
    return {e.rule.removesuffix(_MODEL_ACTION_VARIABLE): e.protocol for e in endpoints
            if e.action == MODEL_ACTION and e.rule.endswith(_MODEL_ACTION_VARIABLE)}


def split_model_action(model_action: str) -> tuple[str, str]:
    """`models/gemini-2.5-flash:generateContent` -> (model, method), as the URL variable holds it."""
    model, _, method = model_action.rpartition(":")
    return model.removeprefix("models/"), method


def fast_model_action(tail: str) -> tuple[str, bool] | None:
    """(model, stream) for a model path's tail that the fast path can serve exactly as
    the Flask rule would; None leaves it to Flask (other methods, and odd paths that
    werkzeug would decode or not match: non-ASCII, `//`, an empty model)."""
    if not tail.isascii() or "//" in tail or tail.startswith("/"):
        return None
    model, method = split_model_action(tail)
    stream = GEMINI_GENERATE_METHODS.get(method)
    if stream is None or not model or model.endswith("/"):
        return None
    return model, stream


# Unknown paths outside protocol mode: the API's own path shapes, first match wins.
_ENVELOPE_HINTS: tuple[tuple[str, str], ...] = (
    ("/v1beta/", "gemini"), (":generatecontent", "gemini"), (":streamgeneratecontent", "gemini"),
    ("/messages", "anthropic"))
_DEFAULT_PROTOCOL = "openai"


def protocol_for_path(path: str) -> str:
    """The protocol a client on `path` speaks, for errors on paths no rule serves
    (404, 405): the protocol-mode prefix, else the API's own path shape; case does
    not matter (`/V1/MESSAGES` is an Anthropic client's mistake)."""
    path = path.lower()
    if path.count("/") >= 2:
        prefixed = PROTOCOL_MODES.get(path.split("/", 2)[1])
        if prefixed is not None:
            return prefixed
    for fragment, protocol in _ENVELOPE_HINTS:
        if fragment in path:
            return protocol
    return _DEFAULT_PROTOCOL
