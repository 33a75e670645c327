"""GET/PUT /admin/provider-settings (app/admin.py) on config-mock.toml, in process, each test
with its own SQLite state file: the exact JSON, the switch as every worker sees it, every bad
input a clear 400 that changes nothing, and the admin key as the only way in."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.admin_auth import COOKIE, CSRF_HEADER, AdminAuth
from app.config import load_config
from app.server import create_app
from tests.conftest import REPO

ADMIN_KEY = "mock-admin-key"  # config-mock.toml's default
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PATH = "/admin/provider-settings"
TEXT = frozenset({"text"})
BACKENDS = ["openai", "anthropic", "gemini", "azure", "azure-responses", "vertex", "vertex-anthropic", "bedrock",
            "ollama", "ollama-openai", "oci", "openrouter", "runpod", "runpod-openai", "watsonx"]


def mock_config(tmp_path: Path, server_extra: str = "", state: str | None = None) -> Path:
    """config-mock.toml with its state in tmp_path (and `server_extra` lines in [server])."""
    text = (REPO / "config-mock.toml").read_text()
    if server_extra:
        text = text.replace("[server]\n", "[server]\n" + server_extra + "\n", 1)
    path = tmp_path / "config.toml"
    path.write_text(text + "\n[state]\n" + (state or f'path = "{tmp_path / "state.sqlite3"}"') + "\n")
    return path


@pytest.fixture
def config_path(tmp_path, monkeypatch):
    monkeypatch.delenv("INTERCHANGE_ADMIN_KEY", raising=False)
    monkeypatch.delenv("SERVICE_API_KEY", raising=False)
    monkeypatch.chdir(REPO)  # the config's relative credential files
    return mock_config(tmp_path)


def app_for(config_path: Path, **kw):
    return create_app(load_config(config_path), **kw)


def test_get_lists_every_backend_and_the_default(config_path):
    r = app_for(config_path).test_client().get(PATH, headers=ADMIN)
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    body = r.get_json()
    assert (body["default_provider"], body["configured_default"]) == ("runpod", "runpod")
    assert [p["name"] for p in body["providers"]] == BACKENDS
    by_name = {p["name"]: p for p in body["providers"]}
    assert by_name["openrouter"] == {
        "name": "openrouter", "kind": "openrouter", "protocol": "openai",
        "models": ["openrouter-llama-3.1-8b", "openrouter-claude-sonnet-4.5"],
        "credentials": True, "credentials_problem": None, "state": "ready",
        "requests": 0, "errors": 0, "last_error": None}
    assert by_name["runpod"]["models"] == ["runpod-mistral-7b"]
    assert by_name["bedrock"]["models"] == ["nova-pro", "claude-3-sonnet"]
    assert all(p["credentials"] for p in body["providers"])  # the mock config has every credential


def test_missing_credentials_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    text = mock_config(tmp_path).read_text().replace(
        'api_key = "${OPENROUTER_API_KEY:-sk-or-v1-mock-openrouter-key}"', 'api_key = "${OPENROUTER_API_KEY}"')
    text = text.replace('"${VERTEX_CREDENTIALS_FILE:-mocks/testdata/vertex-service-account.json}"',
                        '"mocks/testdata/missing.json"')
    path = tmp_path / "broken.toml"
    path.write_text(text)
    from app.config import _build
    import tomllib
    config = _build(tomllib.loads(text), path, [])  # load_config would refuse nothing here: keys are per request
    body = create_app(config).test_client().get(PATH, headers=ADMIN).get_json()
    by_name = {p["name"]: p for p in body["providers"]}
    assert {k: by_name["openrouter"][k] for k in ("credentials", "credentials_problem", "state")} == {
        "credentials": False, "credentials_problem": "OPENROUTER_API_KEY not set in environment",
        "state": "no credentials"}
    assert by_name["vertex"]["credentials_problem"] == "credentials_file mocks/testdata/missing.json not found"
    assert by_name["ollama"]["credentials"] is True  # a local Ollama needs none


def test_put_switches_the_default_for_routing_and_for_every_worker(config_path, caplog):
    a, b = app_for(config_path), app_for(config_path)  # two workers on one state file
    router_a, router_b = (x.extensions["interchange"].router for x in (a, b))
    assert router_b.route("some-unmapped-model", TEXT).backend.name == "runpod"
    caplog.set_level(logging.INFO, logger="interchange")
    r = a.test_client().put(PATH, json={"default_provider": "openrouter"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert (r.get_json()["default_provider"], r.get_json()["configured_default"]) == ("openrouter", "runpod")
    assert "default provider runpod -> openrouter (by admin)" in caplog.messages
    route = router_b.route("some-unmapped-model", TEXT)
    assert (route.backend.name, route.reason, route.upstream_model) == ("openrouter", "default", "some-unmapped-model")
    assert "default provider is now openrouter (was runpod; read from the state store)" in caplog.messages
    assert router_a.route("some-unmapped-model", TEXT).backend.name == "openrouter"
    assert router_b.route("gpt-4o-mini", TEXT).reason == "model_mapping"  # mapped models do not move
    assert b.test_client().get(PATH, headers=ADMIN).get_json()["default_provider"] == "openrouter"
    restarted = app_for(config_path)  # the file outlives the process
    assert restarted.extensions["interchange"].router.route("x", TEXT).backend.name == "openrouter"
    back = b.test_client().put(PATH, json={"default_provider": "runpod"}, headers=ADMIN)
    assert back.get_json()["default_provider"] == "runpod"
    assert router_a.route("some-unmapped-model", TEXT).backend.name == "runpod"


@pytest.mark.parametrize("data, message", [
    ('{"default_provider": "ghost"}',
     f"Unknown backend 'ghost' for default_provider. Backends: {', '.join(BACKENDS)}."),
    ('{"default_provider": 42}',
     f"default_provider must be a backend name (a string; got a number). Backends: {', '.join(BACKENDS)}."),
    ('{"default_provider": null}',
     f"default_provider must be a backend name (a string; got a null). Backends: {', '.join(BACKENDS)}."),
    ('{}', f"default_provider must be a backend name (a string; got missing). Backends: {', '.join(BACKENDS)}."),
    ('{"default_provider": "openrouter"', 'The request body is not valid JSON: send {"default_provider": '
                                          '"<backend name>"}.'),
    ('', 'The request body is not valid JSON: send {"default_provider": "<backend name>"}.'),
    ('["openrouter"]', 'The request body must be a JSON object: send {"default_provider": "<backend name>"}.'),
])
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(config_path, data, message):
    client = app_for(config_path).test_client()
    r = client.put(PATH, data=data, headers={**ADMIN, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.get_json() == {"error": {"message": message, "param": "default_provider"}}
    assert client.get(PATH, headers=ADMIN).get_json()["default_provider"] == "runpod"


def test_an_unknown_field_is_named(config_path):
    client = app_for(config_path).test_client()
    r = client.put(PATH, json={"default_provider": "openrouter", "colour": "red"}, headers=ADMIN)
    assert r.status_code == 400
    assert r.get_json() == {"error": {"message": "Unknown field 'colour': only default_provider can be set.",
                                      "param": "colour"}}
    assert client.get(PATH, headers=ADMIN).get_json()["default_provider"] == "runpod"


REFUSED = {"error": {"message": "Admin key required: send Authorization: Bearer <admin key> (a client key does "
                                "not open the admin API)."}}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_KEY},
                                     {"Authorization": "Basic bW9jay1hZG1pbi1rZXk="},
                                     {"X-Api-Key": ADMIN_KEY}, {"Authorization": "Bearer mock-admin-ke"}])
def test_without_the_admin_key_every_admin_call_is_a_401_that_shows_nothing(config_path, headers):
    client = app_for(config_path).test_client()
    for r in (client.get(PATH, headers=headers),
              client.put(PATH, json={"default_provider": "openrouter"}, headers=headers)):
        assert r.status_code == 401
        assert r.get_json() == REFUSED
        assert "X-Interchange-Worker" not in r.headers
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="interchange admin"'
    assert client.get(PATH, headers=ADMIN).get_json()["default_provider"] == "runpod"


@pytest.mark.parametrize("method", ["OPTIONS", "POST", "DELETE", "PATCH", "HEAD"])
def test_other_methods_without_the_key_are_the_same_401(config_path, method):
    r = app_for(config_path).test_client().open(PATH, method=method)
    assert r.status_code == 401 and "Allow" not in r.headers
    if method != "HEAD":
        assert r.get_json() == REFUSED


def test_other_methods_with_the_key(config_path):
    client = app_for(config_path).test_client()
    options = client.options(PATH, headers=ADMIN)
    assert (options.status_code, options.headers["Allow"]) == (204, "GET, HEAD, PUT, OPTIONS")
    post = client.post(PATH, json={"default_provider": "openrouter"}, headers=ADMIN)
    assert (post.status_code, post.headers["Allow"]) == (405, "GET, HEAD, PUT, OPTIONS")
    assert post.get_json() == {"error": {"message": "Method POST is not allowed on /admin/provider-settings "
                                                    "(allowed: GET, HEAD, PUT, OPTIONS)."}}
    assert client.head(PATH, headers=ADMIN).status_code == 200
    assert client.get(PATH, headers=ADMIN).get_json()["default_provider"] == "runpod"


def test_the_client_key_and_the_admin_key_open_only_their_own_api(config_path):
    client = app_for(config_path, service_key="client-service-key").test_client()
    as_client = {"Authorization": "Bearer client-service-key"}
    assert client.get(PATH, headers=as_client).get_json() == REFUSED
    assert client.put(PATH, json={"default_provider": "openrouter"}, headers=as_client).status_code == 401
    models = client.get("/v1/models", headers=ADMIN)
    assert models.status_code == 401 and models.get_json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers=as_client).status_code == 200
    assert client.get(PATH, headers=ADMIN).status_code == 200  # no client key needed on admin routes


def test_no_admin_key_configured_turns_the_admin_api_off(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    path = mock_config(tmp_path)
    path.write_text(path.read_text().replace('admin_key = "${INTERCHANGE_ADMIN_KEY:-mock-admin-key}"\n', ""))
    client = app_for(path).test_client()
    off = {"error": {"message": "The admin API is off: no server.admin_key is configured."}}
    for headers in ({}, ADMIN, {"Authorization": "Bearer "}):
        assert client.get(PATH, headers=headers).get_json() == off
        r = client.put(PATH, json={"default_provider": "openrouter"}, headers=headers)
        assert (r.status_code, r.get_json()) == (401, off)
    assert client.application.extensions["interchange"].router.route("x", TEXT).backend.name == "runpod"


def test_the_admin_key_comes_from_its_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("INTERCHANGE_ADMIN_KEY", "another-admin-key")
    client = app_for(mock_config(tmp_path)).test_client()
    assert client.get(PATH, headers=ADMIN).status_code == 401
    assert client.get(PATH, headers={"Authorization": "Bearer another-admin-key"}).status_code == 200


def test_a_page_session_reads_and_switches_with_its_csrf_token(config_path):
    client = app_for(config_path).test_client()
    auth = AdminAuth(ADMIN_KEY)
    cookie = auth.new_session()
    client.set_cookie(COOKIE, cookie, path="/admin")
    assert client.get(PATH).status_code == 200
    forged = client.put(PATH, json={"default_provider": "openrouter"})  # a foreign page: no token
    assert forged.status_code == 401
    wrong = client.put(PATH, json={"default_provider": "openrouter"}, headers={CSRF_HEADER: "0" * 64})
    assert wrong.status_code == 401
    odd = client.put(PATH, json={"default_provider": "openrouter"}, headers={CSRF_HEADER: "é" * 64})
    assert odd.status_code == 401  # any text: refused, never a 500
    r = client.put(PATH, json={"default_provider": "openrouter"}, headers={CSRF_HEADER: auth.csrf_token(cookie)})
    assert r.status_code == 200 and r.get_json()["default_provider"] == "openrouter"


def test_an_unwritable_store_refuses_the_switch_and_routing_keeps_the_configured_default(tmp_path, monkeypatch,
                                                                                         caplog):
    monkeypatch.chdir(REPO)
    blocker = tmp_path / "file"
    blocker.write_text("")
    client = app_for(mock_config(tmp_path, state=f'path = "{blocker / "state.sqlite3"}"')).test_client()
    with caplog.at_level(logging.WARNING, logger="interchange"):
        r = client.put(PATH, json={"default_provider": "openrouter"}, headers=ADMIN)
        assert r.status_code == 503
        assert r.get_json() == {"error": {"message": "The state store is unavailable; the default provider is "
                                                     "unchanged. Try again."}}
        got = client.get(PATH, headers=ADMIN)
    assert got.status_code == 200 and got.get_json()["default_provider"] == "runpod"
    assert "admin: default provider not switched: state store unwritable (FileExistsError)" in caplog.messages


def test_request_and_error_counts_per_backend(config_path):
    """A request routed to a backend counts; its error (here: the mock is not running) is the last one."""
    text = config_path.read_text().replace("${MOCK_URL:-http://127.0.0.1:8888}", "http://127.0.0.1:9")
    config_path.write_text(text)
    client = app_for(config_path).test_client()
    r = client.post("/v1/chat/completions", json={"model": "openrouter-llama-3.1-8b",
                                                   "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 502
    unrouted = client.post("/v1/chat/completions", json={"model": "x", "messages": "not a list"})
    assert unrouted.status_code == 400  # refused before routing: no backend's count
    body = client.get(PATH, headers=ADMIN).get_json()
    by_name = {p["name"]: p for p in body["providers"]}
    row = by_name["openrouter"]
    assert (row["requests"], row["errors"], row["last_error"]["status"]) == (1, 1, 502)
    assert row["last_error"]["message"] == r.get_json()["error"]["message"]
    assert row["last_error"]["at"].endswith("Z")
    assert sum(p["requests"] for p in body["providers"]) == 1
