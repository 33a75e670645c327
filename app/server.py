"""create_app(config) -> Flask app: the client endpoints of every frontend
protocol, models lists, health. `serve()` runs it on gevent's WSGI server.

Each endpoint only says which frontend protocol it speaks and where the model
and stream flag come from; everything else is the pipeline's job.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
from types import ModuleType

from flask import Flask, Response, request
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_content_length, get_input_stream

from app import routes
from app.admin import register_admin_api
from app.admin_auth import AdminAuth
from app.admin_page import register_admin_page
from app.config import Config, ConfigError, load_config
from app.env_config import env_config
from app.errors import ErrorKind, ProxyError
from app.http_handler import CONNECTION_KEY, handler_class
from app.jsonutil import dumps
from app.logfields import log_field
from app.pipeline import Pipeline, Reply
from app.protocols import protocol_module
from app.protocols.base import ModelInfo
from app.routing import Router
from app.service_auth import ServiceKey
from app.state import LazyStore
from app.tokens import count_tokens_reply
from app.transparent import TransparentMode

log = logging.getLogger("interchange.server")

OPENAI = protocol_module("openai")
ANTHROPIC = protocol_module("anthropic")
RESPONSES = protocol_module("openai_responses")


def create_app(config: Config, default_backend: str | None = None,
               service_key: str | None = None) -> Flask:
    """`service_key` (default: the SERVICE_API_KEY variable) is the key clients must send (app/service_auth.py)."""
    state = LazyStore(config.state)  # one store per app: stored Responses, the runtime default provider
    router = Router(config, default_backend, state=state)
    pipeline = Pipeline(config, router, state=state)
    app = Flask("interchange")
    app.url_map.converters["path"] = _AnyPath
    app.config["MAX_CONTENT_LENGTH"] = None  # we check size ourselves, to answer in the client's envelope
    # No redirects: werkzeug's (`//` merged, defaults) are HTML and build
    # Location from the client's Host header. An odd path is a 404 in the
    # client's envelope instead.
    app.url_map.merge_slashes = False
    app.url_map.redirect_defaults = False
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
        return respond(pipeline.handle(frontend, body, request.headers, pinned=pinned,
                                       client_link=request.environ.get(CONNECTION_KEY), **kw))

    # ------------------------------------- stored Responses (app/state.py)
    # Plain Flask rules still, not yet in app/routes.py's table.
    @app.get("/v1/responses/<response_id>")
    @app.get("/responses/<response_id>")
    def get_response(response_id: str) -> Response:
        try:
            body = pipeline.stored_response(response_id)
        except ProxyError as e:
            return respond(pipeline.error_reply(RESPONSES, e))
        if body is None:
            return respond(pipeline.error_reply(RESPONSES, _no_response(response_id)))
        return Response(body, mimetype="application/json")

    @app.delete("/v1/responses/<response_id>")
    @app.delete("/responses/<response_id>")
    def delete_response(response_id: str) -> Response:
        try:
            deleted = pipeline.delete_response(response_id)
        except ProxyError as e:
            return respond(pipeline.error_reply(RESPONSES, e))
        if not deleted:
            return respond(pipeline.error_reply(RESPONSES, _no_response(response_id)))
        return _json({"id": response_id, "object": "response", "deleted": True})

    # ------------------------------------------------ admin (its own key, not SERVICE_API_KEY)
    auth = AdminAuth(config.server.admin_key)
    register_admin_api(app, pipeline, auth)
    register_admin_page(app, pipeline, auth)

    # ------------------------------------------------------------ the views
    # One per routes action: each only says where the model and stream flag
    # come from; `instance` is the path segment after the protocol-mode `prefix` (the
    # router says what it pins: a provider instance or a backend).
    def generate_view(frontend: ModuleType, instance: str | None = None, prefix: str | None = None) -> Response:
        return generate(frontend, instance, prefix=prefix)

    def model_action_view(frontend: ModuleType, model_action: str, instance: str | None = None,
                          prefix: str | None = None) -> Response:
        model, action = routes.split_model_action(model_action)
        stream = routes.GEMINI_GENERATE_METHODS.get(action)
        if stream is False:
            return generate(frontend, instance, url_model=model, url_stream=False, prefix=prefix)
        if stream:
            sse = request.args.get("alt") == "sse"
            return generate(frontend, instance, url_model=model, url_stream=True, wire_options={"sse": sse},
                            stream_content_type="text/event-stream" if sse else "application/json", prefix=prefix)
        if action == "countTokens":
            body = body_or_error(frontend)
            if isinstance(body, Response):
                return body
            return respond(count_tokens_reply(pipeline, frontend, body, request.headers, url_model=model))
        return respond(pipeline.error_reply(frontend, ProxyError(
            ErrorKind.not_found, f"Method '{action or model_action}' is not supported; use generateContent, "
            "streamGenerateContent or countTokens.")))

    def count_tokens_view(frontend: ModuleType) -> Response:
        body = body_or_error(frontend)
        if isinstance(body, Response):
            return body
        return respond(count_tokens_reply(pipeline, frontend, body, request.headers))

    def models_view(frontend: ModuleType, instance: str | None = None, prefix: str | None = None) -> Response:
        if instance is not None:
            return pinned_models(frontend, instance, prefix)
        models = router.models()
        if frontend is OPENAI and "anthropic-version" in request.headers:
            return _json(ANTHROPIC.format_models(models))
        return _json(frontend.format_models(models))

    def pinned_models(frontend: ModuleType, segment: str, prefix: str | None) -> Response:
        """`/openai/<instance>/models`: the names the pinned instance or backend maps."""
        try:
            backend, instance = router.pin(segment, prefix)
        except ProxyError as e:
            return respond(pipeline.error_reply(frontend, e))
        if instance is None:
            return _json(frontend.format_models([m for m in router.models() if m.backend == backend.name]))
        endpoint = next((e for e in instance.endpoints if e.path == f"/{prefix}/{segment}"), None)
        if endpoint is not None and "GET" not in endpoint.methods:
            pipeline.metrics.count_instance(instance, "GET", 405)
            return not_allowed_reply(frontend, endpoint.methods)
        pipeline.metrics.count_instance(instance, "GET", 200)
        return _json(frontend.format_models([ModelInfo(id=name, backend=instance.name, protocol=backend.protocol)
                                             for name in backend.model_mapping]))

    def metrics_view(_frontend: ModuleType) -> Response:
        body, content_type = pipeline.metrics.render()
        return Response(body, mimetype=None, content_type=content_type)

    def health_view(_frontend: ModuleType) -> Response:
        return _json({"status": "ok", "backends": sorted(config.backends)})

    views = {routes.GENERATE: generate_view, routes.MODEL_ACTION: model_action_view,
             routes.COUNT_TOKENS: count_tokens_view, routes.MODELS: models_view,
             routes.METRICS: metrics_view, routes.HEALTH: health_view}
    for ep in routes.ENDPOINTS:
        view = functools.partial(views[ep.action], protocol_module(ep.protocol))
        app.add_url_rule(ep.rule, f"{ep.action} {ep.rule}", view, methods=ep.methods)
        if ep.pinned_as is not None:
            rule = routes.pinned_rule(ep)
            app.add_url_rule(rule, f"{ep.action} {rule}", functools.partial(view, prefix=ep.pinned_as),
                             methods=ep.methods)

    # ------------------------------------------------ the hot endpoints' fast path
    # The generation endpoints are answered before Flask's routing, request
    # context and Response objects (~0.1 ms a request that adds nothing here).
    # Same body reading, same headers object, same status lines and headers as
    # the Flask views above, which still serve every other path and method.
    def fast_generate(frontend: ModuleType, environ, start_response, pinned: str | None = None, **kw):
        length = get_content_length(environ)
        if length is not None and length > max_body:
            return _wsgi_reply(pipeline.error_reply(frontend, _too_large(max_body)), start_response)
        data = get_input_stream(environ).read(max_body + 1)
        if len(data) > max_body:
            return _wsgi_reply(pipeline.error_reply(frontend, _too_large(max_body)), start_response)
        reply = pipeline.handle(frontend, data, EnvironHeaders(environ), pinned=pinned,
                                client_link=environ.get(CONNECTION_KEY), **kw)
        return _wsgi_reply(reply, start_response)

    exact = {path: protocol_module(p) for path, p in routes.exact_generation_paths().items()}
    model_paths = tuple((prefix, protocol_module(p)) for prefix, p in routes.model_action_prefixes().items())
    model_prefixes = tuple(prefix for prefix, _ in model_paths)
    flask_app = app.wsgi_app
    # Transparent mode (app/transparent.py): on the raw path, before any werkzeug decoding.
    transparent = TransparentMode(config.instances, pipeline)

    def wsgi_app(environ, start_response):
        if transparent.claims(environ):
            return transparent(environ, start_response)
        if environ.get("REQUEST_METHOD") == "POST":
            path = environ.get("PATH_INFO", "")
            try:
                frontend = exact.get(path)
                if frontend is not None:
                    return fast_generate(frontend, environ, start_response)
                if path.startswith(model_prefixes):
                    for prefix, frontend in model_paths:
                        if path.startswith(prefix):
                            break
                    action = routes.fast_model_action(path[len(prefix):])
                    if action is not None:
                        model, stream = action
                        if not stream:
                            return fast_generate(frontend, environ, start_response, url_model=model,
                                                 url_stream=False)
                        sse = _query_arg(environ, "alt") == "sse"
                        return fast_generate(frontend, environ, start_response, url_model=model, url_stream=True,
                                             wire_options={"sse": sse},
                                             stream_content_type="text/event-stream" if sse else "application/json")
            except HTTPException as e:  # an unreadable body: what Flask would have answered
                return e(environ, start_response)
        return flask_app(environ, start_response)

    key = service_key if service_key is not None else os.environ.get("SERVICE_API_KEY")
    service = ServiceKey(key) if key else None

    def guarded_app(environ, start_response):
        if service.admits(environ):
            return wsgi_app(environ, start_response)
        if transparent.claims(environ):
            return transparent.refuse_unauthorised(environ, start_response)
        frontend = protocol_module(routes.protocol_for_path(environ.get("PATH_INFO", "")))
        return _wsgi_reply(pipeline.error_reply(frontend, ProxyError(
            ErrorKind.authentication, "Missing or invalid API key for this proxy (its SERVICE_API_KEY): send "
            "it as Authorization: Bearer <key>.", code="invalid_api_key")), start_response)

    app.wsgi_app = wsgi_app if service is None else guarded_app

    # ---------------------------------------------------------------- errors
    @app.errorhandler(404)
    def not_found(_e) -> Response:
        return _not_found()

    @app.errorhandler(405)
    def not_allowed(e) -> Response:
        return not_allowed_reply(protocol_module(routes.protocol_for_path(request.path)), e.valid_methods or ())

    def not_allowed_reply(frontend: ModuleType, allowed) -> Response:
        reply = pipeline.error_reply(frontend, ProxyError(
            ErrorKind.invalid_request, f"Method {request.method} is not allowed on {request.path}.",
            status=405))
        # Every frontend's envelope, with the status and Allow RFC 9110 asks
        # for (Anthropic's and Gemini's tables render the kind as a 400).
        return Response(reply.body, status=405, headers={**reply.headers, "Allow": ", ".join(sorted(allowed))})

    def _not_found() -> Response:
        frontend = protocol_module(routes.protocol_for_path(request.path))
        return respond(pipeline.error_reply(frontend, ProxyError(
            ErrorKind.not_found, f"Unknown path {log_field(request.method)} {log_field(request.path)}.")))

    return app


class _AnyPath(PathConverter):
    """werkzeug's `path` converter, but matching line breaks too: a Gemini model
    in the URL may hold any character, and parse_request answers with a 400
    naming `model` rather than the path being an unknown one."""
    regex = r"[^/][\s\S]*?"


def _query_arg(environ, name: str) -> str | None:
    """The first value of a query parameter, parsed as Flask's `request.args` does."""
    qs = environ.get("QUERY_STRING")
    if not qs:
        return None
    return Request(environ).args.get(name)


