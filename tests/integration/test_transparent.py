"""Transparent mode end to end: native clients (boto3, the anthropic SDK) through
`/transparent/{provider}` to the strict mock, which checks the proxy's own credentials;
every path and header attack refused before any upstream call (the mock's request log
stays empty); no client credential ever reaching the mock; streamed bytes identical to
the mock's own; per-instance metrics."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading

import anthropic
import boto3
import openai
import botocore.config
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from mocks.bedrock import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.conftest import ServerProcess
from tests.gunicorn_process import running_gunicorn
from tests.hostile_upstream import HostileUpstream
from tests.integration import rawhttp

MODEL = "anthropic.claude-3-sonnet-20240229-v1:0"
CLIENT_KEY_ID, CLIENT_SECRET = "AKIDCLIENTDUMMY", "client-secret-that-must-stay-here"
CLIENT_ANTHROPIC_KEY = "sk-ant-client-key-that-must-stay-here"
PROXY_ANTHROPIC_KEY = os.environ.get("ANTHROPIC_API_KEY", "mock-anthropic-key")  # config-mock.toml's default
CONVERSE = {"messages": [{"role": "user", "content": [{"text": "Hello"}]}], "inferenceConfig": {"maxTokens": 100}}
BOTO = botocore.config.Config(retries={"max_attempts": 1}, read_timeout=20)


def digest(value: str) -> str:
    """What the mock's request log holds for a credential header (mocks/request_log.py)."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def silent_upstream():
    """A port that accepts connections and never answers (the upstream timeout)."""
    sock = socket.create_server(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


# Reply headers the trickle upstream adds: one allowlisted, one allowlisted but made hop-by-hop by
# its Connection, the RFC 9110 hop-by-hop ones, a cookie, one nobody listed.
REPLY_EXTRAS = (b"x-amzn-bedrock-invocation-latency: 5\r\nx-amzn-RequestId: r-1\r\n"
                b"Connection: x-amzn-RequestId\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\nTrailer: x-sum\r\n"
                b"Set-Cookie: session=upstream\r\nX-Upstream-Internal: 1\r\n")


class TrickleUpstream:
    """An upstream that sends its reply's first chunk, then waits for the test to say it
    reached the client (`go`) before it either finishes the body or (`cut`) closes mid-body."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.go = threading.Event()
        self.cut = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.amazon.eventstream\r\n"
                             + REPLY_EXTRAS + b"Transfer-Encoding: chunked\r\n\r\nb\r\nfirst-piece\r\n")
                self.go.wait(10)
                self.go.clear()
                if not self.cut:
                    conn.sendall(b"c\r\nsecond-piece\r\n0\r\n\r\n")


@pytest.fixture(scope="module")
def trickle():
    upstream = TrickleUpstream()
    yield upstream
    upstream.sock.close()


@pytest.fixture(scope="module")
def hostile():
    upstream = HostileUpstream()
    yield upstream
    upstream.stop()


HOSTILE_KEY = "hostile-anthropic-key-5b4aR4tYQ7wZ"


@pytest.fixture(scope="module")
def tstack(tmp_path_factory, silent_upstream, trickle, hostile):
    mock = ServerProcess(["mock"])
    closed = socket.create_server(("127.0.0.1", 0))
    unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there now
    instances = {
        "bedrock_transparent": {"type": "bedrock", "mode": "transparent", "backend": "bedrock", "region": "us-east-1",
                                "endpoints": [["/transparent/bedrock", ["GET", "POST"]]]},
        "anthropic_transparent": {"type": "anthropic", "mode": "transparent", "backend": "anthropic",
                                  "endpoints": [["/transparent/anthropic", ["POST"]]]},
        "anthropic_quiet": {"type": "anthropic", "mode": "transparent", "backend": "anthropic", "metrics": False,
                            "endpoints": [["/transparent/quiet", ["POST"]]]},
        "bedrock_nokeys": {"type": "bedrock", "mode": "transparent", "backend": "bedrock",
                           "settings": {"aws_secret_access_key": None},
                           "endpoints": [["/transparent/bedrock-nokeys", ["POST"]]]},
        "bedrock_gone": {"type": "bedrock", "mode": "transparent", "backend": "bedrock", "url": unreachable,
                         "endpoints": [["/transparent/bedrock-gone", ["POST"]]]},
        "bedrock_silent": {"type": "bedrock", "mode": "transparent", "backend": "bedrock", "url": silent_upstream,
                           "timeout": 0.5, "endpoints": [["/transparent/bedrock-silent", ["POST"]]]},
        "azure_transparent": {"type": "azure", "mode": "transparent", "backend": "azure",
                              "endpoints": [["/transparent/azure", ["POST"]]]},
        "bedrock_trickle": {"type": "bedrock", "mode": "transparent", "backend": "bedrock", "url": trickle.url,
                            "endpoints": [["/transparent/bedrock-trickle", ["POST"]]]},
        "anthropic_hostile": {"type": "anthropic", "mode": "transparent", "backend": "anthropic", "url": hostile.url,
                              "api_key": HOSTILE_KEY, "forward_headers": ["X-Hostile"],
                              "endpoints": [["/transparent/anthropic-hostile", ["POST"]]]},
        "bedrock_us1": {"type": "bedrock", "mode": "protocol", "protocol": "openai", "backend": "bedrock",
                        "region": "us-east-1", "endpoints": [["/openai/bedrock_us1", ["POST"]]]},
    }
    path = tmp_path_factory.mktemp("instances") / "instances.json"
    path.write_text(json.dumps(instances))
    try:
        proxy = ServerProcess(["--config", "config-mock.toml", "--instances", str(path)],
                              command=[sys.executable, "-m", "tests.instance_proxy"], env={"MOCK_URL": mock.url})
    except Exception:
        mock.stop()
        raise
    PROCESSES["proxy"] = proxy
    yield mock.url, proxy.url
    proxy.stop()
    mock.stop()
    # Whatever the module sent, the proxy's log holds no traceback and no credential.
    output = proxy.output()
    assert "Traceback" not in output
    assert not [s for s in (SECRET_ACCESS_KEY, PROXY_ANTHROPIC_KEY, CLIENT_ANTHROPIC_KEY, CLIENT_SECRET, HOSTILE_KEY)
                if s in output]


PROCESSES: dict[str, ServerProcess] = {}  # the module's proxy, for tests that read its log


@pytest.fixture
def urls(tstack):
    mock_url, proxy_url = tstack
    requests.delete(f"{mock_url}/_mock/requests", timeout=5)
    return tstack


def logged(mock_url: str) -> list[dict]:
    return requests.get(f"{mock_url}/_mock/requests", timeout=5).json()


def bedrock_client(endpoint_url: str):
    return boto3.client("bedrock-runtime", endpoint_url=endpoint_url, region_name="us-east-1",
                        aws_access_key_id=CLIENT_KEY_ID, aws_secret_access_key=CLIENT_SECRET, config=BOTO)


# ------------------------------------------------------------------ native clients


def test_boto3_converse_through_the_proxy_is_signed_by_the_proxy(urls):
    mock_url, proxy_url = urls
    reply = bedrock_client(f"{proxy_url}/transparent/bedrock").converse(modelId=MODEL, **CONVERSE)
    assert reply["output"]["message"]["content"][0]["text"]
    assert reply["stopReason"] == "end_turn"
    (entry,) = logged(mock_url)
    # The mock verified a SigV4 signature by the proxy's key (mocks/sigv4.py), over the path boto3 wrote.
    assert (entry["status"], entry["path"], entry["credentials"]["aws_access_key_id"]) == (
        200, f"/model/{MODEL}/converse", ACCESS_KEY_ID)


def test_boto3_converse_stream_through_the_proxy(urls):
    mock_url, proxy_url = urls
    reply = bedrock_client(f"{proxy_url}/transparent/bedrock").converse_stream(modelId=MODEL, **CONVERSE)
    events = list(reply["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text and events[0] == {"messageStart": {"role": "assistant"}}
    assert [k for e in events for k in e][-2:] == ["messageStop", "metadata"]
    (entry,) = logged(mock_url)
    assert (entry["status"], entry["stream"], entry["credentials"]["aws_access_key_id"]) == (200, True, ACCESS_KEY_ID)


def test_the_mock_refuses_the_clients_own_signature(urls):
    mock_url, _ = urls
    with pytest.raises(ClientError) as caught:
        bedrock_client(mock_url).converse(modelId=MODEL, **CONVERSE)
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_the_seeds_curl_example_works_as_written(urls):
    """Seed 004's "Test Transparent Mode" curl, against the proxy (only the host changed)."""
    _, proxy_url = urls
    r = requests.post(f"{proxy_url}/transparent/bedrock/model/anthropic.claude-3-sonnet/converse",
                      headers={"Content-Type": "application/json"},
                      data='{\n    "messages": [{"role": "user", "content": [{"text": "Hello"}]}],\n'
                           '    "inferenceConfig": {"maxTokens": 100}\n  }', timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()["output"]["message"]["role"] == "assistant"


def test_anthropic_sdk_through_the_proxy_gets_the_proxys_key(urls):
    mock_url, proxy_url = urls
    client = anthropic.Anthropic(base_url=f"{proxy_url}/transparent/anthropic", api_key=CLIENT_ANTHROPIC_KEY,
                                 max_retries=0)
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100,
                                     messages=[{"role": "user", "content": "Hello"}])
    assert message.content[0].text
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100,
                                messages=[{"role": "user", "content": "Hello"}]) as stream:
        streamed = "".join(stream.text_stream)
    assert streamed
    entries = logged(mock_url)
    assert [(e["path"], e["status"], e["stream"]) for e in entries] == [
        ("/v1/messages", 200, False), ("/v1/messages", 200, True)]
    assert {e["credentials"]["x-api-key"] for e in entries} == {digest(PROXY_ANTHROPIC_KEY)}
    # The SDK's own protocol headers went on; its key did not.
    assert {e["headers"]["anthropic-version"] for e in entries} == {client.default_headers["anthropic-version"]}


