"""The mock provider server: one Flask app on gevent's WSGIServer that
answers on every emulated provider's real URL paths, plus `/health` and the
`/_mock/*` test endpoints. Unknown paths and server faults are answered in
the envelope of the provider the path belongs to (never an HTML page)."""
from __future__ import annotations

import socket
from pathlib import Path

from flask import Flask, Response, abort, jsonify, request
from gevent.pywsgi import WSGIHandler, WSGIServer
from werkzeug.exceptions import HTTPException

from mocks.anthropic import AnthropicProvider
from mocks.bedrock import BedrockProvider
from mocks.gemini import METHODS as GEMINI_METHODS
from mocks.gemini import GeminiProvider
from mocks.openai import OpenAIProvider
from mocks.provider import Call, MockState, Provider
from mocks.request_log import RequestLog
from mocks.scenarios import DEFAULT_ROOT, ScenarioLibrary
from mocks.wire import read_body

OPENAI = OpenAIProvider()
ANTHROPIC = AnthropicProvider()
GEMINI = GeminiProvider()
BEDROCK = BedrockProvider()
PROVIDERS: dict[str, Provider] = {p.name: p for p in (OPENAI, ANTHROPIC, GEMINI, BEDROCK)}


def provider_for_request() -> Provider:
    """Whose envelope an error on this path should use."""
    path = request.path
    if path.startswith("/model/"):
        return BEDROCK
    if path.startswith("/v1beta") or (path.startswith("/v1/models/") and ":" in path) or _looks_gemini():
        return GEMINI
    if path.startswith("/v1/messages") or _looks_anthropic():
        return ANTHROPIC
    return OPENAI


def _looks_gemini() -> bool:
    return bool(request.headers.get("x-goog-api-key") or request.args.get("key"))


def _looks_anthropic() -> bool:
    # GET /v1/models is shared: Anthropic clients send these headers, OpenAI clients do not.
    return bool(request.headers.get("anthropic-version") or request.headers.get("x-api-key"))


def _call() -> Call:
    raw, too_large = read_body(request.stream, request.content_length)
    return Call(method=request.method, path=request.path, query=request.args.to_dict(flat=True),
                headers=request.headers, raw_body=raw, too_large=too_large,
                socket=request.environ.get("mocks.socket"))


class MockHandler(WSGIHandler):
    """Exposes the client socket to the app (so a fault can cut the
    connection), lets werkzeug read chunked request bodies, which gevent's
    input object already de-chunks, and sets TCP_NODELAY: gevent sends the
    headers and the body apart, and without it every keep-alive reply waits
    ~40 ms for the client's delayed ACK (Nagle), which real providers do not."""

    def handle(self):
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # not TCP (a Unix socket)
        return super().handle()

    def get_environ(self):
        environ = super().get_environ()
        environ["mocks.socket"] = self.socket
        environ["mocks.raw_target"] = self.path  # as sent, still percent-encoded: what SigV4 signed
        environ["wsgi.input_terminated"] = True
        return environ


