"""Transparent mode: `/transparent/{provider}/*` relays a client's request to a
transparent provider instance's native API untouched (the dual-mode gateway seed).

What goes upstream: the method, the rest of the raw path after the instance's endpoint
path (checked and normalised, app/transparent_path.py) under the instance's fixed base
URL (its provider's `native_base()`), the query string as sent, the body bytes, and the
allowlisted headers (app/transparent_headers.py); then the instance's credentials,
applied by its provider's one `authorise` hook (SigV4 re-signed over these exact bytes,
an API key or a token injected), with the client's own stripped. A 401 to a cached
token renews it and replays once, as for every other call (`Provider.send`).

What comes back: the status, the allowlisted headers, and the body bytes relayed as
they arrive, never parsed nor re-framed (Bedrock's binary event stream included). An
upstream error body is relayed too. The instance's secrets never come back: a header
value holding one is dropped, and body bytes holding one are masked (a hostile or broken
upstream's echo). A reply that breaks mid-body is cut (the connection closed before the
chunked body's end), never finished cleanly.

Dispatched in the WSGI layer before Flask (app/server.py), so no werkzeug decoding
touches the path: the raw request target is environ["RAW_URI"], which gunicorn's
workers set and app/http_handler.py sets for gevent's pywsgi.

Errors this module answers itself, in the instance's native shape: its wire module's
error envelope where the wire has a frontend half (OpenAI, Anthropic, Gemini,
Responses), else AWS's REST-JSON shape (`{"message": ...}` with `X-Amzn-ErrorType`,
what Bedrock and botocore speak; also used for OCI, watsonx and Ollama instances, whose
wire modules only read errors). With no instance known, the OpenAI envelope.

  400  a refused path (naming what is wrong), a protocol-mode instance under /transparent
  404  no instance for the path
  405  a method the instance's endpoint does not allow (with Allow)
  413  a body over server.max_body_bytes
  502  the upstream unreachable or its connection broken before a reply
  503  "Provider {type} not available: ..." (no credentials; never a secret)
  504  the upstream silent past the backend's timeout
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from types import ModuleType
from typing import TYPE_CHECKING, Iterator, Mapping

from app.errors import ErrorKind, ProxyError
from app.http_handler import CONNECTION_KEY
from app.instances import PROTOCOL, TRANSPARENT, InstanceConfig, no_instance, wrong_mode
from app.jsonutil import dumps
from app.logfields import log_field
from app.pipeline import redact_bytes, secrets_of
from app.protocols import MODULES, protocol_module
from app.protocols.base import UpstreamRequest
from app.transparent_headers import client_headers, upstream_headers
from app.transparent_path import PathRefused, checked_query, checked_rest
from app.upstream.http import iter_body, read_body

if TYPE_CHECKING:
    from app.pipeline import Pipeline
    from app.providers.base import Provider

log = logging.getLogger("interchange.transparent")

PREFIX = "/transparent"
MAX_ERROR_BODY = 1024 * 1024  # an upstream error body is read whole (to mask secrets), up to this

# AWS's error type for a status, in the REST-JSON error shape.
_AWS_ERROR_TYPES = {400: "ValidationException", 401: "UnrecognizedClientException", 403: "AccessDeniedException",
                    404: "ResourceNotFoundException", 405: "ValidationException", 413: "ValidationException",
                    429: "ThrottlingException", 500: "InternalServerException", 502: "BadGatewayException",
                    503: "ServiceUnavailableException", 504: "ModelTimeoutException"}


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class TransparentMode:
    """The WSGI handler of every transparent instance's endpoints, and of `/transparent/*`."""

    def __init__(self, instances: Mapping[str, InstanceConfig], pipeline: "Pipeline"):
        self._pipeline = pipeline
        self._max_body = pipeline.config.server.max_body_bytes
        # Which requests are this handler's (the Router says which instance serves each).
        paths = [p.path for i in instances.values() if i.mode == TRANSPARENT for p in i.endpoints]
        # A protocol-mode instance asked for under /transparent/{segment}: by name or endpoint's last segment.
        self._protocol_segments = {segment: i for i in instances.values() if i.mode == PROTOCOL
                                   for segment in (i.name, *(p.path.rstrip("/").rsplit("/", 1)[-1]
                                                             for p in i.endpoints))}
        self._prefixes = (PREFIX + "/", *(p + "/" for p in paths))
        self._exact = frozenset((PREFIX, *paths))

    def claims(self, environ) -> bool:
        """True when the request is this handler's: its raw path is at or under `/transparent`
        or a transparent endpoint path."""
        path = raw_path(environ)
        return path.startswith(self._prefixes) or path in self._exact

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        target = raw_target(environ)
        path, _, query = target.partition("?")
        found = self._pipeline.router.route_transparent(path)
        if found is None:
            return self._no_instance(path, start_response)
        endpoint, instance = found
        provider = self._pipeline.providers[instance.name]
        try:
            if method not in endpoint.methods:
                raise ProxyError(ErrorKind.invalid_request, f"Method {method} is not allowed on {endpoint.path} "
                                 f"(allowed: {', '.join(endpoint.methods)}).", status=405)
            rest = checked_rest(path[len(endpoint.path):], provider.native_path_chars)
            query = checked_query(query)
            body = self._body(environ)
            request = UpstreamRequest(method, _url(provider, rest, query),
                                      upstream_headers(_request_pairs(environ), instance.backend.forward_headers),
                                      body, stream=True)
            resp = provider.send(lambda: self._authorised(provider, instance, request), self._pipeline.client,
                                 environ.get(CONNECTION_KEY))
        except PathRefused as e:
            return self._error(instance, provider, method, ProxyError(ErrorKind.invalid_request, str(e)),
                               start_response)
        except ProxyError as e:
            extra = {"Allow": ", ".join(endpoint.methods)} if e.status == 405 else {}
            return self._error(instance, provider, method, e, start_response, extra)
        except Exception:  # a bug must still answer in the native shape, never a traceback to the client
            log.exception("transparent instance=%s: internal error", instance.name)
            return self._error(instance, provider, method, ProxyError(ErrorKind.api_error, "Internal proxy error."),
                               start_response)
        secrets = secrets_of(provider)
        headers = [(k, v) for k, v in client_headers(resp.headers) if not any(s in v for s in secrets)]
        if resp.status_code >= 400:
            return self._upstream_error(instance, provider, method, resp, headers, secrets, start_response)
        self._count(instance, method, resp.status_code)
        start_response(_status_line(resp.status_code), headers)
        return _relay(resp, instance, secrets, environ.get(CONNECTION_KEY))

    def refuse_unauthorised(self, environ, start_response):
        """A request without the proxy's service key (app/service_auth.py): 401 in the instance's
        native shape, saying how a native client presents the key."""
        err = ProxyError(ErrorKind.authentication, "Missing or invalid API key for this proxy (its "
                         "SERVICE_API_KEY): a transparent-mode client sends it as Proxy-Authorization: Bearer <key> "
                         "(its own Authorization carries its provider's credentials).", code="invalid_api_key")
        found = self._pipeline.router.route_transparent(raw_path(environ))
        if found is None:
            status, headers, body = protocol_module("openai").format_error(err)
            return _send(start_response, status, headers, body)
        instance = found[1]
        provider = self._pipeline.providers[instance.name]
        return self._error(instance, provider, environ.get("REQUEST_METHOD", "GET"), err, start_response)

    # ------------------------------------------------------------ steps

    def _body(self, environ) -> bytes:
        too_large = ProxyError(ErrorKind.request_too_large,
                               f"Request body exceeds the {self._max_body} byte limit (server.max_body_bytes).")
        length = environ.get("CONTENT_LENGTH")
        if length and length.isdigit() and int(length) > self._max_body:
            raise too_large
        stream = environ.get("wsgi.input")
        try:
            data = stream.read(self._max_body + 1) if stream is not None else b""
        except (OSError, ValueError):  # a chunked body that breaks its framing, a client gone mid-body
            raise ProxyError(ErrorKind.invalid_request, "The request body could not be read (its chunked "
                             "framing is broken, or the connection ended mid-body).") from None
        if len(data) > self._max_body:
            raise too_large
        return data

    @staticmethod
    def _authorised(provider: "Provider", instance: InstanceConfig, request: UpstreamRequest) -> UpstreamRequest:
        try:
            return provider.authorise(request)
        except ProxyError as e:
            if e.kind is not ErrorKind.configuration:
                raise
            raise ProxyError(ErrorKind.overloaded, f"Provider {instance.type} not available: {e.message}",
                             status=503, code="provider_not_available", backend=instance.name) from None

    def _count(self, instance: InstanceConfig, method: str, status: int) -> None:
        # Any token is a method to HTTP: only the standard ones become label values (a client
        # inventing methods must not grow the metric without bound).
        self._pipeline.metrics.count_instance(instance, method if method in _METHODS else "OTHER", status)

    # ------------------------------------------------------------ errors

    def _no_instance(self, path: str, start_response):
        """The seed's troubleshooting errors, worded as protocol mode words them (app/instances.py)."""
        segment = path[len(PREFIX) + 1:].split("/", 1)[0] if path.startswith(PREFIX + "/") else ""
        protocol_instance = self._protocol_segments.get(segment)
        if protocol_instance is not None:
            err = wrong_mode(protocol_instance, log_field(f"{PREFIX}/{segment}"))
            module = _protocol_envelope(protocol_instance.protocol)
        else:
            err = no_instance(log_field(path), sorted(self._exact - {PREFIX}))
            module = protocol_module("openai")
        status, headers, body = module.format_error(err)
        return _send(start_response, err.status, headers, body)

    def _error(self, instance: InstanceConfig, provider: "Provider", method: str, err: ProxyError,
               start_response, extra: Mapping[str, str] | None = None):
        log.info("transparent instance=%s %s refused: %d %s", instance.name, log_field(method), err.status,
                 err.message)
        self._count(instance, method, err.status)
        status, headers, body = native_error(provider, err)
        return _send(start_response, status, {**headers, **(extra or {})}, body)

    def _upstream_error(self, instance: InstanceConfig, provider: "Provider", method: str, resp, headers, secrets: tuple[str, ...],
                        start_response):
        """An upstream error reply, relayed with the instance's secrets masked."""
        try:
            body = read_body(resp, instance.backend, limit=MAX_ERROR_BODY)
        except ProxyError as e:
            return self._error(instance, provider, method, e, start_response)
        self._count(instance, method, resp.status_code)
        body = redact_bytes(body, secrets)
        start_response(_status_line(resp.status_code), [*headers, ("Content-Length", str(len(body)))])
        return [body]


