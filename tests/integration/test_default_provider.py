"""One routing function and the runtime default provider, end to end (issue 15): real proxy
processes on config-mock.toml (each with its own state store) in front of their own mock.

- every backend is reached through the router: its decision logged, counted under its reason
  in interchange_requests_total, and the request in that provider's mock log;
- the OpenRouter integration seed's scenario: RunPod is the default for unmapped models; PUT
  /admin/provider-settings moves them to OpenRouter and back, the next request following;
- the switch outlives a restart (SQLite file kept) and is shared by two proxies on one Redis;
- over HTTP, the admin key is the only key to the admin API, and opens nothing else.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.routing import Router
from tests.backend_models import CONFIG, MOCK_PROVIDER
from tests.conftest import REPO, ServerProcess

ADMIN = {"Authorization": "Bearer mock-admin-key"}
SETTINGS = "/admin/provider-settings"
TEXT = "Hello! I'm a mock assistant. How can I help you today?"
# Unmapped model ids (no registry entry, no model_mapping name): the routing decision `default`.
RUNPOD_MODEL = "mistralai/Mistral-7B-Instruct-v0.3"  # what the RunPod mock's vLLM endpoint serves
OPENROUTER_MODEL = "mistralai/mistral-7b-instruct"  # an OpenRouter model id the OpenRouter mock knows


@pytest.fixture(scope="module")
def mock():
    """This module's own mock: its request log is read and cleared here without disturbing others."""
    server = ServerProcess(["mock"])
    yield server
    server.stop()


def config_file(tmp: Path, state: str, log_level: str = "info") -> Path:
    text = (REPO / "config-mock.toml").read_text().replace('log_level = "info"', f'log_level = "{log_level}"', 1)
    path = tmp / "config.toml"
    path.write_text(text + "\n[state]\n" + state + "\n")
    return path


def sqlite_state(tmp: Path) -> str:
    return f'path = "{tmp / "state.sqlite3"}"'


def proxy(mock, config: Path, **env: str) -> ServerProcess:
    return ServerProcess(["serve", "--config", str(config)], env={"MOCK_URL": mock.url, **env})


def chat(server: ServerProcess, model: str) -> requests.Response:
    return requests.post(server.url + "/v1/chat/completions", timeout=30,
                         json={"model": model, "messages": [{"role": "user", "content": "Hi"}]})


