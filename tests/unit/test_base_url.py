"""Backend URLs as each provider's users write them -> the one base the request builders extend,
and check-config saying what it understood."""
from __future__ import annotations

import textwrap

import pytest

from app.__main__ import main
from app.base_url import BaseUrlError, normalise_base_url
from app.config import ConfigError, load_config

GEMINI = "https://generativelanguage.googleapis.com"


@pytest.mark.parametrize("protocol,written,base", [
    # OpenAI: the base carries the API version; requests go to {base}/chat/completions
    ("openai", "https://api.openai.com", "https://api.openai.com/v1"),
    ("openai", "https://api.openai.com/", "https://api.openai.com/v1"),
    ("openai", "https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("openai", "https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1"),
    ("openai", "https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1"),
    ("openai", "http://localhost:11434/v1/", "http://localhost:11434/v1"),
    ("openai", f"{GEMINI}/v1beta/openai", f"{GEMINI}/v1beta/openai"),
    # Anthropic: requests go to {base}/v1/messages
    ("anthropic", "https://api.anthropic.com", "https://api.anthropic.com"),
    ("anthropic", "https://api.anthropic.com/v1", "https://api.anthropic.com"),
    ("anthropic", "https://api.anthropic.com/v1/messages", "https://api.anthropic.com"),
    ("anthropic", "https://gateway.example/anthropic/v1/", "https://gateway.example/anthropic"),
    # Gemini: requests go to {base}/v1beta/models/{model}:{method}
    ("gemini", GEMINI, GEMINI),
    ("gemini", f"{GEMINI}/v1beta", GEMINI),
    ("gemini", f"{GEMINI}/v1beta/", GEMINI),
    ("gemini", f"{GEMINI}/v1", GEMINI),
    ("gemini", f"{GEMINI}/v1beta/models", GEMINI),
    ("gemini", f"{GEMINI}/v1beta/models/gemini-2.5-flash", GEMINI),
    ("gemini", f"{GEMINI}/v1beta/models/gemini-2.5-flash:streamGenerateContent", GEMINI),
    ("gemini", "https://gateway.example/google/v1beta/models/gemini-2.5-flash", "https://gateway.example/google"),
])
def test_each_written_form_names_one_base(protocol, written, base):
    assert normalise_base_url(protocol, written).base == base


@pytest.mark.parametrize("protocol,written,note", [
    ("openai", "https://api.openai.com/v1", None),
    ("openai", "https://api.openai.com",
     "https://api.openai.com understood as base https://api.openai.com/v1 "
     "(a bare host gets the API version /v1: requests go to {base}/chat/completions)"),
    ("anthropic", "https://api.anthropic.com", None),
    ("anthropic", "https://api.anthropic.com/v1",
     "https://api.anthropic.com/v1 understood as base https://api.anthropic.com "
     "(/v1 dropped: requests go to {base}/v1/messages)"),
    ("gemini", GEMINI, None),
    ("gemini", f"{GEMINI}/v1beta/models/gemini-2.5-flash",
     f"{GEMINI}/v1beta/models/gemini-2.5-flash understood as base {GEMINI} "
     "(API v1beta; the model path is ignored: models come from model_mapping)"),
    ("gemini", f"{GEMINI}/v1",
     f"{GEMINI}/v1 understood as base {GEMINI} (API v1 written; requests use v1beta)"),
])
def test_the_note_says_what_was_understood(protocol, written, note):
    assert normalise_base_url(protocol, written).note == note


@pytest.mark.parametrize("written", [f"{GEMINI}/v1beta?key=AIzaSECRET", "https://api.openai.com/v1#x"])
def test_a_query_is_refused_without_echoing_it(written, tmp_path):
    with pytest.raises(BaseUrlError):
        normalise_base_url("gemini", written)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[backends.g]\nprotocol = "gemini"\nurl = "{written}"\napi_key = "k"\n')
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.problems[0] == ("backends.g.url: must not carry a query or fragment (?… / #…): "
                                   "give the key as api_key or api_key_env")
    assert "SECRET" not in str(e.value)


def test_check_config_prints_what_it_understood(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""
        [backends.gemini-flash]
        url = "{GEMINI}/v1beta/models/gemini-2.5-flash"
        protocol = "gemini"
        [backends.gemini-flash.model_mapping]
        "gpt-4" = "gemini-2.5-flash"
    """))
    assert main(["check-config", str(cfg)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"backends.gemini-flash.url: {GEMINI}/v1beta/models/gemini-2.5-flash understood as base {GEMINI}"
        " (API v1beta; the model path is ignored: models come from model_mapping)",
        "backends.gemini-flash.api_key_env: not given; GEMINI_API_KEY is read (the provider SDK's usual variable)",
        f"{cfg}: OK",
    ]
    assert load_config(cfg).backends["gemini-flash"].url == GEMINI
