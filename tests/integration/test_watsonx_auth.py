"""watsonx's IAM token through the proxy, counted at the mock's token endpoint (/_mock/iam):
one fetch per token lifetime however many requests (and concurrent first requests), a new
one shortly before expiry, a revoked token renewed once and the call replayed once, a
second 401 the client's upstream_authentication_error naming the backend; the API key and
the tokens never in a reply or the proxy's log."""
from __future__ import annotations

import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from mocks.watsonx import API_KEY
from tests.client_requests import FRONTENDS, client_request, error_message
from tests.conftest import ServerProcess
from tests.provider_configs import ISOLATED

TEXT = "Hello! I'm a mock assistant. How can I help you today?"
PROJECT = "8a3f1c2e-5b7d-4e9a-9c1f-2d6b8e4a7c30"


def proxy_for(tmp_path, mock_url: str, api_key: str = API_KEY) -> ServerProcess:
    config = tmp_path / "watsonx.toml"
    config.write_text(textwrap.dedent(f"""
        [server]
        log_level = "debug"

        [backends.wx]
        kind = "watsonx"
        url = "{mock_url}"
        iam_url = "{mock_url}"
        api_key = "{api_key}"
        project_id = "{PROJECT}"
        forward_headers = ["X-Mock-Scenario"]
        [backends.wx.model_mapping]
        "granite" = "ibm/granite-3-8b-instruct"
        "granite-base" = "ibm/granite-3-8b-base"
        [backends.wx.options.prompt_templates]
        "ibm/granite-3-8b-base" = "granite"
    """))
    return ServerProcess(["serve", "--config", str(config)], env=ISOLATED)


@pytest.fixture
def mock():
    server = ServerProcess(["mock"])
    yield server
    server.stop()


def iam(mock: ServerProcess) -> dict:
    return requests.get(mock.url + "/_mock/iam", timeout=5).json()


def watsonx_calls(mock: ServerProcess) -> list[dict]:
    return requests.get(mock.url + "/_mock/requests", params={"provider": "watsonx"}, timeout=5).json()


def post(proxy: ServerProcess, frontend: str, model: str = "granite", stream: bool = False,
         scenario: str | None = None) -> requests.Response:
    path, headers, body = client_request(frontend, model, stream)
    if scenario:
        headers = {**headers, "X-Mock-Scenario": scenario}
    return requests.post(proxy.url + path, json=body, headers=headers, timeout=20)


def assert_text(r: requests.Response, stream: bool) -> None:
    assert r.status_code == 200, r.text
    assert ("Hello" if stream else TEXT) in r.text
    assert "event: error" not in r.text


def test_one_token_fetch_for_many_requests(tmp_path, mock):
    proxy = proxy_for(tmp_path, mock.url)
    try:
        assert iam(mock)["token_requests"] == 0  # nothing fetched before the first request
        for i in range(24):
            model = "granite-base" if i % 4 == 3 else "granite"  # chat and text generation alike
            assert_text(post(proxy, FRONTENDS[i % len(FRONTENDS)], model, stream=i % 2 == 1), i % 2 == 1)
        assert iam(mock) == {"token_requests": 1, "tokens_issued": 1, "expires_in": 3600}
        assert len(watsonx_calls(mock)) == 24  # and no call replayed
    finally:
        proxy.stop()


def test_concurrent_first_requests_share_one_fetch(tmp_path, mock):
    proxy = proxy_for(tmp_path, mock.url)
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            replies = list(pool.map(lambda i: post(proxy, "openai", stream=i % 2 == 1), range(16)))
        for i, r in enumerate(replies):
            assert_text(r, i % 2 == 1)
        assert iam(mock)["token_requests"] == 1
    finally:
        proxy.stop()


def test_token_renewed_once_per_lifetime(tmp_path, mock):
    # 5 s tokens are renewed a fifth of their lifetime early: 4 s after issue.
    assert requests.post(mock.url + "/_mock/iam", json={"expires_in": 5}, timeout=5).ok
    proxy = proxy_for(tmp_path, mock.url)
    try:
        for stream in (False, True, False):
            assert_text(post(proxy, "openai", stream=stream), stream)
        assert iam(mock)["token_requests"] == 1
        time.sleep(4.5)
        for stream in (False, True, False, True):
            assert_text(post(proxy, "anthropic", stream=stream), stream)
        assert iam(mock)["token_requests"] == 2  # renewed once before it expired, then reused
        assert all(c["status"] == 200 for c in watsonx_calls(mock))  # never sent an expired token
    finally:
        proxy.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_revoked_token_is_renewed_once_and_the_call_replayed(tmp_path, mock, stream):
    proxy = proxy_for(tmp_path, mock.url)
    try:
        assert_text(post(proxy, "openai"), False)
        assert requests.post(mock.url + "/_mock/iam", json={"revoke": True}, timeout=5).ok
        requests.delete(mock.url + "/_mock/requests", timeout=5)
        assert_text(post(proxy, "gemini", stream=stream), stream)
        assert iam(mock)["token_requests"] == 2
        assert [c["status"] for c in watsonx_calls(mock)] == [401, 200]  # one refusal, one replay
        assert_text(post(proxy, "anthropic", stream=stream), stream)
        assert iam(mock)["token_requests"] == 2  # the new token is kept
    finally:
        proxy.stop()


def test_concurrent_refusals_share_one_renewal(tmp_path, mock):
    proxy = proxy_for(tmp_path, mock.url)
    try:
        assert_text(post(proxy, "openai"), False)
        assert requests.post(mock.url + "/_mock/iam", json={"revoke": True}, timeout=5).ok
        with ThreadPoolExecutor(max_workers=12) as pool:
            replies = list(pool.map(lambda i: post(proxy, "openai"), range(12)))
        for r in replies:
            assert_text(r, False)
        assert iam(mock)["token_requests"] == 2
    finally:
        proxy.stop()


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_second_401_is_the_clients_authentication_error(tmp_path, mock, frontend):
    proxy = proxy_for(tmp_path, mock.url)
    try:
        r = post(proxy, frontend, scenario="error_401")
        assert r.status_code == 502, r.text
        message = error_message(frontend, r.json())
        assert "Backend 'wx' rejected the proxy's credentials (upstream HTTP 401)" in message
        assert [c["status"] for c in watsonx_calls(mock)] == [401, 401]  # replayed once, not more
        assert iam(mock)["token_requests"] == 2
        assert API_KEY not in r.text and API_KEY not in proxy.output()
    finally:
        proxy.stop()


def test_a_refused_api_key_names_the_backend_and_never_the_key(tmp_path, mock):
    wrong = "wrong-watsonx-api-key-0123456789"
    proxy = proxy_for(tmp_path, mock.url, api_key=wrong)
    try:
        for frontend in FRONTENDS:
            r = post(proxy, frontend)
            assert r.status_code == 502, r.text
            message = error_message(frontend, r.json())
            assert "Backend 'wx' could not get an IBM Cloud IAM token" in message
            assert "BXNIM0415E" in message  # IAM's own reason
            assert wrong not in r.text
        assert watsonx_calls(mock) == []
        assert wrong not in proxy.output()
    finally:
        proxy.stop()


def test_tokens_never_reach_the_log(tmp_path, mock):
    proxy = proxy_for(tmp_path, mock.url)
    try:
        assert_text(post(proxy, "openai", stream=True), True)
        output = proxy.output()
        assert API_KEY not in output
        assert "eyJ" not in output  # no JWT (their header starts so) in the debug log
    finally:
        proxy.stop()
