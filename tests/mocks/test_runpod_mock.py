"""The RunPod mock (mocks/runpod.py) as a client of the real API would meet it: the queue's
jobs keep time (IN_QUEUE -> IN_PROGRESS -> COMPLETED), /runsync holds until the job ends
or its wait runs out, /stream hands out each piece once, /cancel stops a job, the faults
end jobs as RunPod does (FAILED / TIMED_OUT under HTTP 200); auth, the endpoint id and the
input are checked; and the worker's OpenAI route replays every scenario for the official
`openai` SDK."""
from __future__ import annotations

import json
import time

import openai
import pytest
import requests

from mocks.runpod import ENDPOINT_ID, SERVED_MODEL
from tests.mocks.helpers import GOOD_SCENARIOS, parse_sse, summarize_openai_body, summarize_openai_stream
from tests.mocks.test_openai_sdk import REQUESTS, expected, summary

KEY = {"Authorization": "Bearer rp-test-key"}
USER = [{"role": "user", "content": "Hi"}]
# vLLM serves one text-only model: every scenario but vision, for that model.
SCENARIOS = [name for name in GOOD_SCENARIOS if name not in ("vision", "thinking")]


def chat(**extra) -> dict:
    return {"model": SERVED_MODEL, "messages": USER, **extra}


def job_body(openai_input: dict) -> dict:
    return {"input": {"openai_route": "/v1/chat/completions", "openai_input": openai_input}}


def scenario_request(name: str) -> tuple[dict, dict]:
    """The chat body and headers selecting scenario `name` (as for the OpenAI mock)."""
    request = dict(REQUESTS[name])
    headers = request.pop("extra_headers", {})
    return {**request, "model": SERVED_MODEL}, headers