def test_no_client_credential_ever_reaches_the_upstream(urls):
    mock_url, proxy_url = urls
    secrets = {"Authorization": "Bearer client-bearer-secret", "x-api-key": CLIENT_ANTHROPIC_KEY,
               "api-key": "client-azure-secret", "x-goog-api-key": "client-google-secret",
               "Cookie": "session=client-cookie", "Proxy-Authorization": "Basic Y2xpZW50OnNlY3JldA==",
               "X-Amz-Security-Token": "client-session-token", "X-Amz-Date": "20200101T000000Z",
               "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}
    body = json.dumps(CONVERSE)
    r = requests.post(f"{proxy_url}/transparent/bedrock/model/{MODEL}/converse", data=body,
                      headers={"Content-Type": "application/json", **secrets}, timeout=20)
    assert r.status_code == 200, r.text
    r = requests.post(f"{proxy_url}/transparent/anthropic/v1/messages", timeout=20, headers={
        "Content-Type": "application/json", "anthropic-version": "2023-06-01", **secrets},
        data=json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}))
    assert r.status_code == 200, r.text
    bedrock, claude = logged(mock_url)
    for entry in (bedrock, claude):
        assert not {"cookie", "proxy-authorization", "api-key", "x-goog-api-key", "x-amz-content-sha256"} & set(
            entry["headers"])
        assert not {digest(v) for v in secrets.values()} & set(entry["credentials"].values())
    assert bedrock["credentials"]["aws_access_key_id"] == ACCESS_KEY_ID and "x-api-key" not in bedrock["headers"]
    assert "x-amz-security-token" not in bedrock["headers"]
    assert claude["credentials"] == {"x-api-key": digest(PROXY_ANTHROPIC_KEY)}
    assert "authorization" not in claude["headers"]


