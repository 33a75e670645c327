"""The one upstream URL builder: every value is one percent-encoded path
segment, and every protocol's calls are built with it (exact URLs)."""
from __future__ import annotations

import pytest

from app import ir
from app.protocols import anthropic, gemini, openai_chat
from app.upstream.urls import query_string, segment, upstream_url
from tests.upstream_call import Upstream, built

# Every character a value might carry that means something in a URL or a request line.
SPECIAL = {
    "/": "%2F", "?": "%3F", "#": "%23", "%": "%25", ":": "%3A", "@": "%40", "+": "%2B", "&": "%26",
    "=": "%3D", ";": "%3B", ",": "%2C", " ": "%20", "\r": "%0D", "\n": "%0A", "\t": "%09", "\x00": "%00",
    "\x7f": "%7F", "\\": "%5C", '"': "%22", "<": "%3C", ">": "%3E", "[": "%5B", "]": "%5D", "{": "%7B",
    "}": "%7D", "|": "%7C", "^": "%5E", "`": "%60", "'": "%27", "!": "%21", "$": "%24", "*": "%2A",
    "(": "%28", ")": "%29", "é": "%C3%A9", "\u2028": "%E2%80%A8",
}


@pytest.mark.parametrize("char,encoded", SPECIAL.items())
def test_segment_encodes_every_special_character(char, encoded):
    assert segment(f"a{char}b") == f"a{encoded}b"


def test_segment_keeps_unreserved_characters():
    unreserved = "ABCXYZabcxyz0189-._~"
    assert segment(unreserved) == unreserved


@pytest.mark.parametrize("value", ["", ".", ".."])
def test_segment_refuses_values_that_name_another_path(value):
    with pytest.raises(ValueError, match="cannot be a URL path segment"):
        segment(value)


def test_dot_segments_inside_a_value_stay_inside_it():
    assert segment("../../v1beta/files/abc?x=") == "..%2F..%2Fv1beta%2Ffiles%2Fabc%3Fx%3D"


def test_upstream_url_template_values_and_query():
    assert upstream_url("https://h.test/base/", "/models/{model}:generateContent", model="a/b:c",
                        query={"alt": "sse", "k y": "v&w"}) == \
        "https://h.test/base/models/a%2Fb%3Ac:generateContent?alt=sse&k%20y=v%26w"


def test_upstream_url_without_values_or_query():
    assert upstream_url("http://127.0.0.1:8888/v1", "/chat/completions") == "http://127.0.0.1:8888/v1/chat/completions"


def test_query_string_encodes_keys_and_values():
    assert query_string({"a b": "c/d?e#f", "x": ""}) == "a%20b=c%2Fd%3Fe%23f&x="


def test_bedrock_style_ids_keep_colon_and_slash_inside_their_segment():
    assert upstream_url("https://bedrock-runtime.us-east-1.amazonaws.com", "/model/{model}/converse",
                        model="arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude-v1:0") == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.anthropic.claude-v1%3A0/converse")


# ------------------------------------------------ every protocol builds with it

INJECTION = "gemini-2.5-flash:generateContent\tHTTP/1.1\r\nHost:x\r\n\r\nDELETE\t/_mock/requests?"
ENCODED = "gemini-2.5-flash%3AgenerateContent%09HTTP%2F1.1%0D%0AHost%3Ax%0D%0A%0D%0ADELETE%09%2F_mock%2Frequests%3F"


def _request(stream: bool) -> ir.Request:
    return ir.Request(model="client-name", messages=(ir.Message("user", (ir.Text("hi"),)),), protocol="openai",
                      stream=stream, max_tokens=16)


def _target(model: str) -> Target:
    return Upstream(backend="b", base_url="https://up.test/root/", model=model, api_key="k")


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_puts_the_model_in_one_encoded_segment(stream):
    url = built(gemini, _request(stream), _target(INJECTION)).url
    if stream:
        assert url == f"https://up.test/root/v1beta/models/{ENCODED}:streamGenerateContent?alt=sse"
    else:
        assert url == f"https://up.test/root/v1beta/models/{ENCODED}:generateContent"


def test_gemini_strips_the_models_prefix_before_encoding():
    url = built(gemini, _request(False), _target("models/gemini-2.5-flash")).url
    assert url == "https://up.test/root/v1beta/models/gemini-2.5-flash:generateContent"


@pytest.mark.parametrize("model", ["..", "models/.."])
def test_gemini_refuses_a_dot_dot_model(model):
    with pytest.raises(ValueError):
        built(gemini, _request(False), _target(model))


@pytest.mark.parametrize("stream", [False, True])
def test_openai_and_anthropic_urls_do_not_carry_the_model(stream):
    assert built(openai_chat, _request(stream), _target(INJECTION)).url == \
        "https://up.test/root/chat/completions"
    assert built(anthropic, _request(stream), _target(INJECTION)).url == "https://up.test/root/v1/messages"


def test_anthropic_count_tokens_url():
    req = ir.Request(model="m", messages=(ir.Message("user", (ir.Text("hi"),)),), protocol="anthropic",
                     raw={"model": "m"})
    assert built(anthropic, req, _target("m"), action="count_tokens").url == "https://up.test/root/v1/messages/count_tokens"


def test_segment_keeps_only_what_it_is_asked_to_and_may():
    assert segment("claude-x@20250929:1", keep="@") == "claude-x@20250929%3A1"
    for char in "/?#% \n":
        with pytest.raises(ValueError, match="may stay unencoded"):
            segment("a", keep=char)
