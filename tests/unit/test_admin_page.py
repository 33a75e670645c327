"""The admin page's server side (app/admin_page.py): who gets in (the admin key, a session
cookie with its attributes, the CSRF token), what a refused caller sees (a 401 and nothing
else), the strict Content-Security-Policy with its per-response nonce, and escaping."""
from __future__ import annotations

import re

import pytest
from flask import Flask

from app.admin_auth import COOKIE, CSRF_HEADER, AdminAuth
from app.admin_page import register_admin_page
from app.config import load_config
from app.pipeline import Pipeline
from app.routing import Router

KEY = "test-admin-key-0123"
XSS = "<script>alert(1)</script>"
CONFIG = f"""
[backends.oa]
protocol = "openai"
url = "http://127.0.0.1:9/v1"
api_key = "sk-backend-secret-abcdef"
[backends.oa.model_mapping]
"gpt-x" = "gpt-x-2025"
"{XSS}" = "evil"
"""


def make_client(tmp_path, key: str | None):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    config = load_config(cfg)
    app = Flask("admin-test")
    auth = AdminAuth(key)
    register_admin_page(app, Pipeline(config, Router(config)), auth)
    return app.test_client(), auth


@pytest.fixture
def client(tmp_path):
    return make_client(tmp_path, KEY)[0]


def log_in(client, key: str = KEY):
    return client.post("/admin/login", data={"key": key})


def session_cookie(client) -> str:
    return client.get_cookie(COOKIE, path="/admin").value


def csrf(client) -> str:
    page = client.get("/admin").get_data(as_text=True)
    return re.search(r'data-csrf="([^"]+)"', page).group(1)


INSPECT = {"protocol": "openai", "model": "gpt-x", "prompt": "Hi"}


# ------------------------------------------------------------ refused: a 401, nothing shown


@pytest.mark.parametrize("key", [KEY, None], ids=["no session", "admin off"])
def test_without_the_admin_key_every_route_is_a_401_that_shows_nothing(tmp_path, key):
    client, _ = make_client(tmp_path, key)
    answers = [client.get("/admin"), client.post("/admin/logout"), client.post("/admin/inspect", json=INSPECT),
               client.post("/admin/inspect", json=INSPECT, headers={"Authorization": "Bearer wrong-key"}),
               client.post("/admin/login", data={"key": "wrong"})]
    for r in answers:
        assert r.status_code == 401, r.request.path
        text = r.get_data(as_text=True)
        assert "gpt-x" not in text and "oa" not in re.findall(r"\w+", text) and "sk-backend" not in text
        assert COOKIE not in r.headers.get("Set-Cookie", "")
    if key is None:
        assert "no server.admin_key is configured" in answers[0].get_data(as_text=True)
        assert answers[2].get_json() == {"error": {"message": "The admin page is off: no server.admin_key is configured."}}
    else:
        assert '<form method="post" action="/admin/login">' in answers[0].get_data(as_text=True)
        assert answers[2].get_json()["error"]["message"].startswith("Admin key required")


def test_a_wrong_key_is_a_401_with_the_form_and_no_session(client):
    r = log_in(client, "not-the-key")
    assert r.status_code == 401
    page = r.get_data(as_text=True)
    assert "Wrong admin key." in page and 'name="key"' in page
    assert client.get_cookie(COOKIE, path="/admin") is None


# ------------------------------------------------------------ the session


def test_login_sets_a_strict_http_only_cookie_for_admin_paths_and_redirects(client):
    r = log_in(client)
    assert (r.status_code, r.headers["Location"]) == (303, "/admin")
    attrs = [a.strip() for a in r.headers["Set-Cookie"].split(";")]
    assert attrs[0].startswith(COOKIE + "=")
    assert {"HttpOnly", "SameSite=Strict", "Path=/admin"} <= set(attrs)
    assert "Secure" not in attrs  # plain http: a Secure cookie would never come back


