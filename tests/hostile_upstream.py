"""A hostile upstream: speaks just enough OpenAI Chat, OpenAI Responses, Anthropic
Messages, Gemini, Bedrock Converse and Ollama's native chat to be routed to — at their own paths and at Azure's
(`/openai/deployments/…`, `/openai/v1/…`), Vertex's (`…/publishers/google/…:generateContent`,
`…/publishers/anthropic/…:rawPredict`), Bedrock's (`/model/{id}/converse`, its
JSON errors with `x-amzn-ErrorType`, its binary event stream), RunPod's queue (a job
whose id and output echo the key, polled at `/stream/{id}`) and watsonx's (`/ml/v1/text/chat`,
its `errors[]` envelope, `event: error`; its IAM `/identity/token` hands the API key back as
the access token, so the key itself is what the chat calls carry) — and echoes the
credential it receives (a key, a bearer token, an AWS session token) everywhere a
provider could put text — error bodies (message, type, param, code), reply
headers (Retry-After, others), stream error events, and generated content —
whole and in the masked form providers use (`sk-ab...7890`).

The proxy must never pass any of it on to a client or write it to a log. The
behaviour comes from the `X-Hostile` request header (forwarded by the test's
config), one of MODES.
"""
from __future__ import annotations

import json
import re
import threading

from mocks.eventstream import encode_event, encode_exception
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MODES = ("error_body", "rate_limit", "auth", "server_error", "stream_error", "content")


def masked(key: str) -> str:
    """The key as providers echo it in error messages."""
    return f"{key[:5]}...{key[-4:]}"


def received_key(headers, query: dict) -> str:
    """The credential as it arrived. SigV4 sends no secret; a session token it does send."""
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    return (headers.get("x-api-key") or headers.get("x-goog-api-key") or headers.get("api-key")
            or headers.get("X-Amz-Security-Token") or (query.get("key") or [""])[0])


def protocol_of(path: str) -> str:
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/responses"):
        return "openai_responses"
    if path.endswith(("/messages", ":rawPredict", ":streamRawPredict")):
        return "anthropic"
    if path.endswith((":generateContent", ":streamGenerateContent")):
        return "gemini"
    if path.startswith("/model/") and path.endswith(("/converse", "/converse-stream")):
        return "bedrock_converse"
    if path.endswith("/api/chat"):
        return "ollama"
    if _RUNPOD_SUBMIT.fullmatch(path):
        return "runpod"
    if path in ("/ml/v1/text/chat", "/ml/v1/text/chat_stream"):
        return "watsonx"
    raise ValueError(f"the hostile upstream does not speak the protocol of {path}")


# RunPod's queue: a job's submission carries an OpenAI Chat body; its id (echoing the key) is polled.
_RUNPOD_SUBMIT = re.compile(r"/v2/[^/]+/run(?:sync)?")
_RUNPOD_JOB = re.compile(r"/v2/[^/]+/(?P<op>stream|status|cancel)/(?P<job>[^/]+)")
_RUNPOD_OUTPUT: dict[str, list[str]] = {}  # a streamed job's output, until its /stream poll takes it

# Bedrock's error type per hostile status, as its front end names them.
_BEDROCK_ERRORS = {400: "ValidationException", 401: "UnrecognizedClientException", 429: "ThrottlingException",
                   500: "InternalServerException"}


