"""IamToken (app/providers/ibm_iam.py) on a fake clock and a fake IAM: when it fetches, what
it sends, what it keeps, what a refusal drops, and how failures read (never the key)."""
from __future__ import annotations

import json
import threading
import time

import pytest
import responses

from app.errors import ProxyError
from app.providers.ibm_iam import IamToken

URL = "https://iam.test/identity/token"
KEY = "iam-api-key-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def iam():
    """Each grant answers token-N valid for `lifetime` seconds from the fake clock's now."""
    state = {"grants": [], "lifetime": 3600, "clock": Clock(), "status": 200, "body": None, "delay": 0.0}

    def grant(request):
        state["grants"].append(request.body)
        time.sleep(state["delay"])
        if state["body"] is not None:
            return state["status"], {}, state["body"]
        n = len(state["grants"])
        return 200, {}, json.dumps({"access_token": f"token-{n}", "token_type": "Bearer", "expires_in": state["lifetime"],
                                    "expiration": int(state["clock"]() + state["lifetime"])})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        fake.add_callback(responses.POST, URL, callback=grant)
        yield state


def token(state) -> IamToken:
    return IamToken("wx", lambda: KEY, "https://iam.test/", clock=state["clock"])


def test_the_grant_form_and_one_fetch_per_lifetime(iam):
    t = token(iam)
    assert t.current() is None  # nothing before the first use
    assert [t.token() for _ in range(50)] == ["token-1"] * 50
    assert iam["grants"] == ["grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=" + KEY]
    iam["clock"].now += 3600 - 61  # a minute and a second before expiry: still kept
    assert t.token() == "token-1"
    iam["clock"].now += 2  # within the last minute: renewed
    assert t.token() == "token-2" and t.current() == "token-2"
    assert len(iam["grants"]) == 2


def test_short_lifetimes_renew_a_fifth_early(iam):
    iam["lifetime"] = 10
    t = token(iam)
    assert t.token() == "token-1"
    iam["clock"].now += 7.9
    assert t.token() == "token-1"
    iam["clock"].now += 0.2
    assert t.token() == "token-2"


def test_a_refused_token_is_dropped_once(iam):
    t = token(iam)
    first = t.token()
    assert t.forget(first) is True
    assert t.token() == "token-2"
    # A second request refused with the old token: no further fetch, but worth replaying.
    assert t.forget(first) is True
    assert t.token() == "token-2" and len(iam["grants"]) == 2
    assert IamToken("wx", lambda: KEY, URL).forget(None) is False  # nothing fetched, nothing to renew


def test_concurrent_waiters_share_one_fetch(iam):
    iam["delay"] = 0.2
    t = token(iam)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(t.token())) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert got == ["token-1"] * 8 and len(iam["grants"]) == 1


@pytest.mark.parametrize("status,body,reason", [
    (400, json.dumps({"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."}),
     "the token endpoint answered HTTP 400 (BXNIM0415E: Provided API key could not be found.)"),
    (500, "<html>oops</html>", "the token endpoint answered HTTP 500"),
    (200, json.dumps({"token_type": "Bearer"}), "the token endpoint's reply has no access_token and expiration"),
])
def test_failures_name_the_backend_and_never_the_key(iam, status, body, reason):
    iam["status"], iam["body"] = status, body
    with pytest.raises(ProxyError) as e:
        token(iam).token()
    assert e.value.code == "upstream_authentication_error" and e.value.status == 502
    assert e.value.message.startswith(f"Backend 'wx' could not get an IBM Cloud IAM token: {reason}.")
    assert KEY not in e.value.message


def test_an_unreachable_endpoint():
    t = IamToken("wx", lambda: KEY, "http://127.0.0.1:9", clock=Clock())
    with pytest.raises(ProxyError) as e:
        t.token()
    assert "the token endpoint could not be reached (ConnectionError)" in e.value.message
