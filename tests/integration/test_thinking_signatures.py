"""Which thinking signatures travel where (app/protocols/anthropic/__init__.py), through the
proxy and the strict mock, with the anthropic SDK as the client: Claude on Bedrock's
signature reaches an Anthropic client tagged with its family and, on the next turn, goes
back to Bedrock as reasoningContent byte-exact (the mock's Bedrock refuses a signature it did
not issue, as Bedrock does); a signature of another family is never sent to Bedrock, and
Bedrock's never reaches the Anthropic API."""
from __future__ import annotations

import json

import anthropic
import pytest
import requests

BEDROCK_CLAUDE = "claude-3-sonnet"  # config-mock.toml: the bedrock backend's Claude
ANTHROPIC_CLAUDE = "claude-haiku-4-5"  # the anthropic backend
THOUGHT = "The user wants a short answer. I will answer directly."  # scenarios/bedrock/thinking.yaml
SIGNATURE = "YmVkcm9jay1tb2NrLXNpZ25hdHVyZTp0aGlua2luZy1zY2VuYXJpbzp2MTowMTIzNDU2Nzg5YWJjZGVm"
THINKING = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture
def client(stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.proxy_url, api_key="client-key", max_retries=0, timeout=20)


def last_request(stack, provider: str) -> dict:
    return requests.get(stack.mock_url + "/_mock/requests", params={"provider": provider}, timeout=5).json()[-1]


def ask(client: anthropic.Anthropic, model: str, messages: list[dict], stream: bool):
    request = dict(model=model, max_tokens=2048, thinking=THINKING, messages=messages)
    if stream:
        with client.messages.stream(**request) as events:
            return events.get_final_message()
    return client.messages.create(**request)


def history(first_reply, assistant_content: list[dict] | None = None) -> list[dict]:
    """Turn 1, the assistant's reply as the client echoes it (verbatim), and turn 2."""
    content = assistant_content or [b.model_dump(exclude_none=True) for b in first_reply.content]
    return [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": content},
            {"role": "user", "content": "And why?"}]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_bedrock_signature_reaches_the_client_tagged_and_goes_back_to_bedrock(stack, client, stream):
    first = ask(client, BEDROCK_CLAUDE, [{"role": "user", "content": "Hi"}], stream)
    thinking = first.content[0]
    assert (thinking.type, thinking.thinking, thinking.signature) == ("thinking", THOUGHT,
                                                                      "bedrock_converse:" + SIGNATURE)
    second = ask(client, BEDROCK_CLAUDE, history(first), stream)
    assert second.content[-1].text == "The answer is 42."
    sent = last_request(stack, "bedrock")
    assert sent["status"] == 200
    assert sent["body"]["messages"][1] == {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": THOUGHT, "signature": SIGNATURE}}},
        {"text": "The answer is 42."}]}


@pytest.mark.parametrize("signature", ["EqQBCkYIBxgCKkB+anthropicsig==", "gemini:CikBanVzdA=="],
                         ids=["anthropic-api-or-vertex", "gemini"])
def test_another_familys_signature_is_not_sent_to_bedrock(stack, client, signature):
    content = [{"type": "thinking", "thinking": "Elsewhere.", "signature": signature},
               {"type": "text", "text": "Hello."}]
    reply = ask(client, BEDROCK_CLAUDE, history(None, content), stream=False)
    assert reply.content[-1].text == "The answer is 42."
    assert last_request(stack, "bedrock")["body"]["messages"][1] == {"role": "assistant",
                                                                     "content": [{"text": "Hello."}]}


def test_a_signature_bedrock_did_not_issue_is_refused_by_it(stack, client):
    forged = [{"type": "thinking", "thinking": THOUGHT, "signature": "bedrock_converse:Zm9yZ2VkLXNpZ25hdHVyZQ=="},
              {"type": "text", "text": "Hello."}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(client, BEDROCK_CLAUDE, history(None, forged), stream=False)
    assert "Invalid `signature` in `thinking` block" in caught.value.message
    assert last_request(stack, "bedrock")["status"] == 400


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_bedrocks_signature_never_reaches_the_anthropic_api(stack, client, stream):
    first = ask(client, BEDROCK_CLAUDE, [{"role": "user", "content": "Hi"}], stream)
    ask(client, ANTHROPIC_CLAUDE, history(first), stream)  # the conversation moves to another backend
    sent = last_request(stack, "anthropic")
    assert sent["body"]["messages"][1] == {"role": "assistant",
                                           "content": [{"type": "text", "text": "The answer is 42."}]}
    assert SIGNATURE not in json.dumps(sent["body"])