def switch(server: ServerProcess, name: str) -> dict:
    r = requests.put(server.url + SETTINGS, json={"default_provider": name}, headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def mock_log(mock) -> list[dict]:
    return requests.get(mock.url + "/_mock/requests", timeout=5).json()


def clear_log(mock) -> None:
    requests.delete(mock.url + "/_mock/requests", timeout=5)


def providers_reached(mock) -> list[str]:
    """The mock providers that got a request since the log was cleared, in order, each once."""
    seen: list[str] = []
    for entry in mock_log(mock):
        if entry["provider"] not in seen:
            seen.append(entry["provider"])
    return seen


def model_sent(mock, provider: str) -> str:
    """The model id of the (last) generation request `provider`'s mock got."""
    (body,) = [e["body"] for e in mock_log(mock) if e["provider"] == provider and e["method"] == "POST"][-1:]
    inner = body.get("input", {}).get("openai_input", body)  # RunPod's queue wraps the chat body
    return inner["model"]


def requests_total(server: ServerProcess) -> dict[tuple[str, str, str, str], float]:
    """interchange_requests_total by (frontend, backend, reason, status)."""
    text = requests.get(server.url + "/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "interchange_requests":
            for s in family.samples:
                if s.name == "interchange_requests_total":
                    labels = s.labels
                    out[(labels["frontend"], labels["backend"], labels["reason"], labels["status"])] = s.value
    return out


# ------------------------------------------------ every backend through the router


def _one_model_per_backend() -> dict[str, str]:
    """Each backend of config-mock.toml and the first client model the router sends there."""
    first: dict[str, str] = {}
    for m in Router(CONFIG).models():
        first.setdefault(m.backend, m.id)
    assert set(first) == set(CONFIG.backends)  # every backend has a model to reach it by
    return {name: first[name] for name in CONFIG.backends}


def _upstream_model(backend: str, model: str) -> str:
    entry = CONFIG.models.get(model)
    return entry.upstream_model if entry is not None else CONFIG.backends[backend].model_mapping[model]


@pytest.fixture(scope="module")
def debug_proxy(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("router")
    server = proxy(mock, config_file(tmp, sqlite_state(tmp), log_level="debug"))
    yield server
    server.stop()


@pytest.mark.parametrize("backend, model", list(_one_model_per_backend().items()))
def test_each_backend_is_reached_through_the_router(debug_proxy, mock, backend, model):
    clear_log(mock)
    before = requests_total(debug_proxy).get(("openai", backend, "model_mapping", "200"), 0)
    r = chat(debug_proxy, model)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]  # the mock's reply (a reasoning model's differs)
    assert r.json()["model"] == model
    route_lines = [line for line in debug_proxy.output().splitlines() if f" route model={model} " in line]
    assert route_lines and route_lines[-1].endswith(
        f"backend={backend} upstream_model={_upstream_model(backend, model)} reason=model_mapping")
    assert requests_total(debug_proxy)[("openai", backend, "model_mapping", "200")] == before + 1
    reached = [p for p in providers_reached(mock) if p != "oauth"]  # a Google token fetch is not a backend
    assert reached == [MOCK_PROVIDER[backend]]


def test_an_unmapped_model_is_routed_by_the_default_step(debug_proxy, mock):
    clear_log(mock)
    r = chat(debug_proxy, RUNPOD_MODEL)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == RUNPOD_MODEL
    assert f"route model={RUNPOD_MODEL} backend=runpod upstream_model={RUNPOD_MODEL} reason=default" \
        in debug_proxy.output()
    assert requests_total(debug_proxy)[("openai", "runpod", "default", "200")] >= 1
    assert providers_reached(mock) == ["runpod"]
    assert model_sent(mock, "runpod") == RUNPOD_MODEL


# ------------------------------------------------ the seed's scenario (003)


def test_switching_the_default_moves_unmapped_models_from_runpod_to_openrouter_and_back(mock, tmp_path):
    server = proxy(mock, config_file(tmp_path, sqlite_state(tmp_path)))
    try:
        settings = requests.get(server.url + SETTINGS, headers=ADMIN, timeout=10).json()
        assert (settings["default_provider"], settings["configured_default"]) == ("runpod", "runpod")

        # RunPod is the default: its model is served; an OpenRouter model id is not RunPod's (the seed's bug).
        clear_log(mock)
        assert chat(server, RUNPOD_MODEL).json()["choices"][0]["message"]["content"] == TEXT
        assert providers_reached(mock) == ["runpod"]
        clear_log(mock)
        refused = chat(server, OPENROUTER_MODEL)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "model_not_found"
        assert refused.json()["error"]["message"].startswith(
            f"Model '{OPENROUTER_MODEL}' is not configured, and the default provider 'runpod' does not know it "
            f"(The model `{OPENROUTER_MODEL}` does not exist). Available models: ")
        assert providers_reached(mock) == ["runpod"]

        # The switch: the very next request for an unmapped model goes to OpenRouter.
        after = switch(server, "openrouter")
        assert (after["default_provider"], after["configured_default"]) == ("openrouter", "runpod")
        clear_log(mock)
        served = chat(server, OPENROUTER_MODEL)
        assert served.status_code == 200, served.text
        assert served.json()["choices"][0]["message"]["content"] == TEXT
        assert served.json()["model"] == OPENROUTER_MODEL
        assert providers_reached(mock) == ["openrouter"]
        assert model_sent(mock, "openrouter") == OPENROUTER_MODEL
        clear_log(mock)
        not_openrouters = chat(server, RUNPOD_MODEL)  # now OpenRouter's to refuse, and RunPod never asked
        assert not_openrouters.status_code == 400
        assert not_openrouters.json()["error"]["message"] == f"{RUNPOD_MODEL} is not a valid model ID"
        assert providers_reached(mock) == ["openrouter"]
        clear_log(mock)
        mapped = chat(server, "runpod-mistral-7b")  # a mapped model keeps its backend
        assert mapped.status_code == 200 and providers_reached(mock) == ["runpod"]

        # And back.
        assert switch(server, "runpod")["default_provider"] == "runpod"
        clear_log(mock)
        assert chat(server, RUNPOD_MODEL).status_code == 200
        assert providers_reached(mock) == ["runpod"]

        metrics = requests_total(server)
        assert metrics[("openai", "openrouter", "default", "200")] == 1
        assert metrics[("openai", "runpod", "default", "200")] == 2
        out = server.output()
        assert "default provider runpod -> openrouter (by admin)" in out
        assert "default provider openrouter -> runpod (by admin)" in out
    finally:
        server.stop()


def test_the_switch_outlives_a_restart(mock, tmp_path):
    config = config_file(tmp_path, sqlite_state(tmp_path))
    first = proxy(mock, config)
    try:
        switch(first, "openrouter")
    finally:
        first.stop()
    second = proxy(mock, config)  # the same SQLite file, a new process
    try:
        clear_log(mock)
        r = chat(second, OPENROUTER_MODEL)
        assert r.status_code == 200, r.text
        assert providers_reached(mock) == ["openrouter"]
        settings = requests.get(second.url + SETTINGS, headers=ADMIN, timeout=10).json()
        assert (settings["default_provider"], settings["configured_default"]) == ("openrouter", "runpod")
    finally:
        second.stop()


def test_two_proxies_on_one_redis_share_the_switch(mock, tmp_path, redis_url):
    import redis

    config = config_file(tmp_path, f'url = "{redis_url}"')
    a = proxy(mock, config)
    b = proxy(mock, config)
    try:
        switch(a, "openrouter")
        clear_log(mock)
        assert chat(b, OPENROUTER_MODEL).status_code == 200
        assert providers_reached(mock) == ["openrouter"]
        assert "default provider is now openrouter (was runpod; read from the state store)" in b.output()
        switch(b, "runpod")
        clear_log(mock)
        assert chat(a, RUNPOD_MODEL).status_code == 200
        assert providers_reached(mock) == ["runpod"]
    finally:
        a.stop()
        b.stop()
        redis.Redis.from_url(redis_url).delete("interchange:settings:default_provider")  # the session's server


# ------------------------------------------------ keys over HTTP


def test_the_admin_key_is_the_only_way_in_and_opens_nothing_else(mock, tmp_path):
    server = proxy(mock, config_file(tmp_path, sqlite_state(tmp_path)), SERVICE_API_KEY="client-service-key")
    client_key = {"Authorization": "Bearer client-service-key"}
    try:
        for headers in ({}, client_key, {"Authorization": "Bearer wrong"}):
            for method in ("GET", "PUT"):
                r = requests.request(method, server.url + SETTINGS, headers=headers, timeout=10,
                                     json={"default_provider": "openrouter"} if method == "PUT" else None)
                assert r.status_code == 401
                assert set(r.json()) == {"error"} and set(r.json()["error"]) == {"message"}
                assert "openrouter" not in r.text and "runpod" not in r.text
        assert requests.get(server.url + SETTINGS, headers=ADMIN, timeout=10).json()["default_provider"] == "runpod"
        as_admin = requests.post(server.url + "/v1/chat/completions", headers=ADMIN, timeout=10,
                                 json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
        assert as_admin.status_code == 401 and as_admin.json()["error"]["code"] == "invalid_api_key"
        ok = requests.post(server.url + "/v1/chat/completions", headers=client_key, timeout=10,
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
        assert ok.status_code == 200
        assert "mock-admin-key" not in server.output() and "client-service-key" not in server.output()
    finally:
        server.stop()


# ------------------------------------------------ two gunicorn workers


def _counted_by_worker(multiproc: Path, backend: str, reason: str) -> dict[int, float]:
    """interchange_requests_total{backend, reason} per worker pid, from each worker's own counter file."""
    import json

    from prometheus_client.mmap_dict import MmapedDict

    out: dict[int, float] = {}
    for path in multiproc.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, *_ = json.loads(key)  # [family, sample, {label: value}, help]
            if sample == "interchange_requests_total" and (labels.get("backend"), labels.get("reason")) == \
                    (backend, reason):
                out[pid] = out.get(pid, 0) + value
    return out


@pytest.fixture
def gunicorn_two_workers(mock, tmp_path):
    """The README's gunicorn command with two workers, on config-mock.toml with its own SQLite store."""
    from tests.gunicorn_process import running_gunicorn
    from tests.integration.test_gunicorn import readme_command

    argv = readme_command()
    while "=" in argv[0]:
        argv.pop(0)
    args = argv[1:]
    args[args.index("-w") + 1] = "2"
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {"INTERCHANGE_CONFIG": str(config_file(tmp_path, sqlite_state(tmp_path))), "MOCK_URL": mock.url,
           "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    with running_gunicorn(args, env) as (url, workers):
        yield url, workers, multiproc


def test_a_switch_answered_by_one_gunicorn_worker_routes_the_other(gunicorn_two_workers, mock):
    url, workers, multiproc = gunicorn_two_workers
    assert len(workers) == 2
    close = {"Connection": "close"}  # each request a new connection: the workers take turns accepting
    for target, model in (("openrouter", OPENROUTER_MODEL), ("runpod", RUNPOD_MODEL)):
        put = requests.put(url + SETTINGS, json={"default_provider": target}, headers={**ADMIN, **close}, timeout=10)
        assert put.status_code == 200 and put.json()["default_provider"] == target
        switched_by = int(put.headers["X-Interchange-Worker"])
        assert switched_by in workers
        clear_log(mock)
        sent = 0
        # Until the worker that did not answer the PUT has served one: every request follows the switch.
        while sent < 200 and not set(_counted_by_worker(multiproc, target, "default")) - {switched_by}:
            r = requests.post(url + "/v1/chat/completions", headers=close, timeout=30,
                              json={"model": model, "messages": [{"role": "user", "content": "Hi"}]})
            assert r.status_code == 200, r.text
            sent += 1
        other = set(_counted_by_worker(multiproc, target, "default")) - {switched_by}
        assert other and other <= set(workers), f"the other worker served none of {sent} requests"
        assert providers_reached(mock) == [target]


# ------------------------------------------------ every client endpoint asks the router


def _endpoint_requests():
    """(path, headers, body) of one request to each client endpoint of the route table that can
    reach a backend, served plain and pinned (protocol mode), for a model of the openai backend."""
    from app import routes
    from tests.client_requests import client_request

    out = []
    for ep in routes.ENDPOINTS:
        if ep.action == routes.GENERATE or ep.action == routes.MODEL_ACTION:
            path, headers, body = client_request(ep.protocol, "gpt-4o-mini", stream=False)
            if ep.action == routes.MODEL_ACTION:
                path = ep.rule.replace("<path:model_action>", "gpt-4o-mini:generateContent")
            elif path != ep.rule:  # the same protocol at another path (/chat/completions, /responses)
                path = ep.rule
        elif ep.action == routes.COUNT_TOKENS:
            path, headers, body = ep.rule, {"anthropic-version": "2023-06-01"}, {
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
        else:
            continue
        out.append((path, headers, body))
        if ep.pinned_as is not None:
            out.append((f"/{ep.pinned_as}/openai{path}", headers, body))
    if any(ep.action == routes.MODEL_ACTION for ep in routes.ENDPOINTS):
        out.append(("/v1beta/models/gpt-4o-mini:countTokens", {},
                    {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}))
    return out


@pytest.mark.parametrize("path, headers, body", _endpoint_requests(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_client_endpoint_asks_the_router_before_calling_a_backend(mock, tmp_path, monkeypatch, path, headers,
                                                                        body):
    from app.config import load_config
    from app.server import create_app

    monkeypatch.setenv("MOCK_URL", mock.url)
    monkeypatch.chdir(REPO)
    app = create_app(load_config(config_file(tmp_path, sqlite_state(tmp_path))))
    pipeline = app.extensions["interchange"]
    events: list[tuple[str, str]] = []
    route, send = pipeline.router.route, pipeline.client.send

    def routed(*a, **kw):
        decision = route(*a, **kw)
        events.append(("route", decision.backend.name))
        return decision

    def sent(backend, request, *a, **kw):
        events.append(("send", backend.name))
        return send(backend, request, *a, **kw)

    monkeypatch.setattr(pipeline.router, "route", routed)
    monkeypatch.setattr(pipeline.client, "send", sent)
    r = app.test_client().post(path, json=body, headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert events and events[0] == ("route", "openai")
    sends = [backend for what, backend in events if what == "send"]
    assert set(sends) <= {"openai"}
    if "count" not in path.lower():  # a count of an OpenAI backend is estimated here: no call
        assert sends


# ------------------------------------------------ the README's admin curls


def readme_admin_commands() -> list[str]:
    """The shell commands of the README's "Admin API" section, continuation lines joined."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Admin API"):]
    section = section[:section.index("\n## ", 1)]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    return [c for c in block.replace("\\\n", " ").splitlines() if c.strip() and not c.startswith("#")]


def test_the_readme_admin_curls_run_as_written(mock, tmp_path):
    import json
    import subprocess

    server = proxy(mock, config_file(tmp_path, sqlite_state(tmp_path)))
    try:
        host = server.url.removeprefix("http://")
        commands = readme_admin_commands()
        assert len(commands) == 4 and all(c.startswith("curl -s ") and " localhost:9001/" in c for c in commands)
        clear_log(mock)
        out = []
        for command in commands:
            done = subprocess.run(["bash", "-c", command.replace("localhost:9001", host, 1)], capture_output=True,
                                  text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            out.append(json.loads(done.stdout))
        assert out[0]["default_provider"] == "runpod" and len(out[0]["providers"]) == len(CONFIG.backends)
        assert out[1]["default_provider"] == "openrouter"
        assert out[2]["choices"][0]["message"]["content"] == TEXT
        assert providers_reached(mock) == ["openrouter"]
        assert out[3]["default_provider"] == "runpod"
    finally:
        server.stop()
