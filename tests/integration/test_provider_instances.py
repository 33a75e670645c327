"""Provider instances in protocol mode (the dual-mode gateway seed, ../shared/seeds/004_*): the
openai SDK with base_url at /openai/<instance> reaching Bedrock in two regions, Anthropic and
Vertex in two locations through config-mock.toml's instances; the seed's own YAML and curl as
written (only the hosts pointed at the mock); the troubleshooting errors; per-instance metrics.
What each instance sent upstream is read back from the mock's request log."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import openai
import pytest
import requests
import yaml

from app.config import load_config
from app.server import create_app
from tests.conftest import REPO, ServerProcess

SEEDS = REPO.parent / "shared" / "seeds"
SEED_004 = "004_ae573acd9ab41b36.txt"
MOCK_AWS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
GREETING = "Hello! I'm a mock assistant. How can I help you today?"
CLAUDE_3_SONNET = "anthropic.claude-3-sonnet-20240229-v1:0"

# The seed's "Test Protocol Mode" curl: its URL path and its body, byte for byte.
SEED_CURL_PATH = "/openai/bedrock_us1/chat/completions"
SEED_CURL_BODY = '''{
    "model": "claude-3-sonnet",
    "messages": [{"role": "user", "content": "Hello"}],
    "max_tokens": 100
  }'''

# The seed's "Configuration Examples" (verbatim: checked against the seed file when present).
SEED_MULTI_REGION = '''\
instances:
  bedrock_us1_openai:
    type: bedrock
    mode: protocol
    protocol: openai
    region: us-east-1
    endpoints: [/openai/bedrock_us1]

  bedrock_eu1_openai:
    type: bedrock
    mode: protocol
    protocol: openai
    region: eu-west-1
    endpoints: [/openai/bedrock_eu1]

  bedrock_ap1_openai:
    type: bedrock
    mode: protocol
    protocol: openai
    region: ap-northeast-1
    endpoints: [/openai/bedrock_ap1]
'''
SEED_COMPARISON = '''\
instances:
  # Compare Bedrock vs Anthropic Direct
  bedrock_openai:
    type: bedrock
    mode: protocol
    protocol: openai
    endpoints: [/openai/bedrock]

  anthropic_openai:
    type: anthropic
    mode: protocol
    protocol: openai
    endpoints: [/openai/anthropic]
'''


def mock_log(stack) -> list[dict]:
    return requests.get(stack.mock_url + "/_mock/requests", timeout=5).json()


def clear_log(stack) -> None:
    requests.delete(stack.mock_url + "/_mock/requests", timeout=5).raise_for_status()


def sdk(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=20)


def instance_counts(proxy_url: str) -> dict[tuple, float]:
    """http_requests_total by its label set (sorted (name, value) pairs)."""
    text = requests.get(proxy_url + "/metrics", timeout=5).text
    out = {}
    for labels, value in re.findall(r"^http_requests_total\{(.*)\} (\S+)$", text, re.M):
        out[tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels)))] = float(value)
    return out


def labels(**values: str) -> tuple:
    return tuple(sorted(values.items()))


# ------------------------------------------------------------------ the openai SDK at /openai/<instance>

@pytest.mark.parametrize("path,region", [("bedrock_us1", "us-east-1"), ("bedrock_eu1", "eu-west-1")])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_openai_sdk_reaches_bedrock_signed_for_the_instances_region(stack, path, region, stream):
    client = sdk(f"{stack.proxy_url}/openai/{path}")
    clear_log(stack)
    if stream:
        chunks = list(client.chat.completions.create(model="claude-3-sonnet", stream=True,
                                                     messages=[{"role": "user", "content": "Bonjour"}]))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert {c.model for c in chunks} == {"claude-3-sonnet"}
    else:
        reply = client.chat.completions.create(model="claude-3-sonnet", messages=[{"role": "user", "content": "Hello"}])
        text = reply.choices[0].message.content
        assert reply.model == "claude-3-sonnet"
    assert text == GREETING
    (entry,) = mock_log(stack)
    suffix = "converse-stream" if stream else "converse"
    assert (entry["provider"], entry["path"], entry["signed_region"], entry["status"]) == (
        "bedrock", f"/model/{CLAUDE_3_SONNET}/{suffix}", region, 200)
    # No max tokens from the client: the instance's transformation.options.default_max_tokens.
    assert entry["body"]["inferenceConfig"] == {"maxTokens": 4096}


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_openai_sdk_reaches_anthropic_direct_at_openai_anthropic(stack, stream):
    """/openai/anthropic is the anthropic_openai instance (its endpoint wins over the backend's name)."""
    client = sdk(f"{stack.proxy_url}/openai/anthropic")
    clear_log(stack)
    if stream:
        chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", stream=True,
                                                     messages=[{"role": "user", "content": "Hello"}]))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model="claude-sonnet-4-5", max_tokens=50,
                                              messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content
    assert text == GREETING
    (entry,) = mock_log(stack)
    assert (entry["provider"], entry["path"], entry["body"]["model"], entry["stream"]) == (
        "anthropic", "/v1/messages", "claude-sonnet-4-5", stream)
    assert entry["body"]["max_tokens"] == (4096 if stream else 50)  # the client's when it sends one


