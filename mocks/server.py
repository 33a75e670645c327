"""The mock provider server: one Flask app on gevent's WSGIServer that
answers on every emulated provider's real URL paths, plus `/health` and the
`/_mock/*` test endpoints. Unknown paths and server faults are answered in
the envelope of the provider the path belongs to (never an HTML page)."""
from __future__ import annotations

import json
import socket
from pathlib import Path

from flask import Flask, Response, abort, jsonify, request
from gevent.pywsgi import WSGIHandler, WSGIServer
from werkzeug.exceptions import HTTPException

from mocks.anthropic import AnthropicProvider
from mocks.aws_credentials import StsError
from mocks.azure import AzureOpenAIProvider
from mocks.bedrock import BedrockProvider
from mocks.gemini import METHODS as GEMINI_METHODS
from mocks.gemini import GeminiProvider
from mocks.google_oauth import TokenError
from mocks.ollama import OllamaOpenAIProvider, OllamaProvider, model_name as ollama_model
from mocks.oci import OCIProvider
from mocks.openai import OpenAIProvider
from mocks.openrouter import OpenRouterProvider
from mocks.provider import Call, MockState, Provider
from mocks.request_log import RequestLog
from mocks.responses import AzureResponsesProvider, ResponsesProvider
from mocks.runpod import RunPodOpenAIRoute, RunPodQueue
from mocks.scenarios import DEFAULT_ROOT, ScenarioLibrary
from mocks.vertex import VertexAnthropicProvider, VertexGeminiProvider
from mocks.watsonx import WatsonxProvider
from mocks.wire import read_body

OPENAI = OpenAIProvider()
ANTHROPIC = AnthropicProvider()
GEMINI = GeminiProvider()
AZURE_OPENAI = AzureOpenAIProvider()
BEDROCK = BedrockProvider()
RESPONSES = ResponsesProvider()
AZURE_RESPONSES = AzureResponsesProvider()
OLLAMA = OllamaProvider()
OLLAMA_OPENAI = OllamaOpenAIProvider()
OCI = OCIProvider()
OPENROUTER = OpenRouterProvider()
RUNPOD_QUEUE = RunPodQueue()  # its job store is the process's (job ids are unique)
RUNPOD_OPENAI = RunPodOpenAIRoute()
WATSONX = WatsonxProvider()  # the envelope of errors on its paths; each app has its own (its IAM tokens)
PROVIDERS: dict[str, Provider] = {p.name: p for p in (OPENAI, ANTHROPIC, GEMINI, AZURE_OPENAI, BEDROCK, RESPONSES,
                                                      AZURE_RESPONSES, OLLAMA, OLLAMA_OPENAI, OCI,
                                                      OPENROUTER, RUNPOD_QUEUE, RUNPOD_OPENAI)}


def provider_for_request() -> Provider:
    """Whose envelope an error on this path should use."""
    path = request.path
    if path.startswith("/v2/"):
        return RUNPOD_OPENAI if "/openai/" in path else RUNPOD_QUEUE
    if path.startswith("/openai/"):
        return AZURE_OPENAI
    if path.startswith(("/v1/projects/", "/v1beta1/projects/")):
        return GEMINI  # Google's front end answers for every Vertex publisher
    if path.startswith("/model/"):
        return BEDROCK
    if path.startswith("/api/v1/"):
        return OPENROUTER
    if path.startswith("/api/"):
        return OLLAMA
    if path.startswith("/20231130/"):
        return OCI
    if path.startswith("/ml/"):
        return WATSONX
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


