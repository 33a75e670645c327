"""The official `openai` SDK's `AzureOpenAI` client (deployments URL form,
api-version query, `api-key` header) and a plain `OpenAI` client on Azure's
v1 form, pointed at the mock, for Chat Completions and for Responses (classic
`/openai/responses` with a preview api-version, and v1): every good scenario parses with the fixture's
expected content, faults raise the SDK's own errors, and Azure's own rules
(api-version, deployments, auth) are enforced."""
from __future__ import annotations

import openai
import pytest
import requests

from tests.mocks.helpers import GOOD_SCENARIOS
from tests.mocks import test_responses_sdk as rs
from tests.mocks.test_openai_sdk import REQUESTS, expected, scenario_header, summary

API_VERSION = "2024-10-21"


@pytest.fixture(scope="module")
def azure(mock_url: str) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=mock_url, api_key="azure-test-key", api_version=API_VERSION,
                              max_retries=0, timeout=10)


@pytest.fixture(scope="module")
def azure_v1(mock_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=mock_url + "/openai/v1", api_key="azure-test-key", max_retries=0, timeout=10)


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_deployments_form(azure, library, name, mock_url):
    requests.delete(mock_url + "/_mock/requests", timeout=5)
    completion = azure.chat.completions.create(**REQUESTS[name])
    assert summary(completion) == expected(library, name)
    assert completion.prompt_filter_results[0]["prompt_index"] == 0
    (entry,) = requests.get(mock_url + "/_mock/requests", timeout=5).json()
    assert entry["provider"] == "azure_openai"
    assert entry["path"] == f"/openai/deployments/{REQUESTS[name]['model']}/chat/completions"
    assert entry["query"] == {"api-version": API_VERSION}
    assert entry["headers"]["api-key"] == "[REDACTED]"


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_v1_form(azure_v1, library, name):
    assert summary(azure_v1.chat.completions.create(**REQUESTS[name])) == expected(library, name)


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_stream_with_the_prompt_filter_chunk_first(azure, library, name):
    chunks = list(azure.chat.completions.create(**REQUESTS[name], stream=True))
    assert chunks[0].choices == [] and chunks[0].prompt_filter_results
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected(library, name)["text"]
    with azure.chat.completions.stream(**REQUESTS[name], stream_options={"include_usage": True}) as stream:
        if name == "max_tokens":
            with pytest.raises(openai.LengthFinishReasonError) as caught:
                stream.get_final_completion()
            final = caught.value.completion
        else:
            final = stream.get_final_completion()
    assert summary(final) == expected(library, name)


@pytest.mark.parametrize("name, error, status", [
    ("error_400", openai.BadRequestError, 400),
    ("error_401", openai.AuthenticationError, 401),
    ("error_429", openai.RateLimitError, 429),
    ("error_500", openai.InternalServerError, 500),
    ("overloaded", openai.InternalServerError, 503),
])
def test_faults_raise_typed_errors(azure, name, error, status):
    with pytest.raises(error) as caught:
        azure.chat.completions.create(**REQUESTS["text"], **scenario_header(name))
    assert caught.value.status_code == status