def _wsgi_reply(reply: Reply, start_response):
    """A Reply as WSGI, with the status line and headers werkzeug's Response would send."""
    headers = list(reply.headers.items())
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "text/html; charset=utf-8"))
    body = reply.body
    if isinstance(body, (bytes, bytearray)):
        headers.append(("Content-Length", str(len(body))))
        start_response(_status_line(reply.status), headers)
        return [body]
    start_response(_status_line(reply.status), headers)
    return body


@functools.lru_cache(maxsize=None)
def _status_line(code: int) -> str:
    return Response(status=code).status


def _too_large(limit: int) -> ProxyError:
    return ProxyError(ErrorKind.request_too_large, f"Request body exceeds the {limit} byte limit.")


def _no_response(response_id: str) -> ProxyError:
    """OpenAI's 404 for a response id it does not hold (never stored, deleted or expired)."""
    return ProxyError(ErrorKind.not_found, f"Response with id '{log_field(response_id)}' not found.")


def _json(obj: object, status: int = 200) -> Response:
    return Response(dumps(obj), status=status, mimetype="application/json")


# Connections waiting to be accepted: a burst of thousands of clients (streams
# opened at once) must queue, not be refused. The kernel caps it at somaxconn.
LISTEN_BACKLOG = 4096


def serve(config_path: str | None, host: str | None = None, port: int | None = None,
          backend: str | None = None) -> int:
    """Run the proxy on gevent's WSGI server (the caller has monkey-patched). With
    no config file: the router's models.yaml and backends from the environment."""
    from gevent.pywsgi import WSGIServer

    try:
        config = load_config(config_path) if config_path is not None else env_config()
    except ConfigError as e:
        for p in e.problems:
            print(f"config error: {p}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.server.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The format above uses none of the caller, thread or process fields: do
    # not compute them for every record (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    try:
        app = create_app(config, default_backend=backend)
    except ValueError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    server = WSGIServer((host or config.server.host, config.server.port if port is None else port),
                        app, log=None, error_log=logging.getLogger("interchange.wsgi"),
                        handler_class=handler_class(config.server.head_timeout, config.server.keepalive_timeout),
                        backlog=LISTEN_BACKLOG)
    server.start()
    bound_host, bound_port = server.address[:2]
    print(f"Interchange listening on http://{bound_host}:{bound_port} "
          f"(config {config.source}, backends: {', '.join(sorted(config.backends))}"
          + (f"; instances: {', '.join(sorted(config.instances))}" if config.instances else "") + ")", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
