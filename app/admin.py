"""The admin API: GET and PUT /admin/provider-settings (the default provider and
every backend's status), for scripts and for the admin page (app/admin_page.py),
which calls it from its JavaScript so there is one implementation of the switch.

Only the admin key opens it (app/admin_auth.py: `Authorization: Bearer <admin key>`,
or the page's session cookie plus its CSRF token for a PUT); a client key
(SERVICE_API_KEY) does not, and the admin key opens nothing else. No admin key
configured: every admin route is a 401. Answers are JSON, errors
`{"error": {"message", "param"}}`; a refused PUT changes nothing.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from flask import Flask, Response, request

from app.admin_auth import COOKIE, AdminAuth
from app.backend_status import provider_settings
from app.default_provider import DefaultProvider, UnknownBackend
from app.jsonutil import dumps, loads
from app.logfields import log_field

if TYPE_CHECKING:
    from app.pipeline import Pipeline

log = logging.getLogger("interchange.admin")

SETTINGS_PATH = "/admin/provider-settings"
MAX_ADMIN_BODY = 64 * 1024  # an admin request is a few bytes of JSON
WORKER_HEADER = "X-Interchange-Worker"  # the answering worker's pid (admin answers only: who served it)
_FIELD = "default_provider"
_ANY_METHOD = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]
_ALLOW = "GET, HEAD, PUT, OPTIONS"


def register_admin_api(app: Flask, pipeline: "Pipeline", auth: AdminAuth) -> None:
    """Adds the admin API's routes to `app`."""
    defaults = pipeline.router.defaults
    if defaults is None:
        raise ValueError("the admin API needs a router with a state store (Router(..., state=...))")

    # Every method comes here, so that without the key even OPTIONS or a wrong method is the
    # same 401 (Flask's own answers would list the methods first).
    @app.route(SETTINGS_PATH, methods=_ANY_METHOD, provide_automatic_options=False)
    def provider_settings_view() -> Response:
        if not auth.admits(request.method, request.headers, request.cookies.get(COOKIE)):
            log.info("admin: refused %s %s (no valid admin key)", request.method, SETTINGS_PATH)
            why = ("The admin API is off: no server.admin_key is configured." if not auth.enabled else
                   "Admin key required: send Authorization: Bearer <admin key> (a client key does not open "
                   "the admin API).")
            return _error(401, why, headers={"WWW-Authenticate": 'Bearer realm="interchange admin"'})
        if request.method == "OPTIONS":
            return Response(status=204, headers={"Allow": _ALLOW})
        if request.method not in ("GET", "HEAD", "PUT"):
            return _error(405, f"Method {request.method} is not allowed on {SETTINGS_PATH} (allowed: {_ALLOW}).",
                          headers={"Allow": _ALLOW})
        if request.method == "PUT":
            refused = _switch(defaults)
            if refused is not None:
                return refused
        return _reply(200, provider_settings(pipeline))


def _switch(defaults: DefaultProvider) -> Response | None:
    """Applies a PUT's body; a Response when it is refused (nothing changed)."""
    length = request.content_length
    data = b"" if length is not None and length > MAX_ADMIN_BODY else request.stream.read(MAX_ADMIN_BODY + 1)
    if length is not None and length > MAX_ADMIN_BODY or len(data) > MAX_ADMIN_BODY:
        return _error(413, f"The request body exceeds {MAX_ADMIN_BODY} bytes.")
    example = 'send {"default_provider": "<backend name>"}'
    try:
        body = loads(data)
    except ValueError:
        return _error(400, f"The request body is not valid JSON: {example}.", _FIELD)
    if not isinstance(body, dict):
        return _error(400, f"The request body must be a JSON object: {example}.", _FIELD)
    extra = sorted(k for k in body if k != _FIELD)
    if extra:
        return _error(400, f"Unknown field '{log_field(extra[0])}': only default_provider can be set.", extra[0])
    name = body.get(_FIELD)
    names = ", ".join(defaults.backends)
    if not isinstance(name, str):
        got = "missing" if _FIELD not in body else f"a {_json_type(name)}"
        return _error(400, f"default_provider must be a backend name (a string; got {got}). "
                           f"Backends: {names}.", _FIELD)
    try:
        defaults.switch(name, by="admin")
    except UnknownBackend:
        return _error(400, f"Unknown backend '{log_field(name)}' for default_provider. Backends: {names}.", _FIELD)
    except Exception as e:  # the store: the type only (a message could name a host or path)
        log.warning("admin: default provider not switched: state store unwritable (%s)", type(e).__name__)
        return _error(503, "The state store is unavailable; the default provider is unchanged. Try again.")
    return None


def _json_type(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", list: "array", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)


def _reply(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status=status, mimetype="application/json",
                    headers={"Cache-Control": "no-store", WORKER_HEADER: str(os.getpid()), **(headers or {})})


def _error(status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None) -> Response:
    error: dict[str, object] = {"message": message}
    if param is not None:
        error["param"] = param
    response = _reply(status, {"error": error}, headers)
    if status == 401:
        del response.headers[WORKER_HEADER]  # a refused caller learns nothing, not even which worker
    return response
