"""A hostile upstream: speaks just enough OpenAI Chat, Anthropic Messages and
Gemini to be routed to, and echoes the credential it receives everywhere a
provider could put text — error bodies (message, type, param, code), reply
headers (Retry-After, others), stream error events, and generated content —
whole and in the masked form providers use (`sk-ab...7890`).

The proxy must never pass any of it on to a client or write it to a log. The
behaviour comes from the `X-Hostile` request header (forwarded by the test's
config), one of MODES.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MODES = ("error_body", "rate_limit", "auth", "server_error", "stream_error", "content")


def masked(key: str) -> str:
    """The key as providers echo it in error messages."""
    return f"{key[:5]}...{key[-4:]}"


def received_key(headers, query: dict) -> str:
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or (query.get("key") or [""])[0]


def protocol_of(path: str) -> str:
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith((":generateContent", ":streamGenerateContent")):
        return "gemini"
    raise ValueError(f"the hostile upstream does not speak the protocol of {path}")


def error_body(protocol: str, key: str, status: int) -> dict:
    text = f"Invalid request with key {key} (also known as {masked(key)})"
    if protocol == "openai":
        return {"error": {"message": text, "type": f"invalid_{key}", "param": f"param {key}", "code": f"c_{key}"}}
    if protocol == "anthropic":
        return {"type": "error", "error": {"type": "invalid_request_error", "message": text}}
    return {"error": {"code": status, "message": text, "status": "INVALID_ARGUMENT",
                      "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                   "fieldViolations": [{"field": f"contents {key}", "description": text}]}]}}


def content_reply(protocol: str, key: str, model: str) -> dict:
    text = f"The proxy's key is {key}."
    if protocol == "openai":
        return {"id": "chatcmpl-h", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
    if protocol == "anthropic":
        return {"id": "msg_h", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 5}}
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8},
            "modelVersion": model}


def stream_frames(protocol: str, key: str, model: str, mode: str) -> list[str]:
    """SSE frames: some content, then (stream_error) the protocol's own error event echoing the key."""
    text = f"key {key}" if mode == "content" else "Hello"
    error_text = f"Stream failed for key {key} ({masked(key)})"
    if protocol == "openai":
        chunk = {"id": "chatcmpl-h", "object": "chat.completion.chunk", "created": 1, "model": model,
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]}
        frames = [f"data: {json.dumps(chunk)}\n\n"]
        if mode == "stream_error":
            return frames + [f"data: {json.dumps({'error': {'message': error_text, 'type': 'server_error', 'code': key}})}\n\n"]
        end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        return frames + [f"data: {json.dumps(end)}\n\n", "data: [DONE]\n\n"]
    if protocol == "anthropic":
        def event(name: str, data: dict) -> str:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n"
        frames = [event("message_start", {"type": "message_start", "message": {
                      "id": "msg_h", "type": "message", "role": "assistant", "model": model, "content": [],
                      "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}),
                  event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}}),
                  event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": text}})]
        if mode == "stream_error":
            return frames + [event("error", {"type": "error", "error": {"type": "api_error", "message": error_text}})]
        return frames + [event("content_block_stop", {"type": "content_block_stop", "index": 0}),
                         event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                                 "usage": {"output_tokens": 5}}),
                         event("message_stop", {"type": "message_stop"})]
    chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
             "modelVersion": model}
    frames = [f"data: {json.dumps(chunk)}\n\n"]
    if mode == "stream_error":
        return frames + [f"data: {json.dumps({'error': {'code': 500, 'message': error_text, 'status': 'INTERNAL'}})}\n\n"]
    end = {"candidates": [{"content": {"role": "model", "parts": [{"text": "."}]}, "finishReason": "STOP",
                           "index": 0}],
           "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8},
           "modelVersion": model}
    return frames + [f"data: {json.dumps(end)}\n\n"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        url = urlsplit(self.path)
        key = received_key(self.headers, parse_qs(url.query))
        protocol = protocol_of(url.path)
        mode = self.headers.get("X-Hostile", "error_body")
        model = body.get("model") or url.path.rpartition("/")[2].partition(":")[0]
        stream = body.get("stream") is True or ":streamGenerateContent" in url.path
        echo = {"Retry-After": key, "X-Echo-Key": key, "Set-Cookie": f"session={key}"}
        if mode == "error_body":
            self._json(400, error_body(protocol, key, 400), echo)
        elif mode == "rate_limit":
            self._json(429, error_body(protocol, key, 429), echo)
        elif mode == "auth":
            self._json(401, error_body(protocol, key, 401), echo)
        elif mode == "server_error" or (mode == "stream_error" and not stream):
            self._json(500, error_body(protocol, key, 500), echo)
        elif stream:
            self._stream(stream_frames(protocol, key, model, mode), echo)
        else:
            self._json(200, content_reply(protocol, key, model), echo)

    def _json(self, status: int, doc: dict, headers: dict) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, frames: list[str], headers: dict) -> None:
        self.send_response(200)
        for name, value in {"Content-Type": "text/event-stream", "Connection": "close", **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        for frame in frames:
            self.wfile.write(frame.encode())
            self.wfile.flush()
        self.close_connection = True


class HostileUpstream:
    """Runs on an ephemeral loopback port in a thread; `url` is its base."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
