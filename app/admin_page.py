"""The admin web page: GET /admin, its login and logout, and the request inspector's endpoint.

    GET  /admin          the login form without a session (a 401: nothing else is shown);
                         with one, the page: every backend's status and the default-provider
                         switch (read and changed through the admin API, app/admin.py, from the
                         page's JavaScript: one implementation of the switch), and the request
                         inspector (app/inspector.py)
    POST /admin/login    form field `key`: the admin key, traded for a session cookie
                         (HttpOnly, SameSite=Strict, Path=/admin, Secure over https); 303 to /admin
    POST /admin/logout   ends the session (form field `csrf_token`)
    POST /admin/inspect  JSON in, JSON out: the inspector (session + X-CSRF-Token, or the bearer key)

Server-rendered from the templates in app/admin_templates (autoescaped: every model name,
error text and echoed request is text, never markup), with a little inline script and style
allowed by a per-response nonce in a strict Content-Security-Policy; no other asset, nothing
fetched from elsewhere. No admin key configured: every route here is a 401.
"""
from __future__ import annotations

import logging
import secrets
from pathlib import Path

from flask import Flask, Response, request
from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.admin_auth import COOKIE, CSRF_HEADER, AdminAuth
from app.inspector import inspect, protocols_for_page
from app.errors import ProxyError
from app.jsonutil import dumps
from app.pipeline import Pipeline, decode_body

log = logging.getLogger("interchange.admin")

PAGE_PATH = "/admin"
SETTINGS_PATH = "/admin/provider-settings"  # the admin API the page's script calls (app/admin.py)
TEMPLATES = Path(__file__).resolve().parent / "admin_templates"
OFF = "The admin page is off: no server.admin_key is configured."
REFUSED = ("Admin key required: log in at /admin, or send Authorization: Bearer <admin key> "
           "(with a session, also the X-CSRF-Token the page holds).")

_templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                         trim_blocks=True, lstrip_blocks=True)


def register_admin_page(app: Flask, pipeline: Pipeline, auth: AdminAuth) -> None:
    """Adds the admin page's routes to `app`."""
    max_body = pipeline.config.server.max_body_bytes
    models = [m.id for m in pipeline.router.models()]

    def refused(error: str | None = None) -> Response:
        """A 401 that shows nothing: the login form (or, with the admin key off, only that)."""
        return _page("login.html", 401, error=error) if auth.enabled else _page("off.html", 401, message=OFF)

    @app.get(PAGE_PATH)
    def admin_page() -> Response:
        cookie = request.cookies.get(COOKIE)
        if not auth.session_ok(cookie):
            return refused()
        return _page("page.html", 200, csrf_token=auth.csrf_token(cookie), settings_path=SETTINGS_PATH,
                     protocols=protocols_for_page(), models=models)

    @app.post(PAGE_PATH + "/login")
    def admin_login() -> Response:
        if not auth.key_matches(request.form.get("key")):
            if auth.enabled:
                log.info("admin: login refused (wrong admin key)")
            return refused("Wrong admin key.")
        log.info("admin: logged in")
        response = Response(status=303, headers={"Location": PAGE_PATH, "Cache-Control": "no-store"})
        response.set_cookie(COOKIE, auth.new_session(), max_age=int(auth.session_seconds), path=PAGE_PATH,
                            httponly=True, samesite="Strict", secure=request.is_secure)
        return response

    @app.post(PAGE_PATH + "/logout")
    def admin_logout() -> Response:
        if not auth.admits("POST", request.headers, request.cookies.get(COOKIE), request.form.get("csrf_token")):
            return refused()
        response = Response(status=303, headers={"Location": PAGE_PATH, "Cache-Control": "no-store"})
        response.delete_cookie(COOKIE, path=PAGE_PATH, httponly=True, samesite="Strict", secure=request.is_secure)
        return response

    @app.post(PAGE_PATH + "/inspect")
    def admin_inspect() -> Response:
        if not auth.admits("POST", request.headers, request.cookies.get(COOKIE)):
            return _json(401, {"error": {"message": OFF if not auth.enabled else REFUSED}})
        data = request.stream.read(max_body + 1)
        if len(data) > max_body:
            return _json(413, {"error": {"message": f"The request exceeds {max_body} bytes.", "param": None}})
        try:
            body = decode_body(data)
        except ProxyError as e:
            return _json(400, {"error": {"message": f"{e.message} The inspector takes protocol, and model + prompt "
                                                    "or request.", "param": None, "stage": "input"}})
        status, answer = inspect(pipeline, body)
        return _json(status, answer)


def _page(template: str, status: int, **values) -> Response:
    """A rendered page with its own script/style nonce, the policy that allows only that, and
    headers that keep it out of caches, frames and other sites' referrers."""
    nonce = secrets.token_urlsafe(18)
    html = _templates.get_template(template).render(nonce=nonce, csrf_header=CSRF_HEADER, **values)
    return Response(html, status=status, mimetype="text/html", headers={
        "Content-Security-Policy": (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                                    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                                    "base-uri 'none'"),
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer"})


def _json(status: int, body: object) -> Response:
    return Response(dumps(body), status=status, mimetype="application/json",
                    headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