# ------------------------------------------------------------------ bytes, headers, query


def signed_by_the_proxys_key(url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "bedrock", "us-east-1").add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("action,accept", [("converse-stream", "application/vnd.amazon.eventstream"),
                                           ("converse", "application/json")])
def test_the_reply_bytes_are_the_mocks_own(urls, action, accept):
    mock_url, proxy_url = urls
    body = json.dumps(CONVERSE).encode()
    path = f"/model/{MODEL.replace(':', '%3A')}/{action}"
    headers = {"Content-Type": "application/json", "Accept": accept}
    direct = requests.post(mock_url + path, data=body, timeout=20,
                           headers=signed_by_the_proxys_key(mock_url + path, body, headers))
    relayed = requests.post(f"{proxy_url}/transparent/bedrock{path}", data=body, headers=headers, timeout=20)
    assert (relayed.status_code, direct.status_code) == (200, 200)
    assert relayed.content == direct.content and len(relayed.content) > 100
    assert relayed.headers["Content-Type"] == direct.headers["Content-Type"]


@pytest.mark.parametrize("cut", [False, True])
def test_the_reply_is_relayed_as_it_arrives_and_a_break_is_never_a_clean_end(urls, trickle, cut):
    _, proxy_url = urls
    trickle.cut = cut
    conn = rawhttp.Connection(proxy_url)
    conn.send(rawhttp.request("POST", f"/transparent/bedrock-trickle/model/{MODEL}/converse-stream", b"{}",
                              {"Content-Type": "application/json", "Connection": "close"}))
    while b"first-piece" not in conn.buf:  # the upstream holds the rest until this arrived
        assert conn._fill(), conn.buf
    trickle.go.set()
    while conn._fill():
        pass
    conn.close()
    head, _, body = conn.buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Transfer-Encoding: chunked" in head
    names = {line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:]}
    assert b"x-amzn-bedrock-invocation-latency" in names
    assert not {b"x-amzn-requestid", b"keep-alive", b"upgrade", b"trailer", b"set-cookie",
                b"x-upstream-internal"} & names
    if cut:
        assert body == b"b\r\nfirst-piece\r\n"  # no last chunk: the client sees the reply broken off
        assert rawhttp.wait_until(lambda: "the reply broke mid-body" in PROCESSES["proxy"].output(), 5)
        assert "Traceback" not in PROCESSES["proxy"].output()
    else:
        assert body == b"b\r\nfirst-piece\r\nc\r\nsecond-piece\r\n0\r\n\r\n"


