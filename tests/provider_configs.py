"""Config pieces for tests that run the proxy in front of the mock with the
provider kinds that need credentials of their own (Vertex, Bedrock, Azure)."""
from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mocks.bedrock import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from mocks.google_oauth import TEST_SERVICE_ACCOUNT
from mocks.ollama import API_KEY as OLLAMA_KEY

# The credential chain sees nothing of the machine it runs on (no files, no
# instance metadata, no variables): only what each backend's config gives.
# (The container-role variables must stay unset, not empty: set at all, botocore
# goes to the network for them.)
ISOLATED = {"AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-creds",
            "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_WEB_IDENTITY_TOKEN_FILE": "",
            "GCP_ACCESS_TOKEN": "", "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/adc.json"}


def service_account(tmp_path: Path, mock_url: str, *, other_key: bool = False, name: str = "") -> Path:
    """The test service account's key file with token_uri at `mock_url`; `other_key`: signed
    with a fresh private key the token endpoint does not know (same key id)."""
    info = json.loads(TEST_SERVICE_ACCOUNT.read_text())
    info["token_uri"] = mock_url + "/token"
    if other_key:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        info["private_key"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()).decode()
    path = tmp_path / (name or ("other-key.json" if other_key else "service-account.json"))
    path.write_text(json.dumps(info))
    return path


def kind_blocks(mock_url: str, sa: Path) -> str:
    """The issue's four backends (azure, vertex, vertex-anthropic, bedrock) at the mock, with
    the client model names the issue gives them, Azure's Responses (v1 form), and Ollama's two
    routes (the native one with a bearer key, as a hosted Ollama takes it; the compatible one
    without, as a local server), and RunPod's queue and OpenAI route."""
    return f"""
[backends.azure]
kind = "azure_openai"
url = "{mock_url}"
api_key = "azure-proxy-key-0123456789"
[backends.azure.model_mapping]
"azure-gpt-4o" = "gpt-4o"

[backends.azure-responses]
kind = "azure_responses"
url = "{mock_url}/openai/v1"
api_key = "azure-proxy-key-0123456789"
[backends.azure-responses.model_mapping]
"azure-responses-gpt-4o" = "gpt-4o"

[backends.vertex]
kind = "vertex_gemini"
url = "{mock_url}"
project = "interchange-test"
location = "us-central1"
credentials_file = "{sa}"
[backends.vertex.model_mapping]
"vertex-gemini-2.5-pro" = "gemini-2.5-pro"

[backends.vertex-anthropic]
kind = "vertex_anthropic"
url = "{mock_url}"
project = "interchange-test"
location = "us-east5"
credentials_file = "{sa}"
[backends.vertex-anthropic.model_mapping]
"vertex-claude-sonnet-4-5" = "claude-sonnet-4-5@20250929"

[backends.bedrock]
kind = "bedrock_converse"
url = "{mock_url}"
region = "us-east-1"
aws_access_key_id = "{ACCESS_KEY_ID}"
aws_secret_access_key = "{SECRET_ACCESS_KEY}"
[backends.bedrock.model_mapping]
"claude-3-sonnet" = "anthropic.claude-3-sonnet-20240229-v1:0"
"nova-pro" = "amazon.nova-pro-v1:0"

[backends.ollama]
kind = "ollama"
url = "{mock_url}"
api_key = "{OLLAMA_KEY}"
[backends.ollama.model_mapping]
"ollama-llama3.2" = "llama3.2"

[backends.ollama-openai]
kind = "ollama_openai"
url = "{mock_url}/v1"
[backends.ollama-openai.model_mapping]
"ollama-mistral-small" = "mistral-small3.2"

[backends.runpod]
kind = "runpod"
url = "{mock_url}"
api_key = "runpod-proxy-key-0123456789"
endpoint_id = "mock-vllm-endpoint"
poll_interval_ms = 20
[backends.runpod.model_mapping]
"runpod-mistral-7b" = "mistralai/Mistral-7B-Instruct-v0.3"

[backends.runpod-openai]
kind = "runpod_openai"
url = "{mock_url}"
api_key = "runpod-proxy-key-0123456789"
endpoint_id = "mock-vllm-endpoint"
[backends.runpod-openai.model_mapping]
"runpod-openai-mistral-7b" = "mistralai/Mistral-7B-Instruct-v0.3"
"""
