"""RunPod through the proxy, end to end against the mock: a streamed job reaches the client
while it is still running, a client that leaves has the job cancelled, a job that fails
under HTTP 200 is the client's error in its own protocol, a job /runsync leaves running is
polled to its end, and each upstream fault ends as the matrix of faults says."""
from __future__ import annotations

import json
import textwrap
import time

import pytest
import requests

from mocks.runpod import ENDPOINT_ID
from tests.conftest import ServerProcess
from tests.integration.rawhttp import wait_until

MODEL = "runpod-mistral-7b"
HI = [{"role": "user", "content": "Hi"}]
MOCK_KEY = {"Authorization": "Bearer mock-runpod-key"}


def mock_log(stack) -> list[dict]:
    return requests.get(stack.mock_url + "/_mock/requests", params={"provider": "runpod"}, timeout=5).json()


def job_status(stack, job_id: str) -> str:
    r = requests.get(f"{stack.mock_url}/v2/{ENDPOINT_ID}/status/{job_id}", headers=MOCK_KEY, timeout=5)
    return r.json()["status"]


def chat(stack, stream: bool, headers: dict | None = None, **kw) -> requests.Response:
    return requests.post(stack.proxy_url + "/v1/chat/completions", json={"model": MODEL, "messages": HI,
                                                                          "stream": stream},
                         headers=headers or {}, stream=stream, timeout=30, **kw)


@pytest.fixture
def clean(stack):
    requests.delete(stack.mock_url + "/_mock/requests", timeout=5)
    return stack


def test_a_stream_reaches_the_client_while_the_job_runs_and_leaving_cancels_it(clean):
    # 17 pieces, 150 ms apart: the job runs ~2.5 s.
    r = chat(clean, True, {"X-Mock-Job-Timing": "queue_ms=0, piece_ms=150"})
    assert r.status_code == 200
    lines = r.iter_lines()
    first = next(line for line in lines if line.startswith(b"data: ") and b'"content":"Hello"' in line)
    assert first
    (job_id,) = {e["path"].rpartition("/")[2] for e in mock_log(clean) if "/stream/" in e["path"]}
    assert job_status(clean, job_id) == "IN_PROGRESS"  # the client has text; the job has not ended
    r.close()  # the client leaves mid-stream
    assert wait_until(lambda: any(e["path"] == f"/v2/{ENDPOINT_ID}/cancel/{job_id}" for e in mock_log(clean)), 5)
    assert job_status(clean, job_id) == "CANCELLED"
    generation = [e for e in mock_log(clean) if e["method"] == "POST" and e["path"].endswith(("/run", "/runsync"))]
    assert [e["path"] for e in generation] == [f"/v2/{ENDPOINT_ID}/run"]


def test_a_whole_stream_is_the_scenario_and_one_job(clean):
    r = chat(clean, True)
    events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith(b"data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"]) \
        == "Hello! I'm a mock assistant. How can I help you today?"
    log = mock_log(clean)
    assert [e["path"].split("/")[3] for e in log] == ["run"] + ["stream"] * (len(log) - 1)  # polled, not cancelled
    assert len(log) >= 3


@pytest.mark.parametrize("scenario,status,kind", [("job_failed", 500, "api_error"),
                                                  ("job_timed_out", 504, "timeout")])
@pytest.mark.parametrize("stream", [False, True])
def test_a_job_ending_badly_under_http_200_is_the_clients_error(clean, scenario, status, kind, stream):
    r = requests.post(clean.proxy_url + "/v1/messages", json={"model": MODEL, "max_tokens": 50, "messages": HI,
                                                              "stream": stream},
                      headers={"anthropic-version": "2023-06-01", "X-Mock-Scenario": scenario}, timeout=30)
    if not stream:
        assert r.status_code == status
        error = r.json()["error"]
    else:  # the job's first pieces went out: the error ends the stream, in Anthropic's form
        assert r.status_code == 200 and "Hello" in r.text
        error = json.loads(r.text.rpartition("event: error\ndata: ")[2])["error"]
    assert error["type"] == {"api_error": "api_error", "timeout": "timeout_error"}[kind]
    assert "RunPod job" in error["message"] and "Traceback" not in r.text


def test_a_job_runsync_leaves_running_is_polled(tmp_path, stack):
    """A backend timeout of 2 s holds /runsync 1 s; the job queues 1.5 s (a cold start)."""
    config = tmp_path / "c.toml"
    config.write_text(textwrap.dedent(f"""\
        [backends.runpod]
        kind = "runpod"
        url = "{stack.mock_url}"
        api_key = "mock-runpod-key"
        endpoint_id = "{ENDPOINT_ID}"
        poll_interval_ms = 100
        timeout = 2
        forward_headers = ["X-Mock-Scenario"]
        [backends.runpod.model_mapping]
        "{MODEL}" = "mistralai/Mistral-7B-Instruct-v0.3"
        """))
    proxy = ServerProcess(["serve", "--config", str(config)])
    try:
        requests.delete(stack.mock_url + "/_mock/requests", timeout=5)
        started = time.monotonic()
        r = requests.post(proxy.url + "/v1/chat/completions", json={"model": MODEL, "messages": HI},
                          headers={"X-Mock-Scenario": "slow_first_byte"}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].startswith("Hello!")
        assert time.monotonic() - started >= 1.5
    finally:
        proxy.stop()
    log = mock_log(stack)
    submit, *polls = [(e["method"], e["path"], e["query"]) for e in log]
    assert submit == ("POST", f"/v2/{ENDPOINT_ID}/runsync", {"wait": "1000"})
    job_ids = {path.rpartition("/")[2] for _, path, _ in polls}
    assert len(job_ids) == 1 and job_ids.pop().startswith("sync-")
    assert 2 <= len(polls) <= 8 and {(m, p.rpartition("/")[0]) for m, p, _ in polls} == {
        ("GET", f"/v2/{ENDPOINT_ID}/status")}


@pytest.mark.parametrize("scenario,stream,status,text", [
    ("error_429", False, 429, None), ("error_429", True, 429, None),
    ("error_mid_stream", True, 200, "Hello! I'm a mock"), ("drop_mid_stream", True, 200, "Hello! I'm a mock"),
    ("malformed_body", False, 502, None), ("malformed_body", True, 200, "Hello"),
    ("error_mid_stream", False, 503, None), ("drop_mid_stream", False, 502, None), ("error_500", False, 500, None),
    ("error_401", False, 502, None), ("error_400", True, 400, None), ("overloaded", False, 503, None),
])
def test_faults(clean, scenario, stream, status, text):
    r = chat(clean, stream, {"X-Mock-Scenario": scenario})
    assert r.status_code == status
    if status == 429:
        assert r.headers["Retry-After"] == "7"
    if text is not None:
        body = r.text
        assert "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in body.splitlines() if line.startswith('data: {"id"')).startswith(text)
        assert '"error"' in body.splitlines()[-2] or '"error"' in body.splitlines()[-1]
        assert "[DONE]" not in body