def native_error(provider: "Provider", err: ProxyError) -> tuple[int, dict[str, str], bytes]:
    """`err` in the provider's native error shape, with the status this module decided."""
    module = protocol_module(provider.wire)
    if hasattr(module, "format_error"):
        _, headers, body = module.format_error(err)
        return err.status, headers, body
    return aws_error(err)


def aws_error(err: ProxyError) -> tuple[int, dict[str, str], bytes]:
    """AWS's REST-JSON error shape, as Bedrock answers and botocore reads it."""
    headers = {"Content-Type": "application/json",
               "X-Amzn-ErrorType": _AWS_ERROR_TYPES.get(err.status, "InternalServerException")}
    if err.retry_after:
        headers["Retry-After"] = str(err.retry_after)
    return err.status, headers, dumps({"message": err.message})


def _protocol_envelope(protocol: str | None) -> ModuleType:
    module = protocol_module(protocol) if protocol in MODULES else None
    return module if module is not None and hasattr(module, "format_error") else protocol_module("openai")


# ------------------------------------------------------------------ helpers


def raw_target(environ) -> str:
    """The request target as the client sent it, still percent-encoded: RAW_URI (gunicorn,
    app/http_handler.py), else REQUEST_URI, else PATH_INFO re-encoded (a server that keeps
    no raw target: encoded and plain slashes are then one, and the checks see the rest)."""
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if target is None:
        from urllib.parse import quote
        target = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/:@!$&'()*+,;=~")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
    return target