def error_body(protocol: str, key: str, status: int) -> dict:
    text = f"Invalid request with key {key} (also known as {masked(key)})"
    if protocol in ("openai", "openai_responses"):
        return {"error": {"message": text, "type": f"invalid_{key}", "param": f"param {key}", "code": f"c_{key}"}}
    if protocol == "anthropic":
        return {"type": "error", "error": {"type": "invalid_request_error", "message": text}}
    if protocol == "bedrock_converse":
        return {"message": text, "__type": f"{_BEDROCK_ERRORS[status]}{key}"}
    if protocol == "ollama":
        return {"error": text}
    if protocol == "watsonx":
        return {"errors": [{"code": f"c_{key}", "message": text, "more_info": key,
                            "target": {"type": "field", "name": f"param {key}"}}], "trace": key, "status_code": status}
    return {"error": {"code": status, "message": text, "status": "INVALID_ARGUMENT",
                      "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                   "fieldViolations": [{"field": f"contents {key}", "description": text}]}]}}


def content_reply(protocol: str, key: str, model: str) -> dict:
    text = f"The proxy's key is {key}."
    if protocol == "watsonx":
        return {"id": "chatcmpl-h", "object": "chat.completion", "model_id": model, "model": model, "created": 1,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
    if protocol == "openai":
        return {"id": "chatcmpl-h", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
    if protocol == "openai_responses":
        return _response_object(model, "completed", [_message_item(text)])
    if protocol == "anthropic":
        return {"id": "msg_h", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 5}}
    if protocol == "bedrock_converse":
        return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn",
                "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}, "metrics": {"latencyMs": 1}}
    if protocol == "ollama":
        return _ollama_line(model, text, done=True)
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8},
            "modelVersion": model}


def _message_item(text: str) -> dict:
    return {"id": "msg_h", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _response_object(model: str, status: str, output: list, error: dict | None = None) -> dict:
    usage = {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8} if status == "completed" else None
    return {"id": "resp_h", "object": "response", "created_at": 1, "status": status, "model": model,
            "output": output, "error": error, "incomplete_details": None, "usage": usage}


def eventstream_frames(key: str, mode: str) -> list[bytes]:
    """Bedrock's binary event stream: some content, then (stream_error) an exception frame echoing the key."""
    def event(name: str, data: dict) -> bytes:
        return encode_event(name, json.dumps(data).encode())
    text = f"key {key}" if mode == "content" else "Hello"
    frames = [event("messageStart", {"role": "assistant"}),
              event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})]
    if mode == "stream_error":
        error = {"message": f"Stream failed for key {key} ({masked(key)})", "originalStatusCode": 500}
        return frames + [encode_exception("modelStreamErrorException", json.dumps(error).encode())]
    return frames + [event("contentBlockStop", {"contentBlockIndex": 0}), event("messageStop", {"stopReason": "end_turn"}),
                     event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8},
                                        "metrics": {"latencyMs": 1}})]


def _ollama_line(model: str, text: str, done: bool) -> dict:
    line = {"model": model, "created_at": "2025-07-07T20:22:19Z", "message": {"role": "assistant", "content": text},
            "done": done}
    if done:
        line.update(done_reason="stop", prompt_eval_count=3, eval_count=5)
    return line


def ndjson_lines(key: str, model: str, mode: str) -> list[bytes]:
    """Ollama's NDJSON stream: some content, then (stream_error) an error line echoing the key."""
    text = f"key {key}" if mode == "content" else "Hello"
    lines = [_ollama_line(model, text, done=False)]
    if mode == "stream_error":
        lines.append({"error": f"Stream failed for key {key} ({masked(key)})"})
    else:
        lines.append(_ollama_line(model, "", done=True))
    return [json.dumps(line).encode() + b"\n" for line in lines]


def stream_frames(protocol: str, key: str, model: str, mode: str) -> list[bytes]:
    """The protocol's stream: some content, then (stream_error) its own error event echoing the key."""
    if protocol == "bedrock_converse":
        return eventstream_frames(key, mode)
    if protocol == "ollama":
        return ndjson_lines(key, model, mode)
    return [frame.encode() for frame in sse_frames(protocol, key, model, mode)]