def test_the_cookie_is_secure_when_the_login_came_over_https(tmp_path):
    client, _ = make_client(tmp_path, KEY)
    r = client.post("/admin/login", data={"key": KEY}, base_url="https://localhost")
    assert "Secure" in [a.strip() for a in r.headers["Set-Cookie"].split(";")]


def test_with_a_session_the_page_holds_its_csrf_token_and_lists_the_models_escaped(tmp_path):
    client, auth = make_client(tmp_path, KEY)
    log_in(client)
    r = client.get("/admin")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert f'data-csrf="{auth.csrf_token(session_cookie(client))}"' in page
    assert '<option value="gpt-x"></option>' in page
    assert XSS not in page and '<option value="&lt;script&gt;alert(1)&lt;/script&gt;"></option>' in page
    assert "sk-backend-secret" not in page


def test_the_page_allows_only_its_own_nonced_script_and_style(client):
    log_in(client)
    r = client.get("/admin")
    csp = dict(d.strip().split(" ", 1) for d in r.headers["Content-Security-Policy"].split(";"))
    nonce = re.fullmatch(r"'nonce-([\w-]+)'", csp["script-src"]).group(1)
    assert csp == {"default-src": "'none'", "script-src": f"'nonce-{nonce}'", "style-src": f"'nonce-{nonce}'",
                   "connect-src": "'self'", "form-action": "'self'", "frame-ancestors": "'none'",
                   "base-uri": "'none'"}
    page = r.get_data(as_text=True)
    assert re.findall(r"<(script|style)\b([^>]*)>", page) == [("style", f' nonce="{nonce}"'),
                                                               ("script", f' nonce="{nonce}"')]
    assert " style=" not in page and " onclick=" not in page  # no inline attributes the policy would block
    assert (r.headers["Cache-Control"], r.headers["X-Frame-Options"]) == ("no-store", "DENY")
    assert nonce not in client.get("/admin").headers["Content-Security-Policy"]  # one per response


def test_logout_needs_the_csrf_token_and_ends_the_session(client):
    log_in(client)
    token = csrf(client)
    assert client.post("/admin/logout").status_code == 401  # a foreign page's form has no token
    assert client.get("/admin").status_code == 200
    r = client.post("/admin/logout", data={"csrf_token": token})
    assert (r.status_code, r.headers["Location"]) == (303, "/admin")
    assert client.get_cookie(COOKIE, path="/admin") is None
    assert client.get("/admin").status_code == 401


# ------------------------------------------------------------ the inspector's endpoint


def test_inspect_with_a_session_needs_the_csrf_header(client):
    log_in(client)
    assert client.post("/admin/inspect", json=INSPECT).status_code == 401
    assert client.post("/admin/inspect", json=INSPECT, headers={CSRF_HEADER: "forged"}).status_code == 401
    r = client.post("/admin/inspect", json=INSPECT, headers={CSRF_HEADER: csrf(client)})
    assert r.status_code == 200
    out = r.get_json()
    assert out["route"]["backend"] == "oa"
    assert out["upstream_request"]["headers"]["Authorization"] == "Bearer [MASKED]"
    assert "sk-backend-secret" not in r.get_data(as_text=True)


def test_inspect_takes_the_bearer_admin_key(client):
    r = client.post("/admin/inspect", json=INSPECT, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.get_json()["upstream_request"]["url"] == "http://127.0.0.1:9/v1/chat/completions"


@pytest.mark.parametrize("body,status,message", [
    (b"{nope", 400, "The request body is not valid JSON"),
    (b"[" * 200 + b"]" * 200, 400, "The request body nests arrays and objects deeper than"),
    (b'{"protocol": "' + XSS.encode() + b'"}', 400, "Unknown client protocol '<script>"),
])
def test_bad_inspector_input_is_a_json_400(client, body, status, message):
    r = client.post("/admin/inspect", data=body, headers={"Authorization": f"Bearer {KEY}",
                                                          "Content-Type": "application/json"})
    assert r.status_code == status and r.mimetype == "application/json"
    assert r.headers["X-Content-Type-Options"] == "nosniff"  # never sniffed into HTML
    assert r.get_json()["error"]["message"].startswith(message)
