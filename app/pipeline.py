"""One request's life: parse, route, send, convert, reply.

    client bytes -> frontend.parse_request -> ir.Request -> Router -> wire.build_body
                  -> provider.exchange (prepare, send; more calls when the provider needs them)
    upstream     -> provider's framing -> wire.parse_response | StreamParser -> frontend.format_response | StreamFormatter

Same-protocol hops (an OpenAI client on an OpenAI backend) send the client's
body on with only the model swapped and relay the upstream frames with only
the model name rewritten (the wire's formatter may leave out a frame that carries
nothing its clients read: Azure's prompt-filter chunk, see openai_chat.annotation_only):
nothing the IR does not model is lost. The stream
parser still watches those frames, so a stream cut short is reported to the
client as an error, never as a clean finish.

Streams are relayed chunk by chunk as they arrive. Until the first upstream
byte arrives nothing is sent, so an upstream that fails early gets a proper
HTTP error in the client's protocol rather than a broken 200 stream.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Iterable, Iterator, Mapping

from app import ir
from app.config import BackendConfig, Config
from app.errors import MIN_SECRET_LENGTH, ErrorKind, ProxyError, invalid, redact_error
from app.jsonutil import MAX_DEPTH, TooDeep, dumps, loads, loads_bounded
from app.metrics import Metrics
from app.protocols import protocol_module, protocol_name
from app.protocols.base import Target
from app.providers import provider_class
from app.providers.base import Call, Provider
from app.routing import Route, Router
from app.state import RESPONSES as STORED_RESPONSES, LazyStore
from app.upstream.framing import Frame, framer
from app.upstream.http import ClientLink, UpstreamClient, iter_body, read_body

log = logging.getLogger("interchange.pipeline")

# The one frontend whose requests use the state store (previous_response_id, store).
RESPONSES = protocol_module("openai_responses")


@dataclass(frozen=True, slots=True)
class Reply:
    """What the server sends: a status, headers, and bytes or a stream of bytes."""
    status: int
    headers: Mapping[str, str]
    body: bytes | Iterable[bytes]


class Pipeline:
    def __init__(self, config: Config, router: Router, client: UpstreamClient | None = None,
                 metrics: Metrics | None = None):
        self.config = config
        self.router = router
        self.client = client or UpstreamClient()
        self.metrics = metrics or Metrics()
        # One provider per backend, built now: a broken kind fails at start-up, and
        # what outlives a request (a token cache, AWS credentials) lives here.
        self.providers: dict[str, Provider] = {
            name: provider_class(b.kind)(b) for name, b in config.backends.items()}
        self.providers.update({name: provider_class(i.backend.kind)(i.backend) for name, i in config.instances.items()})
        for provider in self.providers.values():
            protocol_module(provider.wire)  # imported and its shape checked now
        self.state = LazyStore(config.state)  # opened by the first request that needs it

    # ------------------------------------------------------------ entry

    def handle(self, frontend: ModuleType, body: bytes, headers: Mapping[str, str], *,
               url_model: str | None = None, url_stream: bool | None = None,
               wire_options: Mapping[str, object] | None = None, pinned: str | None = None,
               stream_content_type: str = "text/event-stream", client_link: ClientLink | None = None) -> Reply:
        """Serve one client request in `frontend`'s protocol; never raises. The
        upstream call is abandoned if `client_link` (the client's connection) leaves."""
        started = time.perf_counter()
        outcome = {"backend": "-", "reason": "-"}  # filled in as the request gets routed
        try:
            reply = self._handle(frontend, body, headers, url_model, url_stream, wire_options or {},
                                 pinned, stream_content_type, outcome, client_link)
        except ProxyError as e:
            reply = self.error_reply(frontend, e)
        except Exception:  # a bug must still answer in the client's envelope
            log.exception("internal error handling a %s request", protocol_name(frontend))
            reply = self.error_reply(frontend, ProxyError(ErrorKind.api_error, "Internal proxy error."))
        name = protocol_name(frontend)
        metrics = self.metrics
        metrics.child(metrics.requests, name, outcome["backend"], outcome["reason"], str(reply.status)).inc()
        metrics.child(metrics.latency, name, outcome["backend"]).observe(time.perf_counter() - started)
        return reply

    def error_reply(self, frontend: ModuleType, err: ProxyError) -> Reply:
        status, hdrs, body = frontend.format_error(err)
        return Reply(status, hdrs, body)

    # ------------------------------------------------------------ steps

    def parse(self, frontend: ModuleType, body: bytes, url_model: str | None,
              url_stream: bool | None) -> ir.Request:
        return frontend.parse_request(decode_body(body), model=url_model, stream=url_stream)

    def target_for(self, route: Route, headers: Mapping[str, str]) -> tuple[Target, dict[str, str]]:
        """What the wire module sees of the backend, and the client headers it forwards."""
        backend = route.backend
        forwarded = {}
        # The configured allowlist, plus the headers the backend's own protocol defines
        # for its clients (anthropic-beta): only a backend of that protocol gets those.
        for name in backend.forward_headers + protocol_module(backend.protocol).FORWARDED_CLIENT_HEADERS:
            value = headers.get(name)
            if value is not None:
                forwarded[name] = value
        options = backend.options
        if route.entry is not None and route.entry.wire_options:  # the model's own (Responses verbosity, truncation)
            options = {**options, **route.entry.wire_options}
        return Target(backend=backend.name, model=route.upstream_model, options=options), forwarded

    def _handle(self, frontend: ModuleType, body: bytes, headers: Mapping[str, str],
                url_model: str | None, url_stream: bool | None, wire_options: Mapping[str, object],
                pinned: str | None, stream_content_type: str, outcome: dict[str, str],
                client_link: ClientLink | None = None) -> Reply:
        req = self.parse(frontend, body, url_model, url_stream)
        unknown_previous = False  # previous_response_id names nothing this proxy stored
        if req.previous_response_id is not None:
            req, unknown_previous = self._continue(req)
        outcome["reason"] = "failed"
        route = self.router.route(req.model, req.capabilities(), pinned)
        outcome["backend"], outcome["reason"] = route.backend.name, route.reason
        req = _fit_to_backend(_with_registry_defaults(req, route), route)
        backend_cfg = route.backend
        provider = self.providers[backend_cfg.name]
        backend = protocol_module(provider.wire)
        target, forwarded = self.target_for(route, headers)
        # Same wire, same protocol: the client's body goes on (whoever the provider is).
        same = backend is frontend and backend_cfg.passthrough and req.raw is not None
        if unknown_previous and not same:
            # Only a Responses backend, reached with the client's own body, may know the id.
            raise previous_not_found(req.previous_response_id)
        keep = self._keeper(req, secrets_of(provider)) if frontend is RESPONSES and req.store is not False else None
        if req.n > 1 and not same:
            raise invalid(f"n={req.n} is not supported by backend '{backend_cfg.name}' "
                          f"({backend_cfg.protocol}); only n=1.", param="n")
        body = backend.passthrough_body(req, target) if same else backend.build_body(req, target)
        call = Call(model=target.model, body=body, stream=req.stream, headers=forwarded)
        resp = provider.exchange(call, self.client, client_link)
        secrets = secrets_of(provider)
        if resp.status_code >= 400:
            raise self._upstream_error(backend, backend_cfg, secrets, resp)
        if not req.stream:
            return self._complete(frontend, backend, backend_cfg, req, resp, same, target, secrets, keep)
        chunks = iter_body(resp, backend_cfg)
        first = next(chunks, b"")  # fails as a plain HTTP error if upstream dies before any byte
        formatter = frontend.StreamFormatter(req, **wire_options)
        stream = _Relay(req, backend, formatter, same, target, secrets, framer(provider.framing),
                        self.metrics).run(first, chunks)
        if keep is not None:
            stream = _keep_after(stream, formatter, keep)
        return Reply(200, {"Content-Type": stream_content_type, "Cache-Control": "no-cache",
                           "X-Accel-Buffering": "no"}, stream)

    # ------------------------------------------------------------ stored responses

    def _continue(self, req: ir.Request) -> tuple[ir.Request, bool]:
        """The request with its previous response's conversation ahead of its input;
        (req, True) unchanged when the id is not in the store."""
        record = self._stored(req.previous_response_id)
        if record is None:
            return req, True
        history = list(record["context"]) + list(record["response"].get("output") or [])
        return RESPONSES.continue_request(req, history), False

    def _stored(self, response_id: str) -> dict | None:
        try:
            data = self.state.get().get(STORED_RESPONSES, response_id)
        except Exception as e:
            log.warning("state store: cannot read (%s)", type(e).__name__)
            raise ProxyError(ErrorKind.overloaded, "The response store is unavailable; try again.") from None
        return None if data is None else loads(data)

    def stored_response(self, response_id: str) -> bytes | None:
        """GET /v1/responses/{id}: the response object as the client got it, or None."""
        record = self._stored(response_id)
        return None if record is None else dumps(record["response"])

    def delete_response(self, response_id: str) -> bool:
        """DELETE /v1/responses/{id}: whether there was one to delete."""
        try:
            return self.state.get().delete(STORED_RESPONSES, response_id)
        except Exception as e:
            log.warning("state store: cannot delete (%s)", type(e).__name__)
            raise ProxyError(ErrorKind.overloaded, "The response store is unavailable; try again.") from None

    def _keeper(self, req: ir.Request, secrets: tuple[str, ...]) -> Callable[[object, bytes], None]:
        """Stores a finished response (its JSON, as sent) with the input it answered.
        A store that fails is logged: the client already has its answer."""
        context = dumps(RESPONSES.input_items(req.raw or {}))
        store = self.state

        def keep(response_id: object, response: bytes) -> None:
            if not isinstance(response_id, str) or not response_id:
                return
            try:
                store.get().put(STORED_RESPONSES, response_id,
                                b'{"context":' + context + b',"response":' + redact_bytes(response, secrets) + b"}")
            except Exception as e:
                log.warning("state store: response not stored (%s)", type(e).__name__)
        return keep

    def _upstream_error(self, backend: ModuleType, cfg: BackendConfig, secrets: tuple[str, ...],
                        resp) -> ProxyError:
        body = read_body(resp, cfg, limit=1024 * 1024)
        try:
            err = backend.parse_error(resp.status_code, resp.headers, body)
        except Exception as e:  # the type only: a traceback could quote the body
            log.warning("backend %s: unreadable error body (%s)", cfg.name, type(e).__name__)
            err = ProxyError(ErrorKind.bad_gateway, f"Backend '{cfg.name}' failed with HTTP {resp.status_code}.")
        self.metrics.child(self.metrics.upstream_errors, cfg.name, err.kind.value).inc()
        log.info("upstream error backend=%s status=%s kind=%s", cfg.name, resp.status_code, err.kind.value)
        return upstream_error_for_client(err, cfg.name, secrets, resp.status_code)

    def _complete(self, frontend: ModuleType, backend: ModuleType, cfg: BackendConfig,
                  req: ir.Request, resp, same: bool, target: Target, secrets: tuple[str, ...],
                  keep: Callable[[object, bytes], None] | None = None) -> Reply:
        body = read_body(resp, cfg)
        try:
            parsed = backend.parse_response(body, req)
        except ProxyError as e:  # the reply is not what the protocol says (on any hop)
            raise upstream_error_for_client(e, cfg.name, secrets) from None
        except Exception as e:
            raise ProxyError(ErrorKind.bad_gateway, f"Backend '{cfg.name}' sent a reply that could not "
                             f"be read ({type(e).__name__}).") from e
        self.metrics.count_usage(cfg.name, parsed.usage.input_tokens, parsed.usage.output_tokens)
        if same:
            # The reply goes on as the upstream wrote it (fidelity), now that it is known to be one.
            rewrite = ModelRewriter(backend.RESPONSE_MODEL_FIELD, target.model, req.model)
            text = redact_bytes(rewrite(body.decode("utf-8", "replace")).encode(), secrets)
            if keep is not None:
                keep(_response_id(text), text)
            return Reply(200, {"Content-Type": "application/json"}, text)
        if parsed.finish_reason is ir.FinishReason.error:
            raise model_failure(parsed.raw_finish_reason, cfg.name)
        parsed = dataclasses.replace(parsed, model=req.model)
        reply = frontend.format_response(parsed, req)
        text = redact_bytes(dumps(reply), secrets)
        if keep is not None:
            keep(reply.get("id"), text)
        return Reply(200, {"Content-Type": "application/json"}, text)


def secrets_of(provider: Provider) -> tuple[str, ...]:
    """The provider's credentials in use that are long enough to mask in text."""
    return tuple(s for s in provider.secrets() if s and len(s) >= MIN_SECRET_LENGTH)


def upstream_error_for_client(err: ProxyError, backend: str, secrets: tuple[str, ...],
                              http_status: int | None = None) -> ProxyError:
    """An error a backend reported, as the client may see it: every text it
    carries redacted of the backend's secrets, and a rejection of the proxy's
    own credentials told as what it is (a gateway configuration problem),
    never as the client's key being wrong."""
    err.backend = backend
    if err.kind in (ErrorKind.authentication, ErrorKind.permission) or http_status in (401, 403):
        status = http_status or err.status
        what = "refused the proxy's credentials access" if status == 403 else "rejected the proxy's credentials"
        return ProxyError(ErrorKind.bad_gateway,
                          f"Backend '{backend}' {what} (upstream HTTP {status}). This is a problem with the "
                          f"proxy's configuration for that backend, not with the client's request.",
                          code="upstream_authentication_error", backend=backend)
    return redact_error(err, secrets)


def redact_bytes(data: bytes, secrets: tuple[str, ...]) -> bytes:
    """Reply bytes with the call's secrets masked. An upstream has no business
    echoing our key in content, but a hostile or broken one may: a substring
    test per reply or chunk is cheap insurance."""
    for secret in secrets:
        raw = secret.encode()
        if raw in data:
            data = data.replace(raw, b"[REDACTED]")
    return data


def decode_body(body: bytes) -> dict:
    """The client's body as a JSON object, or a 400 saying what is wrong with it."""
    if not body.strip():
        raise invalid("The request body is empty; expected a JSON object.")
    try:
        data = loads_bounded(body)
    except TooDeep:
        raise invalid(f"The request body nests arrays and objects deeper than {MAX_DEPTH} levels.") from None
    except ValueError as e:
        raise invalid(f"The request body is not valid JSON ({e}).") from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.")
    return data


def previous_not_found(response_id: str) -> ProxyError:
    """The Responses API's answer to a previous_response_id it does not hold (or no longer)."""
    return invalid(f"Previous response with id '{response_id}' not found.", param="previous_response_id",
                   code="previous_response_not_found")


def _keep_after(stream: Iterator[bytes], formatter, keep: Callable[[object, bytes], None]) -> Iterator[bytes]:
    """The stream, then its final response stored: after the last byte was handed to
    the server, and before the connection ends (so a client that goes on when the
    stream ends finds it). A stream cut short or failed is not stored."""
    yield from stream
    final = formatter.final
    if final is not None:
        keep(final.get("id"), dumps(final))


def _response_id(body: bytes) -> object:
    try:
        doc = loads(body)
    except ValueError:
        return None
    return doc.get("id") if isinstance(doc, dict) else None


def model_failure(raw_reason: str | None, backend: str) -> ProxyError:
    """The model itself failed (Gemini MALFORMED_FUNCTION_CALL): an error, never a silent stop."""
    return ProxyError(ErrorKind.bad_gateway,
                      f"The model on backend '{backend}' failed to produce a valid reply "
                      f"(finish reason {raw_reason or 'unknown'}).", code="model_error")


class _Relay:
    """Upstream frames -> client frames for one stream (a small state machine)."""

    def __init__(self, req: ir.Request, backend: ModuleType, formatter, same: bool, target: Target,
                 secrets: tuple[str, ...], framer, metrics: Metrics):
        self.req = req
        self.metrics = metrics
        self.backend = backend
        self.formatter = formatter
        self.same = same
        self.framer = framer  # the provider's stream framing (SSE, AWS event stream)
        self.parser = backend.StreamParser(req)
        self.failed = False  # a StreamError reached the client: send nothing after it
        self.backend_name = target.backend
        self.secrets = secrets
        self.rewrite = ModelRewriter(backend.RESPONSE_MODEL_FIELD, target.model, req.model) if same else None

    def run(self, first: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            secrets = self.secrets
            if first:
                out = self._chunk(first)
                if out:
                    yield redact_bytes(out, secrets)
            if not self.failed:
                for chunk in chunks:
                    out = self._chunk(chunk)
                    if out:
                        yield redact_bytes(out, secrets)
                    if self.failed:
                        break
            if not self.failed:
                yield redact_bytes(self._end(), secrets)
        except ProxyError as e:  # transport failure mid-stream
            if not self.failed:
                yield self._error(e)
        finally:
            chunks.close()

    def _chunk(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for frame in self.framer.feed(chunk):
            self._frame(frame, out)
            if self.failed:
                break
        if self.framer.keepalive:
            # The upstream said it is alive but has nothing yet (OpenRouter's comments while
            # the model is queued): the client hears the same, in its protocol's form.
            self.framer.keepalive = False
            if not self.failed and not any(out):
                out.append(self.formatter.keepalive())
        return b"".join(out)

    def _end(self) -> bytes:
        out: list[bytes] = []
        for frame in self.framer.close():
            self._frame(frame, out)
        if not self.failed:
            for event in self._parse(self.parser.close):
                if self.same and not isinstance(event, ir.StreamError):
                    continue  # the frames already went to the client as they were
                self._emit(event, out)
        if not self.failed:
            out.append(self.formatter.finish())
        return b"".join(out)

    def _frame(self, frame: Frame, out: list[bytes]) -> None:
        if self.same:
            self._pass_on(frame, out)
            return
        for event in self._parse(self.parser.feed, frame):
            self._emit(event, out)
            if self.failed:
                return

    def _pass_on(self, frame: Frame, out: list[bytes]) -> None:
        """Same protocol: the upstream frame goes on as it is (model renamed).
        The parser only watches for the end, errors and usage, so frames that
        carry nothing but content are only checked to be JSON, not parsed.
        An error (the upstream's own error event, or a frame that cannot be
        read) reaches the client as our error event, redacted like every other."""
        if self.backend.is_content_frame(frame):
            if not _is_json(frame.data):
                self._emit(self._unreadable(), out)
                return
        else:
            for event in self._parse(self.parser.feed, frame):
                if isinstance(event, ir.StreamError):
                    self._emit(event, out)
                    return
        data = self.rewrite(frame.data)
        out.append(self.formatter.relay(frame if data is frame.data else Frame(frame.event, data)))

    def _emit(self, event: ir.Event, out: list[bytes]) -> None:
        if isinstance(event, ir.MessageStart):
            event = dataclasses.replace(event, model=self.req.model)
        elif isinstance(event, ir.MessageStop) and event.finish_reason is ir.FinishReason.error:
            event = ir.StreamError(model_failure(event.raw_finish_reason, self.backend_name))
        if isinstance(event, ir.StreamError):
            event = ir.StreamError(upstream_error_for_client(event.error, self.backend_name, self.secrets))
            self.failed = True
        out.append(self.formatter.feed(event))

    def _error(self, err: ProxyError) -> bytes:
        out: list[bytes] = []
        self._emit(ir.StreamError(err), out)
        return b"".join(out)

    def _parse(self, fn: Callable, *args) -> list[ir.Event]:
        try:
            events = fn(*args)
            for e in events:
                if isinstance(e, ir.MessageStop):
                    self.metrics.count_usage(self.backend_name, e.usage.input_tokens, e.usage.output_tokens)
            return events
        except ProxyError as e:
            return [ir.StreamError(e)]
        except Exception as e:
            log.warning("backend %s: unreadable stream frame (%s)", self.backend_name, type(e).__name__)
            return [self._unreadable()]

    def _unreadable(self) -> ir.StreamError:
        return ir.StreamError(ProxyError(
            ErrorKind.bad_gateway, f"Backend '{self.backend_name}' sent a stream that could not be read."))


# ------------------------------------------------------------------ helpers


def _is_json(text: str) -> bool:
    try:
        loads(text)
    except ValueError:
        return False
    return True


def _fit_to_backend(req: ir.Request, route: Route) -> ir.Request:
    """Drop what the client asked for only optionally (adaptive thinking, another
    protocol's droppable hosted tools such as Responses `web_search`) when the
    chosen backend or model cannot do it; the router refused the rest."""
    tools = ir.tools_for(route.backend.protocol, req.tools)
    if len(tools) != len(req.tools):
        # Nothing left to choose from or to call in parallel: those settings go too.
        req = dataclasses.replace(req, tools=tools, **({} if tools else {"tool_choice": None,
                                                                          "parallel_tool_calls": None}))
    reasoning = req.reasoning
    if reasoning is None or not reasoning.optional:
        return req
    caps = route.entry.capabilities if route.entry is not None and route.entry.capabilities else None
    if route.backend.has(frozenset({"thinking"})) and (caps is None or "thinking" in caps):
        return req
    return dataclasses.replace(req, reasoning=None)


def _with_registry_defaults(req: ir.Request, route: Route) -> ir.Request:
    """Registry entries may set defaults the client left out (max_tokens, effort and
    summary level, temperature); the wire-only ones (verbosity, truncation) go to the
    writer as target options (target_for)."""
    e = route.entry
    if e is None:
        return req
    changes: dict[str, object] = {}
    if req.max_tokens is None and e.max_tokens is not None:
        changes["max_tokens"] = e.max_tokens
    if req.reasoning is None and (e.reasoning_effort is not None or e.summary_level is not None):
        changes["reasoning"] = ir.Reasoning(effort=e.reasoning_effort, summary=e.summary_level,
                                            include_thoughts=True if e.summary_level is not None else None)
    if req.temperature is None and e.temperature is not None:
        changes["temperature"] = e.temperature
    return dataclasses.replace(req, **changes) if changes else req


class ModelRewriter:
    """Replaces the model name in a same-protocol reply with the client's.

    Only values equal to the upstream's model id are replaced (the configured id,
    or the dated id the provider answers with, learnt from its first mention),
    and only as a JSON key/value pair: a model name inside generated text has
    escaped quotes and is never touched; a tool argument that happens to be
    called "model" keeps its value unless it is exactly the upstream id.
    """

    __slots__ = ("_pattern", "_needle", "_client", "_known", "_literal", "_literal_out")

    def __init__(self, field: str, upstream: str, client: str):
        self._pattern = _field_pattern(field)
        self._needle = '"' + field + '"'
        self._client = client
        self._known = {upstream}
        # The last pair replaced, exactly as written: a stream repeats it in
        # every chunk, and a plain string replace is cheaper than the regex.
        self._literal: str | None = None
        self._literal_out = ""

    def __call__(self, text: str) -> str:
        if self._needle not in text:
            return text  # no "field" key at all: nothing to learn or replace
        literal = self._literal
        if literal is not None and literal in text and text.count(self._needle) == 1:
            return text.replace(literal, self._literal_out, 1)
        known = self._known
        if len(known) == 1:
            m = self._pattern.search(text)
            if m and m.group(2) and m.group(2) != self._client:  # "" names no model (Azure's filter chunk)
                known.add(m.group(2))
            if self._client in known and len(known) == 1:
                return text  # the only known id is the client's own name: replacing is the identity
        return self._pattern.sub(self._replace, text)

    def _replace(self, m: re.Match) -> str:
        if m.group(2) not in self._known:
            return m.group(0)
        self._literal, self._literal_out = m.group(0), m.group(1) + self._client + '"'
        return self._literal_out


@functools.lru_cache(maxsize=16)
def _field_pattern(field: str) -> re.Pattern:
    return re.compile(r'("' + re.escape(field) + r'"\s*:\s*")([^"\\]*)"')