def sse_frames(protocol: str, key: str, model: str, mode: str) -> list[str]:
    """SSE frames: some content, then (stream_error) the protocol's own error event echoing the key."""
    text = f"key {key}" if mode == "content" else "Hello"
    error_text = f"Stream failed for key {key} ({masked(key)})"
    if protocol == "watsonx":
        chunk = {"id": "chatcmpl-h", "object": "chat.completion.chunk", "model_id": model, "created": 1,
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]}
        frames = [f"id: 1\nevent: message\ndata: {json.dumps(chunk)}\n\n"]
        if mode == "stream_error":
            return frames + [f"id: 2\nevent: error\ndata: {json.dumps(error_body(protocol, key, 500))}\n\n"]
        end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        usage = {**chunk, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
        return frames + [f"id: 2\nevent: message\ndata: {json.dumps(end)}\n\n",
                         f"id: 3\nevent: message\ndata: {json.dumps(usage)}\n\n"]
    if protocol == "openai":
        chunk = {"id": "chatcmpl-h", "object": "chat.completion.chunk", "created": 1, "model": model,
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]}
        frames = [f"data: {json.dumps(chunk)}\n\n"]
        if mode == "stream_error":
            return frames + [f"data: {json.dumps({'error': {'message': error_text, 'type': 'server_error', 'code': key}})}\n\n"]
        end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        return frames + [f"data: {json.dumps(end)}\n\n", "data: [DONE]\n\n"]
    if protocol == "openai_responses":
        def event(data: dict) -> str:
            return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"
        item = {**_message_item(""), "status": "in_progress", "content": []}
        frames = [event({"type": "response.created", "sequence_number": 0,
                         "response": _response_object(model, "in_progress", [])}),
                  event({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                         "item": item}),
                  event({"type": "response.content_part.added", "sequence_number": 2, "output_index": 0,
                         "item_id": "msg_h", "content_index": 0,
                         "part": {"type": "output_text", "text": "", "annotations": []}}),
                  event({"type": "response.output_text.delta", "sequence_number": 3, "output_index": 0,
                         "item_id": "msg_h", "content_index": 0, "delta": text})]
        if mode == "stream_error":
            failed = _response_object(model, "failed", [], {"code": key, "message": error_text})
            return frames + [event({"type": "response.failed", "sequence_number": 4, "response": failed})]
        done = _message_item(text)
        return frames + [event({"type": "response.output_text.done", "sequence_number": 4, "output_index": 0,
                                "item_id": "msg_h", "content_index": 0, "text": text}),
                         event({"type": "response.content_part.done", "sequence_number": 5, "output_index": 0,
                                "item_id": "msg_h", "content_index": 0, "part": done["content"][0]}),
                         event({"type": "response.output_item.done", "sequence_number": 6, "output_index": 0,
                                "item": done}),
                         event({"type": "response.completed", "sequence_number": 7,
                                "response": _response_object(model, "completed", [done])})]
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

    def do_GET(self) -> None:
        self._runpod_job()

    def _runpod_job(self) -> None:
        """A RunPod job's /stream (its whole output, once), /status or /cancel."""
        match = _RUNPOD_JOB.fullmatch(urlsplit(self.path).path)
        job = match["job"]
        if match["op"] == "stream":
            output = _RUNPOD_OUTPUT.pop(job, [])
            self._json(200, {"status": "COMPLETED", "stream": [{"output": o} for o in output]}, {})
        else:
            self._json(200, {"id": job, "status": "CANCELLED" if match["op"] == "cancel" else "COMPLETED"}, {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        url = urlsplit(self.path)
        if _RUNPOD_JOB.fullmatch(url.path):
            return self._runpod_job()
        if url.path == "/identity/token":  # IBM IAM: the API key comes back as the access token
            key = parse_qs(raw.decode())["apikey"][0]
            return self._json(200, {"access_token": key, "token_type": "Bearer", "expires_in": 3600,
                                    "expiration": 4102444800}, {})
        body = json.loads(raw or b"{}")
        key = received_key(self.headers, parse_qs(url.query))
        protocol = protocol_of(url.path)
        job = None
        if protocol == "runpod":
            protocol, job, body = "openai", f"job-{key}", body["input"]["openai_input"]
        mode = self.headers.get("X-Hostile", "error_body")
        if protocol == "bedrock_converse":
            model = url.path.split("/")[2]
        else:
            model = body.get("model") or body.get("model_id") or url.path.rpartition("/")[2].partition(":")[0]
        stream = body.get("stream") is True or url.path.endswith((":streamGenerateContent", "/converse-stream",
                                                                   "_stream"))
        echo = {"Retry-After": key, "X-Echo-Key": key, "Set-Cookie": f"session={key}"}
        if protocol == "bedrock_converse":
            status = {"error_body": 400, "rate_limit": 429, "auth": 401}.get(mode, 500)
            echo["x-amzn-ErrorType"] = f"{_BEDROCK_ERRORS[status]}{key}:http://internal.amazon.com/coral/"
            echo["x-amzn-RequestId"] = key
        if mode == "error_body":
            self._json(400, error_body(protocol, key, 400), echo)
        elif mode == "rate_limit":
            self._json(429, error_body(protocol, key, 429), echo)
        elif mode == "auth":
            self._json(401, error_body(protocol, key, 401), echo)
        elif mode == "server_error" or (mode == "stream_error" and not stream):
            self._json(500, error_body(protocol, key, 500), echo)
        elif job is not None and stream:
            _RUNPOD_OUTPUT[job] = sse_frames(protocol, key, model, mode)
            self._json(200, {"id": job, "status": "IN_QUEUE"}, echo)
        elif job is not None:
            self._json(200, {"id": job, "status": "COMPLETED", "output": [content_reply(protocol, key, model)]}, echo)
        elif stream:
            content_type = {"bedrock_converse": "application/vnd.amazon.eventstream",
                            "ollama": "application/x-ndjson"}.get(protocol, "text/event-stream")
            self._stream(stream_frames(protocol, key, model, mode), echo, content_type)
        else:
            self._json(200, content_reply(protocol, key, model), echo)

    def _json(self, status: int, doc: dict, headers: dict) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, frames: list[bytes], headers: dict, content_type: str) -> None:
        self.send_response(200)
        for name, value in {"Content-Type": content_type, "Connection": "close", **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        for frame in frames:
            self.wfile.write(frame)
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
