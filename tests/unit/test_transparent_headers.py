"""Which headers transparent mode passes each way: allowlisted, never a credential, a
cookie or a framing field, and the hop-by-hop fields of RFC 9110 7.6.1 dropped both ways."""
from __future__ import annotations

from app.transparent_headers import client_headers, upstream_headers
from app.upstream.http import Headers


def test_the_allowlisted_client_headers_go_upstream():
    pairs = [("content-type", "application/json"), ("accept", "application/vnd.amazon.eventstream"),
             ("anthropic-version", "2023-06-01"), ("anthropic-beta", "a"), ("anthropic-beta", "b"),
             ("openai-beta", "assistants=v2"), ("x-amzn-bedrock-trace", "ENABLED"), ("x-unlisted", "no")]
    assert upstream_headers(pairs) == {
        "content-type": "application/json", "accept": "application/vnd.amazon.eventstream",
        "anthropic-version": "2023-06-01", "anthropic-beta": "a, b", "openai-beta": "assistants=v2",
        "x-amzn-bedrock-trace": "ENABLED"}


def test_no_credential_or_framing_header_goes_upstream_even_when_configured():
    pairs = [("host", "evil"), ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/..."),
             ("x-amz-date", "20200101T000000Z"), ("x-amz-security-token", "t"), ("x-amz-target", "x"),
             ("cookie", "s=1"), ("proxy-authorization", "Basic x"), ("proxy-foo", "x"), ("api-key", "k"),
             ("x-api-key", "k"), ("x-goog-api-key", "k"), ("content-length", "5"), ("accept-encoding", "gzip"),
             ("x-mock-scenario", "text")]
    forward = [name for name, _ in pairs]  # a backend's forward_headers naming every one of them
    assert upstream_headers(pairs, forward) == {"x-mock-scenario": "text"}


def test_hop_by_hop_headers_and_those_connection_names_stay_behind():
    pairs = [("connection", "keep-alive, Anthropic-Beta"), ("keep-alive", "timeout=5"), ("te", "trailers"),
             ("transfer-encoding", "chunked"), ("upgrade", "h2c"), ("trailer", "x"), ("proxy-connection", "x"),
             ("anthropic-beta", "b"), ("content-type", "application/json")]
    assert upstream_headers(pairs, ["connection", "keep-alive", "te", "upgrade", "trailer"]) == {
        "content-type": "application/json"}


def test_a_value_with_a_line_break_never_goes_upstream():
    assert upstream_headers([("accept", "a\r\nHost: evil"), ("content-type", "x\ny")]) == {}


def test_the_allowlisted_reply_headers_come_back():
    headers = Headers([("Content-Type", "application/vnd.amazon.eventstream"), ("x-amzn-RequestId", "r1"),
                       ("X-Amzn-ErrorType", "ValidationException"), ("x-amzn-bedrock-invocation-latency", "5"),
                       ("request-id", "req_1"), ("anthropic-ratelimit-requests-remaining", "9"),
                       ("x-ratelimit-remaining-tokens", "100"), ("Retry-After", "3"), ("Server", "mock"),
                       ("Set-Cookie", "s=1"), ("Content-Length", "10"), ("Content-Encoding", "gzip"),
                       ("Transfer-Encoding", "chunked"), ("Connection", "close, request-id"),
                       ("Keep-Alive", "timeout=5"), ("X-Internal", "no")])
    assert client_headers(headers) == [
        ("Content-Type", "application/vnd.amazon.eventstream"), ("x-amzn-RequestId", "r1"),
        ("X-Amzn-ErrorType", "ValidationException"), ("x-amzn-bedrock-invocation-latency", "5"),
        ("anthropic-ratelimit-requests-remaining", "9"), ("x-ratelimit-remaining-tokens", "100"),
        ("Retry-After", "3")]


def test_a_retry_after_comes_back_only_when_it_is_advice():
    assert client_headers(Headers([("Retry-After", "30")])) == [("Retry-After", "30")]
    assert client_headers(Headers([("Retry-After", "Wed, 21 Oct 2037 07:28:00 GMT")])) == [
        ("Retry-After", "Wed, 21 Oct 2037 07:28:00 GMT")]
    assert client_headers(Headers([("Retry-After", "sk-echoed-key"), ("retry-after-ms", "soon")])) == []
