"""Cross-protocol conversions as pure functions: a client body parsed by one
protocol module, the upstream body built by another. Covers the gateway bugs
that live between two modules (shared/protocols/known-gateway-bugs.md)."""
from __future__ import annotations

import json

from app.protocols import anthropic, gemini, openai_chat
from tests.upstream_call import Upstream, built

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="
OPENAI = Upstream(backend="oa", base_url="https://oa.test/v1", model="gpt-4o", api_key="k")
ANTHROPIC = Upstream(backend="an", base_url="https://an.test", model="claude-sonnet-4-5", api_key="k")
GEMINI = Upstream(backend="ge", base_url="https://ge.test", model="gemini-2.5-flash", api_key="k")
WEATHER = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}


def body(upstream) -> dict:
    return json.loads(upstream.body)


def anthropic_tool_turns(result_content) -> dict:
    return {"model": "m", "max_tokens": 100,
            "tools": [{"name": "screenshot", "input_schema": WEATHER}],
            "messages": [
                {"role": "user", "content": "Take a screenshot"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "screenshot",
                                                   "input": {"location": "desk"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                              "content": result_content}]}]}


def test_bug14_image_in_an_anthropic_tool_result_reaches_openai_as_an_image():
    """Not flattened into the tool message text, not dropped: OpenAI tool messages
    are text-only, so the image follows them in a user message."""
    req = anthropic.parse_request(anthropic_tool_turns([
        {"type": "text", "text": "Here it is"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]))
    messages = body(built(openai_chat, req, OPENAI))["messages"]
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Here it is"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]},
    ]


def test_bug14_image_in_an_anthropic_tool_result_reaches_gemini_inline():
    req = anthropic.parse_request(anthropic_tool_turns([
        {"type": "text", "text": "Here it is"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]))
    contents = body(built(gemini, req, GEMINI))["contents"]
    parts = [p for c in contents[2:] for p in c["parts"]]
    responses = [{k: v for k, v in p["functionResponse"].items() if k != "id"}
                 for p in parts if "functionResponse" in p]
    assert responses == [{"name": "screenshot", "response": {"output": "Here it is"}}]
    assert {"inlineData": {"mimeType": "image/png", "data": PNG}} in parts


def test_bug14_openai_tool_content_as_a_list_of_parts_works_for_anthropic():
    req = openai_chat.parse_request({"model": "m", "tools": [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}], "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "3"},
                                                               {"type": "text", "text": "°C"}]}]})
    messages = body(built(anthropic, req, ANTHROPIC))["messages"]
    (result,) = messages[2]["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "call_1"
    content = result["content"]
    text = content if isinstance(content, str) else "".join(b["text"] for b in content)
    assert text == "3°C"


def test_bug16_http_image_urls_go_to_anthropic_as_urls_not_downloaded():
    req = openai_chat.parse_request({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}}]}]})
    (message,) = body(built(anthropic, req, ANTHROPIC))["messages"]
    assert message["content"] == [{"type": "text", "text": "What is this?"},
                                  {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}}]


def test_data_url_images_become_anthropic_base64_and_gemini_inline_data():
    req = openai_chat.parse_request({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]}]})
    (an_msg,) = body(built(anthropic, req, ANTHROPIC))["messages"]
    assert an_msg["content"] == [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]
    (ge_msg,) = body(built(gemini, req, GEMINI))["contents"]
    assert ge_msg == {"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}]}
