"""The model id rule (app/model_ids.py), and that every frontend applies it
in parse_request, with a 400 naming `model` that never echoes the value."""
from __future__ import annotations

import pytest

from app.errors import ErrorKind, ProxyError
from app.model_ids import MAX_MODEL_ID, check_model_id
from app.protocols import anthropic, gemini, openai_chat

REAL_IDS = [
    "gpt-4o-2024-08-06", "gpt-5-nano", "o3-mini", "claude-sonnet-4-5@20250929", "claude-sonnet-4-5",
    "anthropic.claude-3-sonnet-20240229-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "meta-llama/llama-3.1-8b-instruct", "models/gemini-2.5-flash", "gemini-2.5-flash", "ibm/granite-3-8b-instruct",
    "llama3.1:8b", "openai/gpt-4o:free", "accounts/fireworks/models/llama-v3p1-8b-instruct",
    "publishers/google/models/gemini-2.5-pro", "Qwen/Qwen2.5-72B-Instruct", "ft:gpt-4o-mini:org:name:abc+1",
    "a", "x" * MAX_MODEL_ID, "v1.0", "...", ".hidden", "a..b",
]


@pytest.mark.parametrize("model", REAL_IDS)
def test_real_provider_ids_are_valid(model):
    assert check_model_id(model) == model


BAD_IDS = {
    "": "'model' must not be empty.",
    "x" * (MAX_MODEL_ID + 1): f"'model' is {MAX_MODEL_ID + 1} characters long; a model id has at most 256.",
    "x" * 30_000_000: "'model' is 30000000 characters long; a model id has at most 256.",
    "gpt-4o\n": "'model' contains the character U+000A at position 6; "
                "a model id has only ASCII letters, digits and . _ : / @ + -.",
    "a\r\nb": "'model' contains the character U+000D at position 1; "
              "a model id has only ASCII letters, digits and . _ : / @ + -.",
    "gpt 4o": "'model' contains the character U+0020 at position 3; "
              "a model id has only ASCII letters, digits and . _ : / @ + -.",
    "m?x=1": "'model' contains the character U+003F at position 1; "
             "a model id has only ASCII letters, digits and . _ : / @ + -.",
    "modèle": "'model' contains the character U+00E8 at position 3; "
              "a model id has only ASCII letters, digits and . _ : / @ + -.",
    "../../v1beta/files/abc": "'model' has an empty, '.' or '..' part between slashes, which a model id may not have.",
    "a/../b": "'model' has an empty, '.' or '..' part between slashes, which a model id may not have.",
    "a/..": "'model' has an empty, '.' or '..' part between slashes, which a model id may not have.",
    "..": "'model' has an empty, '.' or '..' part between slashes, which a model id may not have.",
    "./a": "'model' has an empty, '.' or '..' part between slashes, which a model id may not have.",
    "a//b": "'model' has an empty, '.' or '..' part between slashes, which a model id may not have.",
    "/a": "'model' has an empty, '.' or '..' part between slashes, which a model id may not have.",
    "models/": "'model' has an empty, '.' or '..' part between slashes, which a model id may not have.",
}
SPECIAL_CHARS = [chr(c) for c in range(0x20)] + list(" \x7f?#%\\\"'<>[]{}|^`&=;,$!*()~") + ["\u2028", "é", "\ufeff"]


@pytest.mark.parametrize("model,message", BAD_IDS.items(), ids=lambda v: repr(v[:20]))
def test_bad_ids_are_a_400_naming_model_with_an_exact_message(model, message):
    with pytest.raises(ProxyError) as info:
        check_model_id(model)
    assert (info.value.kind, info.value.status, info.value.param) == (ErrorKind.invalid_request, 400, "model")
    assert info.value.message == message


@pytest.mark.parametrize("char", SPECIAL_CHARS, ids=lambda c: f"U+{ord(c):04X}")
def test_every_special_character_is_refused(char):
    with pytest.raises(ProxyError) as info:
        check_model_id(f"gpt{char}4o")
    assert info.value.param == "model" and f"U+{ord(char):04X} at position 3" in info.value.message


# ------------------------------------------------- every frontend applies it

INJECTION = "gemini-2.5-flash:generateContent\tHTTP/1.1\r\nHost:x\r\nContent-Length:0\r\n\r\nDELETE\t/_mock/requests?"
USER = {"role": "user", "content": "hi"}


def _parse(frontend: str, model: str):
    if frontend == "openai":
        return openai_chat.parse_request({"model": model, "messages": [USER]})
    if frontend == "anthropic":
        return anthropic.parse_request({"model": model, "max_tokens": 8, "messages": [USER]})
    if frontend == "gemini-url":
        return gemini.parse_request({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, model=model,
                                    stream=False)
    return gemini.parse_request({"model": model, "contents": [{"role": "user", "parts": [{"text": "hi"}]}]})


@pytest.mark.parametrize("frontend", ["openai", "anthropic", "gemini-url", "gemini-body"])
@pytest.mark.parametrize("model", [INJECTION, "../../../v1beta/files/abc?x=", "x" * 30_000, "a\nINFO forged", "m/../x"])
def test_every_frontend_refuses_a_bad_model(frontend, model):
    with pytest.raises(ProxyError) as info:
        _parse(frontend, model)
    assert (info.value.status, info.value.param) == (400, "model")
    assert model not in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize("frontend", ["openai", "anthropic", "gemini-url", "gemini-body"])
def test_every_frontend_takes_a_real_id(frontend):
    assert _parse(frontend, "anthropic.claude-3-sonnet-20240229-v1:0").model == \
        "anthropic.claude-3-sonnet-20240229-v1:0"
