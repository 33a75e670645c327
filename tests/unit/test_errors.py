"""Error helpers every frontend relies on: Retry-After parsing, redaction."""
from __future__ import annotations

import email.utils
import time

import pytest

from app.errors import (ErrorKind, ProxyError, redact, redact_error, retry_after_from_headers,
                        retry_after_seconds)
from app.pipeline import upstream_error_for_client

KEY = "ABCDEFGHIJKLMNOPQRSTUVWX7890"


@pytest.mark.parametrize("value,expected", [
    ("7", "7"), (" 12 ", "12"), ("0", "0"), (7, "7"), (2.2, "3"),
    ("99999999999", "86400"),  # capped at a day
    ("Wed, 21 Oct 2015 07:28:00 GMT", "0"),  # a date in the past: retry now
    ("-1", None), (-1, None), (float("nan"), None), (float("inf"), None), (True, None),
    ("1e5", None), ("", None), ("soon", None), ("3\r\nSet-Cookie: x", None), (KEY, None),
    ("Wed, 21 Oct 2015 07:28:00", None),  # a date without a zone
    ("٣", None),  # a non-ASCII digit
])
def test_retry_after_seconds(value, expected):
    assert retry_after_seconds(value) == expected


def test_retry_after_http_date_in_the_future():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= int(retry_after_seconds(when)) <= 31


@pytest.mark.parametrize("headers,expected", [
    ({"Retry-After": "5"}, "5"),
    ({"retry-after": KEY}, None),
    ({"retry-after-ms": "1500"}, "2"),
    ({"Retry-After-Ms": "20"}, "1"),
    ({"retry-after-ms": "1e9"}, None),
    ({"Retry-After": "soon", "retry-after-ms": "3000"}, "3"),
    ({}, None),
])
def test_retry_after_from_headers(headers, expected):
    assert retry_after_from_headers(headers) == expected


def test_proxy_error_retry_after_is_always_seconds():
    assert ProxyError(ErrorKind.rate_limit, "x", retry_after=KEY).retry_after is None
    err = ProxyError(ErrorKind.rate_limit, "x", retry_after="9")
    err.retry_after = "1\r\nX-Injected: y"
    assert err.retry_after is None


@pytest.mark.parametrize("text", [
    f"key {KEY} rejected",
    "key ABCD...7890 rejected",
    "key ABCDEFGH…UVWX7890 rejected",
    "key ABC****************7890 rejected",
    "key ABCDE ... X7890 rejected",
])
def test_redact_catches_the_key_whole_and_masked(text):
    out = redact(text, [KEY])
    assert out == "key [REDACTED] rejected"


@pytest.mark.parametrize("text", ["ABCD7890", "AB...7890", "nothing here", "ABCD...7891"])
def test_redact_leaves_other_text(text):
    assert redact(text, [KEY]) == text


def test_short_secrets_are_not_masked_in_text():
    assert redact("a key of k", ["k"]) == "a key of k"


def test_redact_error_covers_every_text_field():
    err = redact_error(ProxyError(ErrorKind.invalid_request, f"bad {KEY}", param=f"p {KEY}", code=KEY), [KEY])
    assert (err.message, err.param, err.code) == ("bad [REDACTED]", "p [REDACTED]", "[REDACTED]")


@pytest.mark.parametrize("kind,status", [(ErrorKind.authentication, 401), (ErrorKind.permission, 403),
                                         (ErrorKind.invalid_request, 401)])
def test_upstream_auth_failure_is_the_gateways_configuration(kind, status):
    err = upstream_error_for_client(ProxyError(kind, f"Incorrect API key provided: {KEY[:5]}...{KEY[-4:]}"),
                                    "b", (KEY,), status)
    assert err.kind is ErrorKind.bad_gateway and err.status == 502
    assert err.code == "upstream_authentication_error" and "'b'" in err.message
    assert "7890" not in err.message and "API key provided" not in err.message