@pytest.mark.parametrize("path,location", [("vertex_us", "us-central1"), ("vertex_eu", "europe-west4")])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_openai_sdk_reaches_vertex_in_the_instances_location(stack, path, location, stream):
    client = sdk(f"{stack.proxy_url}/openai/{path}")
    clear_log(stack)
    if stream:
        chunks = list(client.chat.completions.create(model="gemini-2.5-flash", stream=True,
                                                     messages=[{"role": "user", "content": "Hello"}]))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model="gemini-2.5-flash",
                                              messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content
    assert text == GREETING
    (entry,) = mock_log(stack)
    method = "streamGenerateContent" if stream else "generateContent"
    assert (entry["provider"], entry["path"]) == (
        "vertex_gemini",
        f"/v1/projects/interchange-test/locations/{location}/publishers/google/models/gemini-2.5-flash:{method}")


def test_metrics_tell_the_instances_apart(stack):
    before = instance_counts(stack.proxy_url)
    for path in ("bedrock_us1", "bedrock_eu1", "anthropic", "vertex_us", "vertex_eu"):
        model = {"bedrock_us1": "claude-3-sonnet", "bedrock_eu1": "claude-3-sonnet", "anthropic": "claude-sonnet-4-5"}
        sdk(f"{stack.proxy_url}/openai/{path}").chat.completions.create(
            model=model.get(path, "gemini-2.5-flash"), messages=[{"role": "user", "content": "Hello"}])
    after = instance_counts(stack.proxy_url)
    common = {"method": "POST", "status": "200", "mode": "protocol", "protocol": "openai", "environment": "demo"}
    for provider, region, instance in (("bedrock", "us-east-1", "bedrock_us1_openai"),
                                       ("bedrock", "eu-west-1", "bedrock_eu1_openai"),
                                       ("anthropic", "", "anthropic_openai"),
                                       ("vertex", "us-central1", "vertex_us_openai"),
                                       ("vertex", "europe-west4", "vertex_eu_openai")):
        key = labels(provider=provider, region=region, instance=instance, **common)
        assert after[key] - before.get(key, 0) == 1, instance


def test_models_list_under_an_instance(stack):
    ids = [m.id for m in sdk(f"{stack.proxy_url}/openai/bedrock_us1").models.list()]
    assert ids[:2] == ["claude-3-sonnet", "claude-3-7-sonnet"]  # the well-known short names it maps


# ------------------------------------------------------------------ the seed as written

def test_the_yaml_here_is_the_seeds_own():
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds is not present")
    blocks = re.findall(r"```yaml\n(.*?)```", (SEEDS / SEED_004).read_text(encoding="utf-8"), re.S)
    assert SEED_MULTI_REGION in blocks and SEED_COMPARISON in blocks
    text = (SEEDS / SEED_004).read_text(encoding="utf-8")
    assert f"curl -X POST http://localhost:8090{SEED_CURL_PATH} \\\n  -H 'Content-Type: application/json' \\\n" \
           f"  -d '{SEED_CURL_BODY}'" in text


def seed_curl(base: str, post=requests.post):
    return post(base + SEED_CURL_PATH, headers={"Content-Type": "application/json"}, data=SEED_CURL_BODY, timeout=20)


def test_the_seeds_protocol_mode_curl_against_the_demo_config(stack):
    clear_log(stack)
    r = seed_curl(stack.proxy_url)
    assert r.status_code == 200, r.text
    assert (r.json()["model"], r.json()["choices"][0]["message"]["content"]) == ("claude-3-sonnet", GREETING)
    (entry,) = mock_log(stack)
    assert (entry["path"], entry["signed_region"], entry["body"]["inferenceConfig"]) == (
        f"/model/{CLAUDE_3_SONNET}/converse", "us-east-1", {"maxTokens": 100})


