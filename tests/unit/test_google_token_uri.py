"""The Vertex providers' `token_uri` setting: the service-account key's token
endpoint replaced (a private endpoint; the mock in config-mock.toml, which runs
on other ports than the one the test key names)."""
from __future__ import annotations

import json

from app.providers.google_auth import GoogleToken
from mocks.google_oauth import TEST_SERVICE_ACCOUNT


class _Response:
    status = 200
    headers = {"content-type": "application/json"}

    def __init__(self, payload: dict):
        self.data = json.dumps(payload).encode()


class _TokenEndpoint:
    """google-auth's transport interface: records where each grant went."""

    def __init__(self):
        self.urls: list[str] = []

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        self.urls.append(url)
        return _Response({"access_token": "ya29.test", "expires_in": 3599, "token_type": "Bearer"})


def _fetch(token_uri: str | None) -> list[str]:
    token = GoogleToken("vertex", str(TEST_SERVICE_ACCOUNT), token_uri=token_uri)
    endpoint = _TokenEndpoint()
    token._request = endpoint
    assert token.token() == "ya29.test"
    assert token.token() == "ya29.test"  # cached: one grant
    return endpoint.urls


def test_token_uri_replaces_the_keys_token_endpoint():
    assert _fetch("http://127.0.0.1:4321/token") == ["http://127.0.0.1:4321/token"]


def test_without_token_uri_the_key_file_names_the_endpoint():
    assert _fetch(None) == [json.loads(TEST_SERVICE_ACCOUNT.read_text())["token_uri"]]


def test_forget_drops_a_fetched_token_so_the_next_request_fetches_one():
    token = GoogleToken("vertex", str(TEST_SERVICE_ACCOUNT), token_uri="http://127.0.0.1:1/token")
    endpoint = _TokenEndpoint()
    token._request = endpoint
    assert token.forget("ya29.test") is False  # nothing fetched yet: nothing to drop
    assert token.forget(None) is False  # the refused request carried no token
    assert token.token() == "ya29.test"
    assert token.forget("ya29.test") is True
    assert token.current() is None  # dropped, so no longer what redaction hides
    assert token.token() == "ya29.test"
    assert len(endpoint.urls) == 2  # fetched again, once
    # A second request refused with a token already replaced: worth replaying, nothing dropped.
    assert token.forget("ya29.older") is True
    assert token.current() == "ya29.test" and len(endpoint.urls) == 2


def test_a_static_token_has_nothing_to_forget():
    token = GoogleToken("vertex", static_token="ya29.static")
    assert token.forget("ya29.static") is False
    assert token.token() == "ya29.static"