def _names_ollama_model(raw: bytes) -> bool:
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    model = body.get("model") if isinstance(body, dict) else None
    return isinstance(model, str) and ollama_model(model) is not None


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
    vertex_gemini = VertexGeminiProvider(state.tokens)
    vertex_anthropic = VertexAnthropicProvider(state.tokens)
    watsonx = WatsonxProvider()
    bedrock_runtime = BedrockProvider(state.aws)  # accepts the temporary credentials this app issues
    providers = {**PROVIDERS, vertex_gemini.name: vertex_gemini, vertex_anthropic.name: vertex_anthropic,
                 bedrock_runtime.name: bedrock_runtime, watsonx.name: watsonx}

    def generation(provider: Provider) -> Response:
        return provider.handle_generation(_call(), state)

    # ------------------------------------------------------------- OpenAI
    @app.post("/v1/chat/completions")
    def openai_chat() -> Response:
        call = _call()
        # The path Ollama's OpenAI-compatible API shares: a model this Ollama has pulled names it.
        provider = OLLAMA_OPENAI if _names_ollama_model(call.raw_body) else OPENAI
        return provider.handle_generation(call, state)

    @app.post("/v1/responses")
    def openai_responses() -> Response:
        return generation(RESPONSES)

    # ------------------------------------------------------------- Azure OpenAI
    @app.post("/openai/deployments/<deployment>/chat/completions")
    def azure_deployment_chat(deployment: str) -> Response:
        call = _call()
        call.notes["deployment"] = deployment
        return AZURE_OPENAI.handle_generation(call, state)

    @app.post("/openai/v1/chat/completions")
    def azure_v1_chat() -> Response:
        return generation(AZURE_OPENAI)

    @app.post("/openai/v1/responses")
    def azure_v1_responses() -> Response:
        return generation(AZURE_RESPONSES)

    @app.post("/openai/responses")
    def azure_classic_responses() -> Response:
        call = _call()
        call.notes["form"] = "classic"
        return AZURE_RESPONSES.handle_generation(call, state)

    # ------------------------------------------------------------- Google OAuth2 and Vertex AI
    @app.post("/token")
    def google_token() -> Response:
        try:
            return jsonify(state.tokens.grant(request.get_data()))
        except TokenError as e:
            return Response(json.dumps(e.body), status=e.status, content_type="application/json")

    @app.post("/<any(v1, v1beta1):version>/projects/<project>/locations/<location>/publishers/<publisher>"
              "/models/<target>")
    def vertex_model(version: str, project: str, location: str, publisher: str, target: str) -> Response:
        model, _, method = target.partition(":")
        call = _call()
        call.notes.update(location=location, project=project, method=method, api_version=version, model=model)
        if publisher == "google" and method in ("generateContent", "streamGenerateContent"):
            call.model = model
            call.stream = method == "streamGenerateContent"
            return vertex_gemini.handle_generation(call, state)
        if publisher == "google" and method == "countTokens":
            call.model = model
            return vertex_gemini.handle_simple(call, state, vertex_gemini.count_tokens, parse_body=True)
        if publisher == "anthropic" and version == "v1" and target == "count-tokens:rawPredict":
            return vertex_anthropic.handle_simple(call, state, vertex_anthropic.count_tokens, parse_body=True)
        if publisher == "anthropic" and version == "v1" and method in ("rawPredict", "streamRawPredict"):
            return vertex_anthropic.handle_generation(call, state)
        abort(404)

    # ------------------------------------------------------------- IBM Cloud IAM and watsonx.ai
    @app.post("/identity/token")
    def ibm_iam_token() -> Response:
        status, body = watsonx.iam.grant(request.get_data())
        return Response(json.dumps(body), status=status, content_type="application/json")

    @app.post("/ml/v1/text/<any(chat, chat_stream, generation, generation_stream):endpoint>")
    def watsonx_text(endpoint: str) -> Response:
        call = _call()
        api, _, stream = endpoint.partition("_")
        call.notes["api"], call.stream = api, bool(stream)
        return watsonx.handle_generation(call, state)

    @app.get("/_mock/iam")
    def iam_stats() -> Response:
        return jsonify(watsonx.iam.stats())

    @app.post("/_mock/iam")
    def iam_settings() -> Response:
        settings = request.get_json(silent=True) or {}
        if settings.get("revoke") is True:
            watsonx.iam.revoke()
        lifetime = settings.get("expires_in")
        if lifetime is not None:
            if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < 1:
                return Response('{"error": "expires_in: a positive integer (seconds)"}', status=400,
                                content_type="application/json")
            watsonx.iam.lifetime = lifetime
        return jsonify(watsonx.iam.stats())

    @app.delete("/_mock/iam")
    def iam_reset() -> Response:
        watsonx.iam.reset()
        return jsonify(watsonx.iam.stats())

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
        return bedrock_runtime.handle_generation(call, state)

    @app.post("/model/<path:model_id>/converse")
    def bedrock_converse(model_id: str) -> Response:
        return bedrock(model_id, stream=False)

    @app.post("/model/<path:model_id>/converse-stream")
    def bedrock_converse_stream(model_id: str) -> Response:
        return bedrock(model_id, stream=True)

    # ------------------------------------------------------------- AWS temporary credentials
    @app.post("/")
    def sts() -> Response:  # the STS Query API (AWS_ENDPOINT_URL_STS); only AssumeRoleWithWebIdentity here
        try:
            xml = state.aws.assume_role_with_web_identity(request.get_data())
        except StsError as e:
            return Response(e.xml(), status=e.status, content_type="text/xml")
        return Response(xml, status=200, content_type="text/xml")

    @app.get("/v1/credentials")
    def container_credentials() -> Response:  # AWS_CONTAINER_CREDENTIALS_FULL_URI
        status, body = state.aws.container_credentials(request.headers.get("Authorization"))
        return Response(json.dumps(body), status=status, content_type="application/json")

    # ------------------------------------------------------------- Ollama (native; its OpenAI route is above)
    @app.post("/api/chat")
    def ollama_chat() -> Response:
        return generation(OLLAMA)

    @app.get("/api/tags")
    def ollama_tags() -> Response:
        return OLLAMA.handle_simple(_call(), state, OLLAMA.list_models)

    # ------------------------------------------------------------- OCI Generative AI inference (signed)
    @app.post("/20231130/actions/chat")
    def oci_chat() -> Response:
        call = _call()
        call.notes["raw_target"] = request.environ.get("mocks.raw_target")
        return OCI.handle_generation(call, state)

    # ------------------------------------------------------------- OpenRouter
    @app.post("/api/v1/chat/completions")
    def openrouter_chat() -> Response:
        return generation(OPENROUTER)

    @app.get("/api/v1/models")
    def openrouter_models() -> Response:
        return OPENROUTER.handle_simple(_call(), state, OPENROUTER.list_models)

    # ------------------------------------------------------------- RunPod Serverless (queue, and vLLM's OpenAI route)
    def runpod_call(endpoint: str, **notes) -> Call:
        call = _call()
        call.notes.update(endpoint=endpoint, **notes)
        return call

    @app.post("/v2/<endpoint>/<any(run, runsync):op>")
    def runpod_submit(endpoint: str, op: str) -> Response:
        return RUNPOD_QUEUE.submit(runpod_call(endpoint, sync=op == "runsync"), state)

    @app.get("/v2/<endpoint>/<any(status, stream):op>/<job_id>")
    @app.post("/v2/<endpoint>/<any(cancel):op>/<job_id>")
    def runpod_job(endpoint: str, op: str, job_id: str) -> Response:
        return RUNPOD_QUEUE.operation(runpod_call(endpoint), state, op, job_id)

    @app.post("/v2/<endpoint>/openai/v1/chat/completions")
    def runpod_openai(endpoint: str) -> Response:
        return RUNPOD_OPENAI.handle_generation(runpod_call(endpoint), state)

    # ------------------------------------------------------------- mock endpoints
    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/_mock/requests")
    def list_requests() -> Response:
        return jsonify(state.log.entries(request.args.get("provider")))

    @app.get("/_mock/oauth")
    def oauth_stats() -> Response:
        return jsonify(state.tokens.stats())

    @app.post("/_mock/oauth")
    def oauth_settings() -> Response:
        lifetime = (request.get_json(silent=True) or {}).get("expires_in")
        if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < 1:
            return Response('{"error": "expires_in: a positive integer (seconds)"}', status=400,
                            content_type="application/json")
        state.tokens.lifetime = lifetime
        return jsonify(state.tokens.stats())

    @app.post("/_mock/oauth/revoke")
    def oauth_revoke() -> Response:
        next_issued = (request.get_json(silent=True) or {}).get("next", 0)
        if not isinstance(next_issued, int) or isinstance(next_issued, bool) or next_issued < 0:
            return Response('{"error": "next: a non-negative integer (tokens to revoke as they are issued)"}',
                            status=400, content_type="application/json")
        revoked = state.tokens.revoke(next_issued)
        return jsonify({"revoked": revoked, **state.tokens.stats()})

    @app.delete("/_mock/oauth")
    def oauth_reset() -> Response:
        state.tokens.reset()
        return jsonify(state.tokens.stats())

    @app.get("/_mock/aws")
    def aws_stats() -> Response:
        return jsonify(state.aws.stats())

    @app.post("/_mock/aws")
    def aws_settings() -> Response:
        lifetime = (request.get_json(silent=True) or {}).get("expires_in")
        if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < 1:
            return Response('{"error": "expires_in: a positive integer (seconds)"}', status=400,
                            content_type="application/json")
        state.aws.lifetime = lifetime
        return jsonify(state.aws.stats())

    @app.delete("/_mock/aws")
    def aws_reset() -> Response:
        state.aws.reset()
        return jsonify(state.aws.stats())

    @app.delete("/_mock/requests")
    def clear_requests() -> Response:
        state.log.clear()
        return jsonify({"cleared": True})

    @app.get("/_mock/scenarios")
    def list_scenarios() -> Response:
        return jsonify({name: {s.name: {"description": s.description, "status": s.status, "streams": s.stream is not None,
                                     "expect": s.expect}
                            for s in state.library.all() if s.provider == p.scenarios_of}
                        for name, p in providers.items()})

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
