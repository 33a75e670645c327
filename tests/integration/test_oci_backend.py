"""OCI Generative AI backends through the proxy, signed for real and checked by the
mock (a subprocess): every frontend, streamed and not, in both request formats
(COHERE for Cohere models, GENERIC for the others) and both serving modes. A key
the service refuses reaches the client as a 502 naming the backend; a config file
the proxy cannot use, as a configuration error naming the backend; the private
key never reaches a client or the log."""
from __future__ import annotations

import configparser
import json
import textwrap
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mocks.oci import CONFIG_FILE
from tests.client_requests import FRONTENDS, client_request, error_message
from tests.conftest import REPO, ServerProcess

TEXT = "Hello! I'm a mock assistant. How can I help you today?"
COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaaexample"


def wrong_key_config(tmp_path: Path) -> tuple[Path, str]:
    """The test config's identity with another private key (one the mock does not know)."""
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode()
    key = tmp_path / "wrong-key.pem"
    key.write_text(pem)
    parser = configparser.ConfigParser()
    parser.read(CONFIG_FILE)
    parser["DEFAULT"]["key_file"] = str(key)
    config = tmp_path / "wrong-oci-config"
    with config.open("w") as f:
        parser.write(f)
    return config, pem.splitlines()[5]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oci")
    wrong, key_line = wrong_key_config(tmp)
    mock = ServerProcess(["mock"])
    blocks = ""
    for name, model, extra in (
            ("oci", "cohere.command-r-plus-08-2024", ""),
            ("oci-generic", "meta.llama-3.3-70b-instruct", ""),
            ("oci-dedicated", "cohere.command-r-plus-08-2024",
             'endpoint_id = "ocid1.generativeaiendpoint.oc1.us-chicago-1.amaaaaexample"\n'),
            ("oci-wrong-key", "cohere.command-r-plus-08-2024", f'config_file = "{wrong}"\n'),
            ("oci-no-file", "cohere.command-r-plus-08-2024", f'config_file = "{tmp}/missing/config"\n')):
        config_file = "" if "config_file" in extra else f'config_file = "{REPO / "mocks/testdata/oci-config"}"\n'
        blocks += f'\n[backends.{name}]\nkind = "oci_cohere"\nurl = "{mock.url}"\ncompartment_id = "{COMPARTMENT}"\n' \
                  f'{config_file}{extra}[backends.{name}.model_mapping]\n"m-{name}" = "{model}"\n'
    config = tmp / "oci.toml"
    config.write_text('[server]\nlog_level = "debug"\n' + textwrap.dedent(blocks))
    try:
        proxy = ServerProcess(["serve", "--config", str(config)])
    except Exception:
        mock.stop()
        raise
    yield proxy, mock, key_line
    proxy.stop()
    mock.stop()


def post(proxy: ServerProcess, frontend: str, model: str, stream: bool = False) -> requests.Response:
    path, headers, body = client_request(frontend, model, stream)
    return requests.post(proxy.url + path, json=body, headers=headers, timeout=30)


def oci_requests(mock: ServerProcess) -> list[dict]:
    return requests.get(mock.url + "/_mock/requests", params={"provider": "oci"}, timeout=5).json()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("backend", ["oci", "oci-generic", "oci-dedicated"])
def test_signed_calls_are_answered(servers, backend, frontend, stream):
    proxy, mock, _ = servers
    r = post(proxy, frontend, f"m-{backend}", stream)
    assert r.status_code == 200, r.text
    if stream:
        assert "Hello" in r.text and "help you today?" in r.text, r.text
    else:
        assert TEXT in r.text
    last = oci_requests(mock)[-1]
    assert last["status"] == 200 and last["path"] == "/20231130/actions/chat"
    assert last["headers"]["authorization"] == "Signature [REDACTED]"
    chat = last["body"]["chatRequest"]
    assert chat["apiFormat"] == ("GENERIC" if backend == "oci-generic" else "COHERE")
    assert chat.get("isStream", False) is stream
    serving = last["body"]["servingMode"]
    assert serving["servingType"] == ("DEDICATED" if backend == "oci-dedicated" else "ON_DEMAND")


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_refused_key_is_a_502_naming_the_backend(servers, frontend):
    proxy, mock, key_line = servers
    for stream in (False, True):
        r = post(proxy, frontend, "m-oci-wrong-key", stream)
        assert r.status_code == 502, r.text
        assert error_message(frontend, r.json()) == (
            "Backend 'oci-wrong-key' rejected the proxy's credentials (upstream HTTP 401). This is a problem "
            "with the proxy's configuration for that backend, not with the client's request.")
        assert key_line not in r.text + json.dumps(dict(r.headers))
    assert oci_requests(mock)[-1]["status"] == 401
    assert key_line not in "\n".join(proxy.lines)


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_missing_config_file_is_a_configuration_error(servers, frontend):
    proxy, _, _ = servers
    r = post(proxy, frontend, "m-oci-no-file")
    assert r.status_code == 500, r.text
    assert error_message(frontend, r.json()).startswith(
        "Backend 'oci-no-file' cannot use its OCI config file (ConfigFileNotFound")


@pytest.mark.parametrize("stream", [False, True])
def test_json_output_is_asked_for_and_answered(servers, stream):
    proxy, mock, _ = servers
    body = {"model": "m-oci", "stream": stream, "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": "The answer, as JSON."}]}
    r = requests.post(proxy.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200, r.text
    if stream:
        chunks = [json.loads(line[6:]) for line in r.text.split("\n\n") if line.startswith("data: {")]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    else:
        text = r.json()["choices"][0]["message"]["content"]
    assert json.loads(text) == {"answer": 42}
    last = oci_requests(mock)[-1]
    assert last["scenario"] == "json" and last["body"]["chatRequest"]["responseFormat"] == {"type": "JSON_OBJECT"}