def test_azure_rules(mock_url):
    body = {"messages": [{"role": "user", "content": "Hi"}]}
    url = mock_url + "/openai/deployments/gpt-4o/chat/completions"
    key = {"api-key": "azure-test-key"}
    r = requests.post(url, json=body, headers=key, timeout=5)  # no api-version
    assert (r.status_code, r.json()) == (404, {"error": {"code": "404", "message": "Resource not found"}})
    r = requests.post(url, params={"api-version": "2019-01-01"}, json=body, headers=key, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["message"] == "API version not supported"
    r = requests.post(url, params={"api-version": API_VERSION}, json=body, timeout=5)  # no key
    assert r.status_code == 401 and r.json()["error"]["code"] == "401"
    r = requests.post(url, params={"api-version": API_VERSION}, json=body, headers={"api-key": "invalid"}, timeout=5)
    assert r.status_code == 401
    r = requests.post(mock_url + "/openai/deployments/nope/chat/completions", params={"api-version": API_VERSION},
                      json=body, headers=key, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "DeploymentNotFound"
    r = requests.post(url, params={"api-version": API_VERSION}, headers={"Authorization": "Bearer entra-token"},
                      json=body, timeout=5)  # an Entra ID token instead of a key
    assert r.status_code == 200 and r.json()["model"] == "gpt-4o"
    r = requests.post(mock_url + "/openai/v1/chat/completions", json=body, headers=key, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["message"] == "you must provide a model parameter"
    r = requests.post(mock_url + "/openai/v1/chat/completions", params={"api-version": API_VERSION},
                      json={**body, "model": "gpt-4o"}, headers=key, timeout=5)
    assert r.status_code == 400  # the v1 API takes no dated version


# ---------------------------------------------------------------- Azure Responses

RESPONSES_API_VERSION = "2025-04-01-preview"  # Responses needs a preview version on the classic form


@pytest.fixture(scope="module")
def azure_responses(mock_url: str) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=mock_url, api_key="azure-test-key", api_version=RESPONSES_API_VERSION,
                              max_retries=0, timeout=10)


@pytest.fixture(params=["classic", "v1"])
def responses_client(request, azure_responses, azure_v1):
    """Responses on both of Azure's URL forms: `/openai/responses?api-version=` and `/openai/v1/responses`."""
    return azure_responses if request.param == "classic" else azure_v1


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_responses_create(responses_client, library, name):
    response = responses_client.responses.create(**rs.REQUESTS[name])
    assert rs.summary(response) == rs.expected(library, name)
    assert response.model == rs.REQUESTS[name]["model"]  # each of the mock's models is also a deployment


@pytest.mark.parametrize("name", GOOD_SCENARIOS)
def test_responses_stream(responses_client, library, name):
    events, final = rs.streamed(responses_client.responses.stream(**rs.REQUESTS[name]))
    assert rs.summary(final) == rs.expected(library, name)
    assert [e.sequence_number for e in events] == list(range(len(events)))


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name, error, status", [
    ("error_400", openai.BadRequestError, 400),
    ("error_401", openai.AuthenticationError, 401),
    ("error_429", openai.RateLimitError, 429),
    ("error_500", openai.InternalServerError, 500),
    ("overloaded", openai.InternalServerError, 503),
])
def test_responses_faults_raise_typed_errors(responses_client, name, error, status, stream):
    with pytest.raises(error) as caught:
        result = responses_client.responses.create(model="gpt-4o", input="Hi", stream=stream,
                                                   **scenario_header(name))
        list(result) if stream else None
    assert caught.value.status_code == status


def test_responses_failed_mid_stream(responses_client):
    events = list(responses_client.responses.create(model="gpt-4o", input="Hi", stream=True,
                                                    **scenario_header("error_mid_stream")))
    assert events[-1].type == "response.failed" and events[-1].response.error.code == "server_is_overloaded"


def test_responses_azure_rules(mock_url, azure_responses):
    dated = openai.AzureOpenAI(azure_endpoint=mock_url, api_key="azure-test-key", api_version=API_VERSION,
                               max_retries=0)
    with pytest.raises(openai.BadRequestError):  # a GA Chat version has no Responses
        dated.responses.create(model="gpt-4o", input="Hi")
    with pytest.raises(openai.NotFoundError):
        azure_responses.responses.create(model="no-such-deployment", input="Hi")
    bad = openai.AzureOpenAI(azure_endpoint=mock_url, api_key="invalid", api_version=RESPONSES_API_VERSION,
                             max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.responses.create(model="gpt-4o", input="Hi")
    r = requests.post(mock_url + "/openai/responses", json={"model": "gpt-4o", "input": "Hi"},
                      headers={"api-key": "azure-test-key"}, timeout=5)  # no api-version
    assert r.status_code == 404