def test_hop_by_hop_and_unlisted_headers_stay_behind_both_ways(urls):
    mock_url, proxy_url = urls
    raw = rawhttp.request("POST", "/transparent/anthropic/v1/messages", json.dumps(
        {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}).encode(),
        headers={"Content-Type": "application/json", "anthropic-version": "2023-06-01",
                 "anthropic-beta": "prompt-caching-2024-07-31", "Connection": "keep-alive, anthropic-beta",
                 "Keep-Alive": "timeout=5", "TE": "trailers", "Upgrade": "h2c", "Trailer": "X-Checksum",
                 "Proxy-Connection": "keep-alive", "X-Unlisted": "stays", "User-Agent": "native-client/1.0"})
    reply, conn = rawhttp.exchange(proxy_url, raw)
    conn.close()
    assert reply.status == 200, reply.body
    (entry,) = logged(mock_url)
    sent = set(entry["headers"])
    # anthropic-beta is allowlisted, but this request's Connection made it hop-by-hop.
    assert sent == {"host", "content-type", "content-length", "anthropic-version", "x-api-key", "user-agent",
                    "accept-encoding"}
    assert entry["headers"]["user-agent"] == "interchange/0.1"
    # Back: what the mock sent that is on the allowlist (request id, content type), no cookie, no framing of its own.
    assert reply.headers["content-type"] == "application/json"
    assert "request-id" in reply.headers and "set-cookie" not in reply.headers
    assert reply.headers.get("transfer-encoding") == "chunked"  # our own framing, not the mock's Content-Length


def test_the_openai_sdks_azure_client_through_the_proxy_gets_the_proxys_key(urls):
    """Seed 004's `/transparent/azure/openai/deployments/gpt-4/chat/completions` shape, with the
    SDK's own (refused) key replaced by the instance's `api-key`."""
    mock_url, proxy_url = urls
    client = openai.AzureOpenAI(azure_endpoint=f"{proxy_url}/transparent/azure", api_key="invalid",
                                api_version="2024-10-21", max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    assert reply.choices[0].message.content
    (entry,) = logged(mock_url)
    assert (entry["status"], entry["path"], entry["query"]) == (200, "/openai/deployments/gpt-4o/chat/completions",
                                                                {"api-version": "2024-10-21"})
    assert entry["credentials"] == {"api-key": digest(os.environ.get("AZURE_OPENAI_API_KEY", "mock-azure-key"))}


@pytest.mark.parametrize("mode,status", [("error_body", 400), ("rate_limit", 429), ("content", 200),
                                         ("stream_error", 200)])
def test_an_upstream_echoing_the_instances_key_never_hands_it_to_the_client(urls, mode, status):
    _, proxy_url = urls
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}],
            "stream": mode == "stream_error"}
    r = requests.post(f"{proxy_url}/transparent/anthropic-hostile/v1/messages", json=body, timeout=20,
                      headers={"anthropic-version": "2023-06-01", "X-Hostile": mode})
    assert r.status_code == status
    assert "[REDACTED]" in r.text
    assert HOSTILE_KEY not in r.text and HOSTILE_KEY not in str(r.headers)
    assert "Retry-After" not in r.headers and "Set-Cookie" not in r.headers  # both echoed the key