def create_app(scenario_root: Path = DEFAULT_ROOT, log_capacity: int = 500) -> Flask:
    """The mock app; fixtures are loaded (and checked) here, once."""
    app = Flask("mocks")
    state = MockState(library=ScenarioLibrary(scenario_root), log=RequestLog(log_capacity))
    app.extensions["mock_state"] = state

    def generation(provider: Provider) -> Response:
        return provider.handle_generation(_call(), state)

    # ------------------------------------------------------------- OpenAI
    @app.post("/v1/chat/completions")
    def openai_chat() -> Response:
        return generation(OPENAI)

    # ------------------------------------------------------------- Anthropic
    @app.post("/v1/messages")
    def anthropic_messages() -> Response:
        return generation(ANTHROPIC)

    @app.post("/v1/messages/count_tokens")
    def anthropic_count_tokens() -> Response:
        return ANTHROPIC.handle_simple(_call(), state, ANTHROPIC.count_tokens, parse_body=True)

    # ------------------------------------------------------------- model lists (shared path)
    @app.get("/v1/models")
    def models() -> Response:
        if _looks_gemini():
            return GEMINI.handle_simple(_call(), state, GEMINI.list_models)
        provider = ANTHROPIC if _looks_anthropic() else OPENAI
        return provider.handle_simple(_call(), state, provider.list_models)

    @app.get("/v1/models/<path:model>")
    def model(model: str) -> Response:
        if _looks_gemini():
            return GEMINI.handle_simple(_call(), state, lambda call: GEMINI.get_model(call, model))
        provider = ANTHROPIC if _looks_anthropic() else OPENAI
        return provider.handle_simple(_call(), state, lambda call: provider.get_model(call, model))

    # ------------------------------------------------------------- Gemini (v1beta, and v1: the SDK's default)
    def gemini_method(version: str, target: str) -> Response:
        model, _, method = target.partition(":")
        call = _call()
        call.model = model
        call.notes.update(method=method, api_version=version)
        call.stream = method == "streamGenerateContent"
        if method in ("generateContent", "streamGenerateContent"):
            return GEMINI.handle_generation(call, state)
        if method == "countTokens":
            return GEMINI.handle_simple(call, state, GEMINI.count_tokens, parse_body=True)

        def unknown(c: Call) -> Response:
            raise GEMINI.error(404, f"Method {method!r} is not one of {', '.join(GEMINI_METHODS)}.", c)
        return GEMINI.handle_simple(call, state, unknown)

    @app.post("/v1beta/models/<path:target>")
    def gemini_v1beta(target: str) -> Response:
        return gemini_method("v1beta", target)

    @app.post("/v1/models/<path:target>")
    def gemini_v1(target: str) -> Response:
        if ":" not in target:
            abort(404)
        return gemini_method("v1", target)

    @app.get("/v1beta/models")
    def gemini_models() -> Response:
        return GEMINI.handle_simple(_call(), state, GEMINI.list_models)

    @app.get("/v1beta/models/<path:model>")
    def gemini_model(model: str) -> Response:
        return GEMINI.handle_simple(_call(), state, lambda call: GEMINI.get_model(call, model))

    # ------------------------------------------------------------- Bedrock Runtime (model ids may hold `/`)
    def bedrock(model_id: str, stream: bool) -> Response:
        call = _call()
        call.model, call.stream = model_id, stream
        call.notes["raw_target"] = request.environ.get("mocks.raw_target")
        return BEDROCK.handle_generation(call, state)

    @app.post("/model/<path:model_id>/converse")
    def bedrock_converse(model_id: str) -> Response:
        return bedrock(model_id, stream=False)

    @app.post("/model/<path:model_id>/converse-stream")
    def bedrock_converse_stream(model_id: str) -> Response:
        return bedrock(model_id, stream=True)

    # ------------------------------------------------------------- mock endpoints
    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/_mock/requests")
    def list_requests() -> Response:
        return jsonify(state.log.entries(request.args.get("provider")))

    @app.delete("/_mock/requests")
    def clear_requests() -> Response:
        state.log.clear()
        return jsonify({"cleared": True})

    @app.get("/_mock/scenarios")
    def list_scenarios() -> Response:
        return jsonify({p: {s.name: {"description": s.description, "status": s.status, "streams": s.stream is not None,
                                     "expect": s.expect}
                            for s in state.library.all() if s.provider == p}
                        for p in PROVIDERS})

    # ------------------------------------------------------------- errors, in the right envelope
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        provider = provider_for_request()
        call = Call(method=request.method, path=request.path, query=request.args.to_dict(flat=True),
                    headers=request.headers, raw_body=b"")
        if exc.code == 404:
            err = provider.not_found(call)
        else:
            err = provider.error(exc.code or 500, exc.description or exc.name, call)
        return provider.reject(err, call, state)

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Response:
        app.logger.exception("mock server error")
        provider = provider_for_request()
        call = Call(method=request.method, path=request.path, query=request.args.to_dict(flat=True),
                    headers=request.headers, raw_body=b"")
        return provider.error_response(provider.error(500, f"Mock server error: {exc!r}", call), call)

    return app


def make_server(host: str, port: int, app: Flask | None = None) -> WSGIServer:
    """A bound (not yet serving) server; `server.server_port` is the real port."""
    server = WSGIServer((host, port), app or create_app(), handler_class=MockHandler, log=None, backlog=4096)
    server.init_socket()
    return server


def serve(host: str = "127.0.0.1", port: int = 8888, scenario_root: Path = DEFAULT_ROOT) -> int:
    """Run until interrupted. Prints the bound URL first (port 0 = any free port)."""
    server = make_server(host, port, create_app(scenario_root=scenario_root))
    print(f"Mock server listening on http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(timeout=1)
    return 0