class Queue:
    def __init__(self, url: str, endpoint: str = ENDPOINT_ID):
        self.base = f"{url}/v2/{endpoint}"

    def submit(self, op: str, body, headers=None, **params) -> requests.Response:
        return requests.post(f"{self.base}/{op}", json=body, headers={**KEY, **(headers or {})}, params=params,
                             timeout=30)

    def job(self, op: str, job_id: str, headers=None) -> dict:
        method = requests.post if op == "cancel" else requests.get
        r = method(f"{self.base}/{op}/{job_id}", headers=headers or KEY, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def streamed(self, job_id: str, limit: float = 20) -> tuple[list, list[str]]:
        """Every /stream poll until the job ends: (statuses seen, outputs in order)."""
        statuses, outputs, deadline = [], [], time.monotonic() + limit
        while time.monotonic() < deadline:
            doc = self.job("stream", job_id)
            statuses.append(doc["status"])
            outputs += [item["output"] for item in doc["stream"]]
            if doc["status"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT") and not doc["stream"]:
                break
            time.sleep(0.02)
        return statuses, outputs


@pytest.fixture(scope="module")
def queue(mock_url) -> Queue:
    return Queue(mock_url)


# ------------------------------------------------------------------ every scenario, both forms

@pytest.mark.parametrize("name", SCENARIOS)
def test_runsync_answers_the_completed_job(queue, library, name):
    body, headers = scenario_request(name)
    r = queue.submit("runsync", job_body(body), headers)
    doc = r.json()
    assert r.status_code == 200 and doc["status"] == "COMPLETED" and doc["id"].startswith("sync-")
    assert set(doc) == {"id", "status", "output", "delayTime", "executionTime"}
    (completion,) = doc["output"]
    assert summarize_openai_body(completion) == expected(library, name)


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_streamed_job_gives_vllm_sse_text_piece_by_piece(queue, library, name):
    body, headers = scenario_request(name)
    r = queue.submit("run", job_body({**body, "stream": True, "stream_options": {"include_usage": True}}), headers)
    assert r.status_code == 200 and r.json()["status"] == "IN_QUEUE"
    statuses, outputs = queue.streamed(r.json()["id"])
    assert "IN_PROGRESS" in statuses and statuses[-1] == "COMPLETED"
    assert all(isinstance(o, str) and o.startswith("data: ") for o in outputs)
    chunks = [data if data == "[DONE]" else json.loads(data) for _, data in parse_sse("".join(outputs))]
    assert summarize_openai_stream(chunks) == expected(library, name)
    assert queue.job("status", r.json()["id"])["output"] == outputs  # the aggregate stream


def test_jobs_keep_time_and_runsync_returns_a_job_still_running(queue):
    # Margins for a loaded machine: 2 s of queue left after /runsync gives up, pieces slow
    # enough that a 20 ms poll sees the job in progress.
    timing = {"X-Mock-Job-Timing": "queue_ms=3000, piece_ms=150"}
    doc = queue.submit("runsync", job_body(chat()), timing, wait=1000).json()
    assert doc["status"] == "IN_QUEUE" and "output" not in doc
    seen = [queue.job("status", doc["id"])["status"]]
    while seen[-1] != "COMPLETED":
        time.sleep(0.02)
        seen.append(queue.job("status", doc["id"])["status"])
    assert seen[0] == "IN_QUEUE" and "IN_PROGRESS" in seen
    final = queue.job("status", doc["id"])
    assert final["delayTime"] >= 3000 and final["output"][0]["object"] == "chat.completion"


def test_stream_pieces_arrive_over_time_and_each_once(queue):
    job = queue.submit("run", job_body(chat(stream=True)), {"X-Mock-Job-Timing": "queue_ms=0, piece_ms=100"}).json()
    time.sleep(0.35)
    first = queue.job("stream", job["id"])
    assert first["status"] == "IN_PROGRESS" and 2 <= len(first["stream"]) <= 4
    again = queue.job("stream", job["id"])
    assert len(again["stream"]) <= 1  # what the last poll took is not given again


def test_cancel_stops_a_job(queue):
    job = queue.submit("run", job_body(chat(stream=True)), {"X-Mock-Job-Timing": "queue_ms=5000"}).json()
    assert queue.job("cancel", job["id"]) == {"id": job["id"], "status": "CANCELLED"}
    assert queue.job("status", job["id"])["status"] == "CANCELLED"
    assert queue.job("stream", job["id"]) == {"status": "CANCELLED", "stream": []}


# ------------------------------------------------------------------ how jobs fail

def test_job_failed_is_http_200_with_the_handlers_error(queue):
    doc = queue.submit("runsync", job_body(chat()), {"X-Mock-Scenario": "job_failed"}).json()
    assert doc["status"] == "FAILED" and "output" not in doc
    error = json.loads(doc["error"])  # a JSON string, as the handler's exception is reported
    assert set(error) == {"error_type", "error_message", "error_traceback", "hostname", "worker_id", "runpod_version"}


def test_a_streamed_job_fails_after_its_first_pieces(queue):
    job = queue.submit("run", job_body(chat(stream=True)), {"X-Mock-Scenario": "job_failed"}).json()
    statuses, outputs = queue.streamed(job["id"])
    assert len(outputs) == 3 and statuses[-1] == "FAILED"


def test_job_timed_out(queue):
    doc = queue.submit("runsync", job_body(chat()), {"X-Mock-Scenario": "job_timed_out"}).json()
    assert doc["status"] == "TIMED_OUT"


def test_an_in_stream_error_fails_the_job_with_it(queue):
    job = queue.submit("run", job_body(chat(stream=True)), {"X-Mock-Scenario": "error_mid_stream"}).json()
    statuses, outputs = queue.streamed(job["id"])
    assert statuses[-1] == "FAILED" and len(outputs) == 7
    assert queue.job("status", job["id"])["error"]["code"] == "server_is_overloaded"


def test_an_http_error_scenario_is_the_platform_refusing_the_submission(queue):
    r = queue.submit("run", job_body(chat(stream=True)), {"X-Mock-Scenario": "error_429"})
    assert r.status_code == 429 and r.headers["retry-after"] == "7"


def test_stall_mid_stream_stops_the_output(queue):
    job = queue.submit("run", job_body(chat(stream=True)), {"X-Mock-Scenario": "stall_mid_stream"}).json()
    time.sleep(0.5)
    doc = queue.job("stream", job["id"])
    assert doc["status"] == "IN_PROGRESS" and len(doc["stream"]) == 7
    time.sleep(0.2)
    assert queue.job("stream", job["id"]) == {"status": "IN_PROGRESS", "stream": []}


def test_drop_mid_stream_cuts_the_poll_after_the_first_pieces(queue):
    job = queue.submit("run", job_body(chat(stream=True)), {"X-Mock-Scenario": "drop_mid_stream"}).json()
    time.sleep(0.5)
    assert len(queue.job("stream", job["id"])["stream"]) == 7
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{queue.base}/stream/{job['id']}", headers=KEY, timeout=10).json()


# ------------------------------------------------------------------ strict as the platform and vLLM

@pytest.mark.parametrize("headers,status", [({}, 401), ({"Authorization": "Bearer invalid"}, 401),
                                            ({"Authorization": "rp-test-key"}, 200)])
def test_auth(mock_url, headers, status):
    r = requests.post(f"{mock_url}/v2/{ENDPOINT_ID}/runsync", json=job_body(chat()), headers=headers, timeout=10)
    assert r.status_code == status


def test_an_unknown_endpoint_or_job_is_404(mock_url, queue):
    assert Queue(mock_url, "no-such-endpoint").submit("run", job_body(chat())).status_code == 404
    assert requests.get(f"{queue.base}/status/no-such-job", headers=KEY, timeout=10).status_code == 404


@pytest.mark.parametrize("body,query,message", [
    ({"input": {}}, {}, "input: required, a non-empty object"),
    ({"prompt": "x"}, {}, "unknown field 'prompt'"),
    ({"input": {"prompt": "Hi"}}, {}, "the mock's vLLM worker takes the OpenAI route only"),
    ({"input": {"openai_route": "/v1/embeddings", "openai_input": {}}}, {}, "is not one of /v1/chat/completions"),
    (job_body(chat()), {"wait": "10"}, "wait: an integer number of milliseconds, 1000-300000"),
])
def test_the_platform_refuses_a_malformed_submission(queue, body, query, message):
    r = queue.submit("runsync", body, **query)
    assert r.status_code == 400 and message in r.json()["error"]


@pytest.mark.parametrize("openai_input,status,message", [
    (chat(model="gpt-4o"), 404, "The model `gpt-4o` does not exist."),
    (chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/i.png"}}]}]),
     400, f"{SERVED_MODEL} is not a multimodal model"),
    (chat(temperature=7), 400, "temperature"),
    (chat(frobnicate=True), 400, "frobnicate"),
])
def test_an_input_vllm_refuses_fails_the_job_under_http_200(queue, openai_input, status, message):
    doc = queue.submit("runsync", job_body(openai_input)).json()
    assert doc["status"] == "FAILED"
    assert doc["error"]["code"] == status and message in doc["error"]["message"]


# ------------------------------------------------------------------ the OpenAI-compatible route

@pytest.fixture(scope="module")
def route(mock_url) -> openai.OpenAI:
    return openai.OpenAI(api_key="rp-test-key", base_url=f"{mock_url}/v2/{ENDPOINT_ID}/openai/v1", max_retries=0,
                         timeout=10)


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_openai_route_with_the_sdk(route, library, name):
    request = dict(REQUESTS[name])
    completion = route.chat.completions.create(**{**request, "model": SERVED_MODEL})
    assert summary(completion) == expected(library, name)


def test_the_openai_route_checks_the_model_and_the_key(route, mock_url):
    with pytest.raises(openai.NotFoundError):
        route.chat.completions.create(model="gpt-4o", messages=USER)
    bad = openai.OpenAI(api_key="invalid", base_url=f"{mock_url}/v2/{ENDPOINT_ID}/openai/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=SERVED_MODEL, messages=USER)