def test_the_query_string_goes_on_as_sent(urls):
    mock_url, proxy_url = urls
    r = requests.post(f"{proxy_url}/transparent/anthropic/v1/messages?beta=true&x=a%20b", timeout=20,
                      headers={"Content-Type": "application/json", "anthropic-version": "2023-06-01"},
                      data=json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 10,
                                       "messages": [{"role": "user", "content": "Hi"}]}))
    assert r.status_code == 200, r.text
    (entry,) = logged(mock_url)
    assert entry["query"] == {"beta": "true", "x": "a b"}


def test_an_upstream_error_comes_back_in_its_own_shape(urls):
    mock_url, proxy_url = urls
    with pytest.raises(ClientError) as caught:
        bedrock_client(f"{proxy_url}/transparent/bedrock").converse(modelId="no.such-model-v1:0", **CONVERSE)
    assert caught.value.response["Error"] == {"Code": "ValidationException",
                                              "Message": "The provided model identifier is invalid."}
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# ------------------------------------------------------------------ attacks: each refused, nothing sent upstream

PATH_ATTACKS = [
    ("/transparent/bedrock/../../_mock/requests", "'..' segment"),
    ("/transparent/bedrock/model/%2e%2e/%2e%2e/_mock/requests", "'..' segment once percent-decoded"),
    ("/transparent/bedrock/model/..%2f..%2f_mock%2frequests", "'..' segment once percent-decoded"),
    ("/transparent/bedrock/model/..%5c..%5cconverse", "encoded backslash (%5C)"),
    ("/transparent/bedrock/model/x\\..\\converse", "backslash"),
    ("/transparent/bedrock/model/%252e%252e/%252e%252e/converse", "'..' segment once percent-decoded 2 times"),
    ("/transparent/bedrock/model/..%252f..%252fconverse", "'..' segment once percent-decoded 2 times"),
    ("/transparent/bedrock/http://evil.example/model/x/converse", "absolute URL"),
    ("/transparent/bedrock/http%3A%2F%2Fevil.example/converse", "absolute URL (a scheme and '://') once"),
    ("/transparent/bedrock//evil.example/model/x/converse", "empty segment ('//')"),
    ("/transparent/bedrock/@evil.example/model/x/converse", "'@'"),
    ("/transparent/bedrock/model/x%40evil.example/converse", "'@' once percent-decoded"),
    ("/transparent/bedrock/model/x%0d%0aX-Injected:%201/converse", "control character once percent-decoded"),
]


@pytest.mark.parametrize("path,problem", PATH_ATTACKS)
def test_a_path_escaping_its_base_is_refused_before_any_upstream_call(urls, path, problem):
    mock_url, proxy_url = urls
    reply, conn = rawhttp.exchange(proxy_url, rawhttp.request("POST", path, json.dumps(CONVERSE).encode(),
                                                              {"Content-Type": "application/json"}))
    conn.close()
    assert reply.status == 400
    # Bedrock's own error shape: botocore reads the type from the header, the message from the body.
    assert reply.headers["x-amzn-errortype"] == "ValidationException"
    assert problem in reply.json()["message"]
    assert logged(mock_url) == []


def test_an_attack_on_an_anthropic_instance_is_refused_in_anthropics_shape(urls):
    mock_url, proxy_url = urls
    reply, conn = rawhttp.exchange(proxy_url, rawhttp.request("POST", "/transparent/anthropic/v1/%2e%2e/x", b"{}"))
    conn.close()
    assert (reply.status, reply.json()["type"], reply.json()["error"]["type"]) == (400, "error",
                                                                                   "invalid_request_error")
    assert "'..' segment" in reply.json()["error"]["message"]
    assert logged(mock_url) == []


