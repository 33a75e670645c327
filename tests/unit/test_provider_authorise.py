"""Provider.authorise, the one way each kind's requests are authorised, applied to a
request it did not build (a transparent-mode client's native request): every credential
the request carries, in any scheme, gone; the kind's own applied (a key or token header,
or a signature the mock's own checks verify over the request as it is); and the base
URL its native paths extend."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from app.protocols.base import UpstreamRequest
from app.providers import provider_class
from tests.unit.test_providers import AWS_KEY_ID, AWS_SECRET, OCI, OCI_HOST, backend, lower

CLIENT_CREDENTIALS = {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20200101/us-east-1/bedrock/"
                                       "aws4_request, SignedHeaders=host, Signature=00",
                      "x-api-key": "client", "api-key": "client", "X-Goog-Api-Key": "client", "Cookie": "s=1",
                      "X-Amz-Security-Token": "client-token", "X-Amz-Date": "20200101T000000Z",
                      "Proxy-Authorization": "Bearer client"}


def native(url: str, method: str = "POST", body: bytes = b'{"x":1}') -> UpstreamRequest:
    return UpstreamRequest(method, url, {"Content-Type": "application/json", **CLIENT_CREDENTIALS}, body)


def provider(tmp_path, block: str):
    b = backend(tmp_path, block)
    return provider_class(b.kind)(b)


@pytest.mark.parametrize("block,credential", [
    ('kind = "openai"\nurl = "https://api.openai.com/v1"\napi_key = "sk-proxy"\n', ("authorization", "Bearer sk-proxy")),
    ('kind = "anthropic"\nurl = "https://api.anthropic.com"\napi_key = "ak-proxy"\n', ("x-api-key", "ak-proxy")),
    ('kind = "gemini"\nurl = "https://generativelanguage.googleapis.com"\napi_key = "g-proxy"\n',
     ("x-goog-api-key", "g-proxy")),
    ('kind = "azure_openai"\nurl = "https://res.openai.azure.com"\napi_key = "az-proxy"\n', ("api-key", "az-proxy")),
    ('kind = "azure_openai"\nurl = "https://res.openai.azure.com"\napi_key = "entra-token"\nauth = "bearer"\n',
     ("authorization", "Bearer entra-token")),
    ('kind = "openrouter"\nurl = "https://openrouter.ai"\napi_key = "or-proxy"\n', ("authorization", "Bearer or-proxy")),
    ('kind = "runpod_openai"\nendpoint_id = "e1"\napi_key = "rp-proxy"\n', ("authorization", "Bearer rp-proxy")),
    ('kind = "ollama"\napi_key = "ol-proxy"\n', ("authorization", "Bearer ol-proxy")),
    ('kind = "vertex_gemini"\nproject = "p"\nlocation = "us-central1"\naccess_token = "ya29.proxy"\n',
     ("authorization", "Bearer ya29.proxy")),
])
def test_a_key_or_token_kind_replaces_every_client_credential_with_its_own(tmp_path, block, credential):
    p = provider(tmp_path, block)
    r = p.authorise(native(p.native_base() + "/some/native/path?x=1"))
    assert lower(r.headers) == {"content-type": "application/json", credential[0]: credential[1]}
    assert (r.method, r.url, r.body) == ("POST", p.native_base() + "/some/native/path?x=1", b'{"x":1}')


def test_a_local_ollama_with_no_key_sends_no_credential_at_all(tmp_path):
    p = provider(tmp_path, 'kind = "ollama"\n')
    assert lower(p.authorise(native("http://127.0.0.1:11434/api/tags", "GET", b"")).headers) == {
        "content-type": "application/json"}


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse-stream", b'{"messages":[]}'),
    ("GET", "/model/x%2Fy/something?b=2&a=1", b""),
])
def test_bedrock_signs_the_request_exactly_as_it_is_sent(tmp_path, method, path, body):
    from mocks.sigv4 import verify

    p = provider(tmp_path, f'kind = "bedrock_converse"\nregion = "eu-west-1"\naws_access_key_id = "{AWS_KEY_ID}"\n'
                           f'aws_secret_access_key = "{AWS_SECRET}"\n')
    assert p.native_base() == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    r = p.authorise(native(p.native_base() + path, method, body))
    headers = lower(r.headers)
    assert r.url == p.native_base() + path and r.body == body
    assert "x-amz-security-token" not in headers  # the client's: these credentials have no session token
    assert "x-api-key" not in headers and "cookie" not in headers and "proxy-authorization" not in headers
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/")

    class Insensitive(dict):
        def get(self, name, default=None):
            return super().get(name.lower(), default)
    received = Insensitive({**headers, "host": "bedrock-runtime.eu-west-1.amazonaws.com"})
    assert verify(method, path, received, body, service="bedrock", secrets={AWS_KEY_ID: AWS_SECRET}) == "eu-west-1"
    # A byte changed after signing is a signature that no longer holds.
    with pytest.raises(Exception, match="signature we calculated does not match"):
        verify(method, path.replace("model", "modeL"), received, body, service="bedrock",
               secrets={AWS_KEY_ID: AWS_SECRET})


def test_oci_signs_a_native_get_over_its_request_target(tmp_path):
    from mocks.oci import _test_keys
    from mocks.oci_signature import verify

    p = provider(tmp_path, OCI)
    assert p.native_base() == f"https://{OCI_HOST}"
    r = p.authorise(native(p.native_base() + "/20231130/models?compartmentId=c1", "GET", b""))
    headers = lower(r.headers)
    assert "x-api-key" not in headers and "cookie" not in headers and "x-amz-security-token" not in headers
    assert 'headers="date (request-target) host"' in headers["authorization"]

    class Insensitive(dict):
        def get(self, name, default=None):
            return super().get(name.lower(), default)
    target = r.url.partition(OCI_HOST)[2]
    assert target == "/20231130/models?compartmentId=c1"
    assert verify("GET", target, Insensitive(headers), b"", public_keys=_test_keys(),
                  now=lambda: datetime.now(timezone.utc)).startswith("ocid1.tenancy.oc1..")


@pytest.mark.parametrize("block,base", [
    ('kind = "openai"\nurl = "https://api.openai.com/v1"\napi_key = "k"\n', "https://api.openai.com/v1"),
    ('kind = "vertex_anthropic"\nproject = "p"\nlocation = "us-east5"\naccess_token = "t"\n',
     "https://us-east5-aiplatform.googleapis.com"),
    ('kind = "watsonx"\nproject_id = "p"\nregion = "eu-de"\napi_key = "k"\n', "https://eu-de.ml.cloud.ibm.com"),
    ('kind = "ollama_openai"\n', "http://127.0.0.1:11434/v1"),
    ('kind = "runpod"\nendpoint_id = "e1"\napi_key = "k"\n', "https://api.runpod.ai"),
])
def test_the_base_native_paths_extend(tmp_path, block, base):
    assert provider(tmp_path, block).native_base() == base
