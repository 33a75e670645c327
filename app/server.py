"""create_app(config) -> Flask app: the client endpoints of every frontend
protocol, models lists, health. `serve()` runs it on gevent's WSGI server.

Each endpoint only says which frontend protocol it speaks and where the model
and stream flag come from; everything else is the pipeline's job.
"""
from __future__ import annotations

import logging
import sys
from types import ModuleType

from flask import Flask, Response, request

from app.config import Config, ConfigError, load_config
from app.errors import ErrorKind, ProxyError
from app.jsonutil import dumps
from app.pipeline import Pipeline, Reply
from app.protocols import protocol_module
from app.routing import Router
from app.tokens import count_tokens_reply

log = logging.getLogger("interchange.server")

OPENAI = protocol_module("openai")
ANTHROPIC = protocol_module("anthropic")
GEMINI = protocol_module("gemini")

# Protocol-mode prefixes: /{protocol}/{instance}/... pins the backend instance.
_PROTOCOL_PREFIX = {"openai": OPENAI, "anthropic": ANTHROPIC, "gemini": GEMINI}


def create_app(config: Config, default_backend: str | None = None) -> Flask:
    router = Router(config, default_backend)
    pipeline = Pipeline(config, router)
    app = Flask("interchange")
    app.config["MAX_CONTENT_LENGTH"] = None  # we check size ourselves, to answer in the client's envelope
    app.extensions["interchange"] = pipeline
    max_body = config.server.max_body_bytes

    def respond(reply: Reply) -> Response:
        if isinstance(reply.body, (bytes, bytearray)):
            return Response(reply.body, status=reply.status, headers=dict(reply.headers))
        return Response(reply.body, status=reply.status, headers=dict(reply.headers), direct_passthrough=True)

    def body_or_error(frontend: ModuleType) -> bytes | Response:
        length = request.content_length
        if length is not None and length > max_body:
            return respond(pipeline.error_reply(frontend, _too_large(max_body)))
        data = request.stream.read(max_body + 1)
        if len(data) > max_body:
            return respond(pipeline.error_reply(frontend, _too_large(max_body)))
        return data

    def generate(frontend: ModuleType, pinned: str | None = None, **kw) -> Response:
        body = body_or_error(frontend)
        if isinstance(body, Response):
            return body
        return respond(pipeline.handle(frontend, body, request.headers, pinned=pinned, **kw))

    # ---------------------------------------------------------- OpenAI Chat
    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    def openai_chat() -> Response:
        return generate(OPENAI)

    # ---------------------------------------------------- Anthropic Messages
    @app.post("/v1/messages")
    def anthropic_messages() -> Response:
        return generate(ANTHROPIC)

    @app.post("/v1/messages/count_tokens")
    def anthropic_count_tokens() -> Response:
        body = body_or_error(ANTHROPIC)
        if isinstance(body, Response):
            return body
        return respond(count_tokens_reply(pipeline, ANTHROPIC, body, request.headers))

    # ---------------------------------------------------------------- Gemini
    # Both API versions: the google-genai SDK defaults to v1, older clients to v1beta.
    @app.post("/v1beta/models/<path:model_action>")
    @app.post("/v1/models/<path:model_action>")
    def gemini_generate(model_action: str, pinned: str | None = None) -> Response:
        model, _, action = model_action.rpartition(":")
        model = model.removeprefix("models/")
        if action == "generateContent":
            return generate(GEMINI, pinned, url_model=model, url_stream=False)
        if action == "streamGenerateContent":
            sse = request.args.get("alt") == "sse"
            return generate(GEMINI, pinned, url_model=model, url_stream=True, wire_options={"sse": sse},
                            stream_content_type="text/event-stream" if sse else "application/json")
        if action == "countTokens":
            body = body_or_error(GEMINI)
            if isinstance(body, Response):
                return body
            return respond(count_tokens_reply(pipeline, GEMINI, body, request.headers, url_model=model))
        return respond(pipeline.error_reply(GEMINI, ProxyError(
            ErrorKind.not_found, f"Method '{action or model_action}' is not supported; use generateContent, "
            "streamGenerateContent or countTokens.")))

    # ---------------------------------------------------------- model lists
    @app.get("/v1/models")
    @app.get("/models")
    def list_models() -> Response:
        models = router.models()
        if "anthropic-version" in request.headers:
            return _json(ANTHROPIC.format_models(models))
        return _json(OPENAI.format_models(models))

    @app.get("/v1beta/models")
    def list_gemini_models() -> Response:
        return _json(GEMINI.format_models(router.models()))

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = pipeline.metrics.render()
        return Response(body, mimetype=None, content_type=content_type)

    @app.get("/health")
    def health() -> Response:
        return _json({"status": "ok", "backends": sorted(config.backends)})

    # ------------------------------------------------ protocol-mode (pinned)
    @app.post("/<protocol>/<instance>/v1/chat/completions")
    @app.post("/<protocol>/<instance>/v1/messages")
    @app.post("/<protocol>/<instance>/v1beta/models/<path:model_action>")
    @app.post("/<protocol>/<instance>/v1/models/<path:model_action>")
    def pinned(protocol: str, instance: str, model_action: str | None = None) -> Response:
        frontend = _PROTOCOL_PREFIX.get(protocol)
        path = request.path.split("/", 3)[3]
        expected = {"openai": "v1/chat/completions", "anthropic": "v1/messages"}.get(protocol)
        if frontend is None or (model_action is None and path != expected) or \
                (model_action is not None and protocol != "gemini"):
            return _not_found()
        if model_action is not None:
            return gemini_generate(model_action, pinned=instance)
        return generate(frontend, instance)

    # ---------------------------------------------------------------- errors
    @app.errorhandler(404)
    def not_found(_e) -> Response:
        return _not_found()

    @app.errorhandler(405)
    def not_allowed(_e) -> Response:
        frontend = _frontend_for_path(request.path)
        return respond(pipeline.error_reply(frontend, ProxyError(
            ErrorKind.invalid_request, f"Method {request.method} is not allowed on {request.path}.",
            status=405)))

    def _not_found() -> Response:
        frontend = _frontend_for_path(request.path)
        return respond(pipeline.error_reply(frontend, ProxyError(
            ErrorKind.not_found, f"Unknown path {request.method} {request.path}.")))

    return app


def _frontend_for_path(path: str) -> ModuleType:
    if "/v1beta/" in path or ":generateContent" in path or ":streamGenerateContent" in path:
        return GEMINI
    if "/messages" in path:
        return ANTHROPIC
    return OPENAI


def _too_large(limit: int) -> ProxyError:
    return ProxyError(ErrorKind.request_too_large, f"Request body exceeds the {limit} byte limit.")


def _json(obj: object, status: int = 200) -> Response:
    return Response(dumps(obj), status=status, mimetype="application/json")


def serve(config_path: str, host: str | None = None, port: int | None = None,
          backend: str | None = None) -> int:
    """Run the proxy on gevent's WSGI server (the caller has monkey-patched)."""
    from gevent.pywsgi import WSGIServer

    try:
        config = load_config(config_path)
    except ConfigError as e:
        for p in e.problems:
            print(f"config error: {p}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.server.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(config, default_backend=backend)
    except ValueError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    server = WSGIServer((host or config.server.host, config.server.port if port is None else port),
                        app, log=None, error_log=logging.getLogger("interchange.wsgi"))
    server.start()
    bound_host, bound_port = server.address[:2]
    print(f"Interchange listening on http://{bound_host}:{bound_port} "
          f"(config {config_path}, backends: {', '.join(sorted(config.backends))})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