SMUGGLING = [
    (b"POST /transparent/bedrock/model/x/converse HTTP/1.1\r\nHost: x\r\nX-Note: a\rX-Injected: 1\r\n"
     b"Content-Length: 2\r\n\r\n{}", "control character in a header value"),
    (b"POST /transparent/bedrock/model/x/converse HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n Injected: 1\r\n"
     b"Content-Length: 2\r\n\r\n{}", "Obsolete line folding"),
    (b"POST /transparent/bedrock/model/x/converse HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
     b"Content-Length: 40\r\n\r\n{}", "Content-Length is given more than once with different values"),
    (b"POST /transparent/bedrock/model/x/converse HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "Content-Length and Transfer-Encoding"),
]


@pytest.mark.parametrize("raw,problem", SMUGGLING)
def test_header_smuggling_is_refused_by_the_server_before_any_upstream_call(urls, raw, problem):
    mock_url, proxy_url = urls
    reply, conn = rawhttp.exchange(proxy_url, raw)
    assert reply.status == 400 and problem.lower() in reply.json()["error"]["message"].lower()
    assert conn.closed_by_server()
    conn.close()
    assert logged(mock_url) == []


def test_an_oversized_body_is_refused_before_any_upstream_call(urls):
    mock_url, proxy_url = urls
    limit = 32 * 1024 * 1024  # config-mock.toml's server.max_body_bytes (the default)
    reply, conn = rawhttp.exchange(proxy_url, f"POST /transparent/bedrock/model/x/converse HTTP/1.1\r\nHost: x\r\n"
                                              f"Content-Length: {limit + 1}\r\n\r\n".encode())
    conn.close()
    assert reply.status == 413
    assert reply.json() == {"message": f"Request body exceeds the {limit} byte limit (server.max_body_bytes)."}
    assert logged(mock_url) == []


def test_an_oversized_chunked_body_is_refused_before_any_upstream_call(urls):
    mock_url, proxy_url = urls
    limit = 32 * 1024 * 1024
    conn = rawhttp.Connection(proxy_url)
    conn.send(b"POST /transparent/anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * (1024 * 1024)
    for _ in range(limit // len(piece) + 1):
        conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    reply = conn.response()
    conn.close()
    assert (reply.status, reply.json()["error"]["type"]) == (413, "request_too_large")
    assert logged(mock_url) == []


# ------------------------------------------------------------------ serving: paths, methods, modes, failures


def test_an_unknown_instance_is_a_404(urls):
    mock_url, proxy_url = urls
    r = requests.post(f"{proxy_url}/transparent/nowhere/v1/messages", data=b"{}", timeout=10)
    assert r.status_code == 404
    error = r.json()["error"]
    assert (error["code"], error["message"]) == ("instance_not_found", (
        "No provider instance configured for this path: /transparent/nowhere/v1/messages (served there: "
        "/transparent/anthropic, /transparent/anthropic-hostile, /transparent/azure, /transparent/bedrock, "
        "/transparent/bedrock-gone, /transparent/bedrock-nokeys, /transparent/bedrock-silent, "
        "/transparent/bedrock-trickle, /transparent/quiet)"))
    assert logged(mock_url) == []


def test_a_protocol_mode_instance_under_transparent_is_a_400(urls):
    _, proxy_url = urls
    r = requests.post(f"{proxy_url}/transparent/bedrock_us1/chat/completions", data=b"{}", timeout=10)
    assert r.status_code == 400
    assert (r.json()["error"]["code"], r.json()["error"]["message"]) == ("wrong_mode", (
        "This endpoint requires protocol mode: instance 'bedrock_us1' is served in protocol mode at "
        "/openai/bedrock_us1; /transparent/bedrock_us1 is transparent mode"))


def test_a_method_the_endpoint_does_not_allow_is_a_405(urls):
    mock_url, proxy_url = urls
    r = requests.delete(f"{proxy_url}/transparent/bedrock/model/x/converse", timeout=10)
    assert (r.status_code, r.headers["Allow"], r.headers["X-Amzn-ErrorType"]) == (405, "GET, POST",
                                                                                  "ValidationException")
    assert r.json() == {"message": "Method DELETE is not allowed on /transparent/bedrock (allowed: GET, POST)."}
    assert logged(mock_url) == []


def test_missing_credentials_are_a_503_naming_the_provider_and_no_secret(urls):
    _, proxy_url = urls
    r = requests.post(f"{proxy_url}/transparent/bedrock-nokeys/model/{MODEL}/converse", json=CONVERSE, timeout=10)
    assert (r.status_code, r.headers["X-Amzn-ErrorType"]) == (503, "ServiceUnavailableException")
    assert r.json()["message"].startswith("Provider bedrock not available: Backend 'bedrock_nokeys' needs both "
                                          "aws_access_key_id and aws_secret_access_key")
    assert ACCESS_KEY_ID not in r.text


def test_an_unreachable_upstream_is_a_502(urls):
    _, proxy_url = urls
    r = requests.post(f"{proxy_url}/transparent/bedrock-gone/model/{MODEL}/converse", json=CONVERSE, timeout=10)
    assert (r.status_code, r.headers["X-Amzn-ErrorType"]) == (502, "BadGatewayException")
    assert r.json()["message"].startswith("Could not reach backend 'bedrock_gone'")


def test_a_silent_upstream_is_a_504(urls):
    _, proxy_url = urls
    r = requests.post(f"{proxy_url}/transparent/bedrock-silent/model/{MODEL}/converse", json=CONVERSE, timeout=10)
    assert (r.status_code, r.headers["X-Amzn-ErrorType"]) == (504, "ModelTimeoutException")
    assert r.json() == {"message": "Backend 'bedrock_silent' did not answer within 0.5 s."}


# ------------------------------------------------------------------ metrics


def instance_count(proxy_url: str, instance: str, method: str, status: int) -> float:
    text = requests.get(f"{proxy_url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("http_requests_total{") and f'instance="{instance}"' in line \
                and f'method="{method}"' in line and f'status="{status}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_each_request_is_counted_for_its_instance(urls):
    _, proxy_url = urls
    before = (instance_count(proxy_url, "bedrock_transparent", "POST", 200),
              instance_count(proxy_url, "bedrock_transparent", "POST", 400),
              instance_count(proxy_url, "bedrock_transparent", "DELETE", 405))
    requests.post(f"{proxy_url}/transparent/bedrock/model/{MODEL}/converse", json=CONVERSE, timeout=20)
    requests.post(f"{proxy_url}/transparent/bedrock/model/%2e%2e/converse", json=CONVERSE, timeout=20)
    requests.delete(f"{proxy_url}/transparent/bedrock/model/x", timeout=20)
    after = (instance_count(proxy_url, "bedrock_transparent", "POST", 200),
             instance_count(proxy_url, "bedrock_transparent", "POST", 400),
             instance_count(proxy_url, "bedrock_transparent", "DELETE", 405))
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1]
    requests.request("BREW", f"{proxy_url}/transparent/bedrock/model/x", timeout=20)  # a method nobody has
    assert instance_count(proxy_url, "bedrock_transparent", "OTHER", 405) >= 1
    assert 'method="BREW"' not in requests.get(f"{proxy_url}/metrics", timeout=10).text
    text = requests.get(f"{proxy_url}/metrics", timeout=10).text
    line = next(x for x in text.splitlines() if x.startswith("http_requests_total{") and "bedrock_transparent" in x)
    assert 'provider="bedrock"' in line and 'mode="transparent"' in line and 'region="us-east-1"' in line


def test_an_instance_with_metrics_off_is_not_counted(urls):
    _, proxy_url = urls
    r = requests.post(f"{proxy_url}/transparent/quiet/v1/messages", timeout=20,
                      headers={"Content-Type": "application/json", "anthropic-version": "2023-06-01"},
                      data=json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 10,
                                       "messages": [{"role": "user", "content": "Hi"}]}))
    assert r.status_code == 200
    assert 'instance="anthropic_quiet"' not in requests.get(f"{proxy_url}/metrics", timeout=10).text


# ------------------------------------------------------------------ the proxy's service key


@pytest.fixture(scope="module")
def keyed_proxy(tstack, tmp_path_factory):
    """A proxy that asks for a SERVICE_API_KEY, with one transparent Bedrock instance."""
    mock_url, _ = tstack
    path = tmp_path_factory.mktemp("keyed") / "instances.json"
    path.write_text(json.dumps({"bedrock_transparent": {
        "type": "bedrock", "mode": "transparent", "backend": "bedrock", "region": "us-east-1",
        "endpoints": [["/transparent/bedrock", ["POST"]]]}}))
    proxy = ServerProcess(["--config", "config-mock.toml", "--instances", str(path)],
                          command=[sys.executable, "-m", "tests.instance_proxy"],
                          env={"MOCK_URL": mock_url, "SERVICE_API_KEY": SERVICE_KEY})
    yield proxy.url
    proxy.stop()


SERVICE_KEY = "interchange-service-key-for-tests"


def with_proxy_authorization(client, value: str):
    """boto3 signs its own Authorization; the proxy's key rides in Proxy-Authorization."""
    def add(request, **_):
        request.headers["Proxy-Authorization"] = value
    client.meta.events.register("before-send.bedrock-runtime.*", add)
    return client


def test_a_transparent_client_presents_the_service_key_as_proxy_authorization(urls, keyed_proxy):
    mock_url, _ = urls
    client = with_proxy_authorization(bedrock_client(f"{keyed_proxy}/transparent/bedrock"), f"Bearer {SERVICE_KEY}")
    assert client.converse(modelId=MODEL, **CONVERSE)["stopReason"] == "end_turn"
    (entry,) = logged(mock_url)
    assert "proxy-authorization" not in entry["headers"]
    assert entry["credentials"]["aws_access_key_id"] == ACCESS_KEY_ID


@pytest.mark.parametrize("value", [None, "Bearer wrong-key"])
def test_without_the_service_key_a_transparent_client_gets_a_native_401(urls, keyed_proxy, value):
    mock_url, _ = urls
    client = bedrock_client(f"{keyed_proxy}/transparent/bedrock")
    if value is not None:
        with_proxy_authorization(client, value)
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=MODEL, **CONVERSE)
    error = caught.value.response["Error"]
    assert error["Code"] == "UnrecognizedClientException"
    assert "sends it as Proxy-Authorization: Bearer <key>" in error["Message"] and SERVICE_KEY not in error["Message"]
    assert logged(mock_url) == []


# ------------------------------------------------------------------ under gunicorn's gevent worker


@pytest.fixture(scope="module")
def gunicorn_proxy(tstack, tmp_path_factory):
    """The proxy under gunicorn's own HTTP parser (`-k gevent`), which gives the raw target as RAW_URI."""
    mock_url, _ = tstack
    path = tmp_path_factory.mktemp("gunicorn") / "instances.json"
    path.write_text(json.dumps({"bedrock_transparent": {
        "type": "bedrock", "mode": "transparent", "backend": "bedrock", "region": "us-east-1",
        "endpoints": [["/transparent/bedrock", ["POST"]]]}}))
    env = {"MOCK_URL": mock_url, "INTERCHANGE_CONFIG": "config-mock.toml", "INTERCHANGE_TEST_INSTANCES": str(path)}
    with running_gunicorn(["-k", "gevent", "-w", "1", "tests.instance_wsgi:application"], env) as (url, _):
        yield url


def test_under_gunicorn_boto3_is_served_and_the_raw_target_is_checked(urls, gunicorn_proxy):
    mock_url, _ = urls
    reply = bedrock_client(f"{gunicorn_proxy}/transparent/bedrock").converse(modelId=MODEL, **CONVERSE)
    assert reply["stopReason"] == "end_turn"
    (entry,) = logged(mock_url)
    assert entry["credentials"]["aws_access_key_id"] == ACCESS_KEY_ID
    # Encoded slashes are seen as the client sent them (RAW_URI), not as gunicorn's decoded PATH_INFO.
    reply, conn = rawhttp.exchange(gunicorn_proxy, rawhttp.request(
        "POST", "/transparent/bedrock/model/a%2F%2Fb/converse", b"{}", {"Content-Type": "application/json"}))
    conn.close()
    assert (reply.status, reply.json()) == (400, {"message": "The path has an empty segment ('//') once "
                                                             "percent-decoded."})
    assert len(logged(mock_url)) == 1