# The seed's "Test Transparent Mode" curl: its URL path and its body, byte for byte.
SEED_TRANSPARENT_PATH = "/transparent/bedrock/model/anthropic.claude-3-sonnet/converse"
SEED_TRANSPARENT_BODY = '''{
    "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
    "inferenceConfig": {"maxTokens": 100}
  }'''


def test_the_seeds_transparent_curl_is_the_seed_file_s(stack):
    if not (SEEDS / SEED_004).exists():
        pytest.skip("../shared/seeds is not present")
    text = (SEEDS / SEED_004).read_text(encoding="utf-8")
    assert f"curl -X POST http://localhost:8090{SEED_TRANSPARENT_PATH} \\\n  -H 'Content-Type: application/json' " \
           f"\\\n  -d '{SEED_TRANSPARENT_BODY}'" in text


def test_the_seeds_transparent_mode_curl_against_the_demo_config(stack):
    """config-mock.toml's bedrock_transparent, parsed from its [instances] table: the native
    Converse body goes on untouched, signed with the instance's own credentials."""
    clear_log(stack)
    r = requests.post(stack.proxy_url + SEED_TRANSPARENT_PATH, headers={"Content-Type": "application/json"},
                      data=SEED_TRANSPARENT_BODY, timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()["output"]["message"]["content"] == [{"text": GREETING}]
    (entry,) = mock_log(stack)
    assert (entry["path"], entry["signed_region"], entry["credentials"]["aws_access_key_id"]) == (
        "/model/anthropic.claude-3-sonnet/converse", "us-east-1", "AKIDEXAMPLE")
    assert entry["body"] == {"messages": [{"role": "user", "content": [{"text": "Hello"}]}],
                             "inferenceConfig": {"maxTokens": 100}}
    counts = instance_counts(stack.proxy_url)
    assert counts[labels(method="POST", status="200", provider="bedrock", mode="transparent", protocol="",
                         region="us-east-1", instance="bedrock_transparent", environment="demo")] >= 1


def test_configs_provider_instances_yaml_served_on_its_own(stack):
    proxy = ServerProcess(["serve", "--config", "configs/provider-instances.yaml"], env={"MOCK_URL": stack.mock_url})
    try:
        clear_log(stack)
        r = seed_curl(proxy.url)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == GREETING
        # Every protocol-mode use case: the three regions, and the comparison's two providers.
        for path, model in (("bedrock_eu1", "claude-3-sonnet"), ("bedrock_ap1", "claude-3-sonnet"),
                            ("bedrock", "claude-sonnet-4-5"), ("anthropic", "claude-sonnet-4-5")):
            reply = sdk(f"{proxy.url}/openai/{path}").chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hello"}])
            assert reply.choices[0].message.content == GREETING
        entries = mock_log(stack)
        assert [(e["path"], e.get("signed_region")) for e in entries] == [
            (f"/model/{CLAUDE_3_SONNET}/converse", "us-east-1"), (f"/model/{CLAUDE_3_SONNET}/converse", "eu-west-1"),
            (f"/model/{CLAUDE_3_SONNET}/converse", "ap-northeast-1"),
            ("/model/anthropic.claude-sonnet-4-5-20250929-v1:0/converse", "us-east-1"), ("/v1/messages", None)]
        counts = instance_counts(proxy.url)
        assert counts[labels(method="POST", status="200", provider="bedrock", mode="protocol", protocol="openai",
                             region="us-east-1", instance="bedrock_us1_openai", environment="development")] == 1
        # Use cases 1 and 3: the transparent instance beside them, the seed's native curl as written.
        clear_log(stack)
        r = requests.post(proxy.url + SEED_TRANSPARENT_PATH, headers={"Content-Type": "application/json"},
                          data=SEED_TRANSPARENT_BODY, timeout=20)
        assert r.status_code == 200, r.text
        assert r.json()["output"]["message"]["content"] == [{"text": GREETING}]
        assert [(e["path"], e["signed_region"]) for e in mock_log(stack)] == [
            ("/model/anthropic.claude-3-sonnet/converse", "us-east-1")]
    finally:
        proxy.stop()


def seed_block_app(tmp_path, monkeypatch, stack, block: str):
    """A seed YAML block with only the host pointed at the mock (each instance's base_url), its
    credentials from the environment as the seed says (AWS keys, ANTHROPIC_API_KEY, AWS_REGION)."""
    data = yaml.safe_load(block)
    for spec in data["instances"].values():
        spec["base_url"] = stack.mock_url
    path = tmp_path / "provider-instances.yaml"
    path.write_text(yaml.safe_dump(data))
    for var, value in {**MOCK_AWS, "AWS_REGION": "us-east-1", "ANTHROPIC_API_KEY": "mock-anthropic-key"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return create_app(load_config(path)).test_client()


def test_seed_multi_region_example_as_written(tmp_path, monkeypatch, stack):
    client = seed_block_app(tmp_path, monkeypatch, stack, SEED_MULTI_REGION)
    clear_log(stack)
    r = client.post(SEED_CURL_PATH, data=SEED_CURL_BODY, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.get_data(as_text=True)
    for path in ("/openai/bedrock_eu1", "/openai/bedrock_ap1"):
        body = {"model": "claude-3-sonnet", "messages": [{"role": "user", "content": "Bonjour"}]}
        r = client.post(path + "/chat/completions", json=body)
        assert r.get_json()["choices"][0]["message"]["content"] == GREETING
    assert [e["signed_region"] for e in mock_log(stack)] == ["us-east-1", "eu-west-1", "ap-northeast-1"]


def test_seed_provider_comparison_example_as_written(tmp_path, monkeypatch, stack):
    """"Use same OpenAI code, just change base_url to compare providers!\""""
    client = seed_block_app(tmp_path, monkeypatch, stack, SEED_COMPARISON)
    clear_log(stack)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}
    for path in ("/openai/bedrock", "/openai/anthropic"):
        r = client.post(path + "/chat/completions", json=body)
        assert r.get_json()["choices"][0]["message"]["content"] == GREETING, r.get_data(as_text=True)
    assert [(e["provider"], e["path"]) for e in mock_log(stack)] == [
        ("bedrock", "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/converse"), ("anthropic", "/v1/messages")]


# ------------------------------------------------------------------ troubleshooting errors

def test_no_instance_for_the_path_is_a_404(stack):
    r = requests.post(stack.proxy_url + "/openai/bedrock_us9/chat/completions", json={"model": "claude-3-sonnet"},
                      timeout=10)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "instance_not_found"
    assert error["message"].startswith("No provider instance configured for this path: /openai/bedrock_us9 "
                                       "(served there: /openai/bedrock_us1, /openai/bedrock_eu1, /openai/anthropic,")


def test_a_transparent_instance_in_protocol_mode_is_a_400(stack):
    r = requests.post(stack.proxy_url + "/openai/bedrock_transparent/chat/completions", data=SEED_CURL_BODY,
                      timeout=10)
    assert (r.status_code, r.json()["error"]) == (400, {
        "message": "This endpoint requires transparent mode: instance 'bedrock_transparent' is served in "
                   "transparent mode at /transparent/bedrock; /openai/bedrock_transparent is protocol mode",
        "type": "invalid_request_error", "param": None, "code": "wrong_mode"})


def test_an_upstream_reply_that_cannot_be_converted_is_a_502_with_the_reason(stack):
    r = requests.post(stack.proxy_url + SEED_CURL_PATH, data=SEED_CURL_BODY,
                      headers={"Content-Type": "application/json", "X-Mock-Scenario": "malformed_body"}, timeout=10)
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "transformation_failed"
    assert error["message"].startswith("Failed to translate the response of instance 'bedrock_us1_openai' "
                                       "(bedrock_converse -> openai): ")


def test_an_instance_without_its_credentials_is_a_503_naming_what_is_missing(tmp_path, monkeypatch, stack):
    monkeypatch.delenv("INSTANCE_TEST_UNSET_KEY", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(f"""
instances:
  anthropic_openai:
    type: anthropic
    mode: protocol
    protocol: openai
    base_url: {stack.mock_url}
    authentication:
      type: api_key
      header: x-api-key
      key: ${{INSTANCE_TEST_UNSET_KEY}}
    endpoints: [/openai/anthropic]
""")
    client = create_app(load_config(path)).test_client()
    r = client.post("/openai/anthropic/chat/completions", json={"model": "claude-sonnet-4-5",
                                                               "messages": [{"role": "user", "content": "Hi"}]})
    assert (r.status_code, r.get_json()["error"]) == (503, {
        "message": "Provider anthropic not available: INSTANCE_TEST_UNSET_KEY not set in environment",
        "type": "service_unavailable_error", "param": None, "code": "provider_not_available"})
    counts = instance_counts_of(client)
    assert counts[labels(method="POST", status="503", provider="anthropic", mode="protocol", protocol="openai",
                         region="", instance="anthropic_openai")] == 1


def instance_counts_of(client) -> dict[tuple, float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {tuple(sorted(re.findall(r'(\w+)="([^"]*)"', lab))): float(v)
            for lab, v in re.findall(r"^http_requests_total\{(.*)\} (\S+)$", text, re.M)}


def test_check_config_names_the_bad_instance_key(tmp_path):
    bad = tmp_path / "provider-instances.yaml"
    bad.write_text(SEED_MULTI_REGION.replace("    region: eu-west-1\n", "    region: eu-west-1\n"
                                             "    transformation:\n      request_to: vertex_gemini\n"))
    done = subprocess.run([sys.executable, "-m", "app", "check-config", str(bad)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "instances.bedrock_eu1_openai.transformation.request_to: a bedrock "
                                                 "instance cannot be called in vertex_gemini (it speaks bedrock_converse)\n")
    good = subprocess.run([sys.executable, "-m", "app", "check-config", "configs/provider-instances.yaml"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert (good.returncode, good.stdout) == (0, "configs/provider-instances.yaml: OK\n")


def test_a_transformation_we_cannot_do_stops_serve(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text(SEED_COMPARISON.replace("    type: anthropic\n", "    type: anthropic\n    transformation:\n"
                                           "      request_to: bedrock_converse\n"))
    done = subprocess.run([sys.executable, "-m", "app", "serve", "--config", str(bad), "--port", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "AWS_REGION": "us-east-1"})
    assert done.returncode == 2
    assert "config error: instances.anthropic_openai.transformation.request_to: an anthropic instance cannot be " \
           "called in bedrock_converse (it speaks anthropic_messages)" in done.stderr


def test_instances_of_the_other_protocols_under_their_own_prefix(tmp_path, monkeypatch, stack):
    """Bedrock for an Anthropic client at /anthropic/NAME/v1/messages and for a Gemini client at
    /gemini/NAME/v1beta/models/...; an instance is served only under its protocol's prefix."""
    path = tmp_path / "c.yaml"
    path.write_text(f"""
instances:
  claude_for_anthropic:
    type: bedrock
    mode: protocol
    protocol: anthropic
    region: eu-west-1
    base_url: {stack.mock_url}
  claude_for_gemini:
    type: bedrock
    mode: protocol
    protocol: gemini
    region: ap-northeast-1
    base_url: {stack.mock_url}
""")
    for var, value in MOCK_AWS.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    client = create_app(load_config(path)).test_client()
    clear_log(stack)
    r = client.post("/anthropic/claude_for_anthropic/v1/messages", json={
        "model": "claude-3-sonnet", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]})
    assert (r.status_code, r.get_json()["content"]) == (200, [{"type": "text", "text": GREETING}])
    r = client.post("/gemini/claude_for_gemini/v1beta/models/claude-3-sonnet:generateContent",
                    json={"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]})
    assert (r.status_code, r.get_json()["candidates"][0]["content"]["parts"]) == (200, [{"text": GREETING}])
    assert [(e["path"], e["signed_region"]) for e in mock_log(stack)] == [
        (f"/model/{CLAUDE_3_SONNET}/converse", "eu-west-1"), (f"/model/{CLAUDE_3_SONNET}/converse", "ap-northeast-1")]
    r = client.post("/openai/claude_for_anthropic/chat/completions", json={"model": "claude-3-sonnet", "messages": []})
    assert (r.status_code, r.get_json()["error"]["code"], r.get_json()["error"]["message"]) == (
        400, "wrong_protocol", "Instance 'claude_for_anthropic' speaks the anthropic protocol: it is served at "
                               "/anthropic/claude_for_anthropic (not /openai/claude_for_anthropic)")
    r = client.post("/anthropic/nowhere/v1/messages", json={})
    assert (r.status_code, r.get_json()["error"]["type"]) == (404, "not_found_error")
    assert r.get_json()["error"]["message"] == ("No provider instance configured for this path: /anthropic/nowhere "
                                                "(served there: /anthropic/claude_for_anthropic)")


def test_boto3_through_the_demo_configs_transparent_instance(stack):
    """The Done-when's boto3 client against bedrock_transparent as config-mock.toml writes it
    (tests/integration/test_transparent.py covers the attacks on instances built in the test)."""
    from tests.integration.test_transparent import CONVERSE, MODEL, bedrock_client

    clear_log(stack)
    client = bedrock_client(f"{stack.proxy_url}/transparent/bedrock")
    assert client.converse(modelId=MODEL, **CONVERSE)["stopReason"] == "end_turn"
    events = list(client.converse_stream(modelId=MODEL, **CONVERSE)["stream"])
    assert [k for e in events for k in e][-2:] == ["messageStop", "metadata"]
    assert [(e["stream"], e["credentials"]["aws_access_key_id"], e["signed_region"]) for e in mock_log(stack)] == [
        (False, "AKIDEXAMPLE", "us-east-1"), (True, "AKIDEXAMPLE", "us-east-1")]
