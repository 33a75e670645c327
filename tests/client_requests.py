"""Minimal client requests in each frontend protocol, and the error envelope
each frontend answers with: for integration tests that drive the proxy over
plain HTTP from every frontend."""
from __future__ import annotations

FRONTENDS = ("openai", "anthropic", "gemini", "openai_responses")
# The protocol-mode prefix (`/{family}/{instance}/...`) a frontend's paths take.
PROTOCOL_FAMILY = {"openai_responses": "openai"}


def client_request(frontend: str, model: str, stream: bool, prefix: str = "") -> tuple[str, dict, dict]:
    """(path, headers, body) of a minimal request in the frontend's protocol."""
    messages = [{"role": "user", "content": "Hi"}]
    if frontend == "openai":
        return prefix + "/v1/chat/completions", {}, {"model": model, "messages": messages, "stream": stream}
    if frontend == "openai_responses":
        return prefix + "/v1/responses", {}, {"model": model, "input": "Hi", "stream": stream}
    if frontend == "anthropic":
        return (prefix + "/v1/messages", {"anthropic-version": "2023-06-01", "x-api-key": "client-key"},
                {"model": model, "max_tokens": 20, "messages": messages, "stream": stream})
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return (f"{prefix}/v1beta/models/{model}:{action}", {},
            {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})


def error_message(frontend: str, doc: dict) -> str:
    """The message of an error reply, after checking it is in `frontend`'s own envelope."""
    if frontend in ("openai", "openai_responses"):
        assert set(doc) == {"error"} and {"message", "type"} <= set(doc["error"]), doc
    elif frontend == "anthropic":
        assert doc["type"] == "error" and {"type", "message"} <= set(doc["error"]), doc
    else:
        assert set(doc) == {"error"} and {"code", "message", "status"} <= set(doc["error"]), doc
    return doc["error"]["message"]