def raw_path(environ) -> str:
    return raw_target(environ).partition("?")[0]


def _url(provider: "Provider", rest: str, query: str) -> str:
    url = provider.native_base().rstrip("/") + rest
    return url + "?" + query if query else url


def _request_pairs(environ) -> list[tuple[str, str]]:
    """The client's header fields from the WSGI environ (names lower-cased)."""
    pairs = [(key[5:].replace("_", "-").lower(), value) for key, value in environ.items()
             if key.startswith("HTTP_") and isinstance(value, str)]
    if environ.get("CONTENT_TYPE"):
        pairs.append(("content-type", environ["CONTENT_TYPE"]))
    return pairs


def _relay(resp, instance: InstanceConfig, secrets: tuple[str, ...], connection) -> Iterator[bytes]:
    """The reply's body as it arrives, each piece as it came unless it holds one of the
    instance's secrets (a hostile upstream's echo), which is masked even at the price of the
    piece's framing (a binary event stream then fails its checksum: broken, never leaked).
    A break mid-body cuts the client's connection, so the client sees a broken reply, never
    a finished one."""
    try:
        for chunk in iter_body(resp, instance.backend):
            yield redact_bytes(chunk, secrets)
    except ProxyError as e:
        log.warning("transparent instance=%s: the reply broke mid-body (%s)", instance.name, e.message)
        if connection is not None:
            connection.cut()


def _send(start_response, status: int, headers: Mapping[str, str], body: bytes):
    start_response(_status_line(status), [*headers.items(), ("Content-Length", str(len(body)))])
    return [body]


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Status {code}"
