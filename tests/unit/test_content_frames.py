"""`is_content_frame`: the frames a same-protocol relay relays without parsing.

The relay parses passthrough frames only to notice the end, errors and usage,
so skipping the content frames must never change what it notices: the last
event of the stream (MessageStop with its finish reason and usage, or a
StreamError) is the same whether the parser saw every frame or only the rest.
"""
from __future__ import annotations

import pytest

from app import ir
from app.protocols import anthropic, gemini, openai_chat
from app.upstream.framing import Frame, SSEFramer

OPENAI_CASES = [
    ('{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}', True),
    ('{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}', True),
    ('{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}', False),
    ('{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}', False),
    # two choices, one finished
    ('{"choices":[{"index":0,"delta":{},"finish_reason":null},{"index":1,"delta":{},"finish_reason":"stop"}]}',
     False),
    ('{"error":{"message":"overloaded","type":"server_error"}}', False),
    # not compact JSON: parsed, to be safe
    ('{"id": "c", "choices": [{"delta": {"content": "Hi"}, "finish_reason": null}]}', False),
    # no finish_reason key at all: parsed
    ('{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}', False),
    ('[DONE]', False),
    # text that talks about the keys is escaped, so it is still content
    ('{"choices":[{"delta":{"content":"\\"error\\": \\"usage\\":{"},"finish_reason":null}]}', True),
]

ANTHROPIC_CASES = [
    ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}',
     True),
    ("ping", '{"type": "ping"}', True),
    ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":6}}',
     False),
    ("message_stop", '{"type":"message_stop"}', False),
    ("error", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', False),
    ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
     False),
    # the event name says delta but the data is something else: parsed
    ("content_block_delta", '{"type":"error","error":{"type":"api_error","message":"x"}}', False),
]

GEMINI_CASES = [
    (None, '{"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"index": 0}],'
           '"usageMetadata": {"promptTokenCount": 3},"modelVersion": "gemini-2.5-flash"}', True),
    (None, '{"candidates": [{"content": {"parts": [{"text": "!"}],"role": "model"},"finishReason": "STOP"}]}',
     False),
    (None, '{"promptFeedback": {"blockReason": "SAFETY"}}', False),
    (None, '{"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}', False),
    ("raw", '{"candidates": []}', False),
]


@pytest.mark.parametrize("data,expected", OPENAI_CASES)
def test_openai_content_frames(data, expected):
    assert openai_chat.is_content_frame(Frame(None, data)) is expected


@pytest.mark.parametrize("event,data,expected", ANTHROPIC_CASES)
def test_anthropic_content_frames(event, data, expected):
    assert anthropic.is_content_frame(Frame(event, data)) is expected


@pytest.mark.parametrize("event,data,expected", GEMINI_CASES)
def test_gemini_content_frames(event, data, expected):
    assert gemini.is_content_frame(Frame(event, data)) is expected


def _frames(raw: bytes) -> list[Frame]:
    framer = SSEFramer()
    return framer.feed(raw) + framer.close()


def _outcome(module, request: ir.Request, frames: list[Frame]) -> tuple:
    parser = module.StreamParser(request)
    events: list = []
    for frame in frames:
        events += parser.feed(frame)
    events += parser.close()
    last = events[-1]
    if isinstance(last, ir.StreamError):
        return ("error", last.error.kind)
    assert isinstance(last, ir.MessageStop)
    return ("stop", last.finish_reason, last.usage)


REQUESTS = {
    openai_chat: openai_chat.parse_request({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                            "stream": True}),
    anthropic: anthropic.parse_request({"model": "m", "max_tokens": 10, "stream": True,
                                        "messages": [{"role": "user", "content": "hi"}]}),
    gemini: gemini.parse_request({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, model="m",
                                 stream=True),
}

INLINE_STREAMS = {
    "openai usage": (openai_chat, b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                     b'"finish_reason":null}],"usage":null}\n\n'
                     b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],'
                     b'"usage":null}\n\n'
                     b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":null}\n\n'
                     b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}\n\n'
                     b'data: [DONE]\n\n'),
    "openai cut short": (openai_chat, b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},'
                         b'"finish_reason":null}]}\n\n'),
    "anthropic cut short": (anthropic, b'event: message_start\ndata: {"type":"message_start","message":{"id":"m",'
                            b'"model":"x","usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
                            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                            b'"content_block":{"type":"text","text":""}}\n\n'
                            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                            b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'),
    "gemini": (gemini, b'data: {"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"}}],'
                       b'"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 1}}\n\n'
                       b'data: {"candidates": [{"content": {"parts": [{"text": "!"}],"role": "model"},'
                       b'"finishReason": "STOP"}],"usageMetadata": {"promptTokenCount": 4,'
                       b'"candidatesTokenCount": 2}}\n\n'),
}


@pytest.mark.parametrize("name", sorted(INLINE_STREAMS))
def test_skipping_content_frames_notices_the_same_end(name):
    module, raw = INLINE_STREAMS[name]
    frames = _frames(raw)
    watched = [f for f in frames if not module.is_content_frame(f)]
    assert len(watched) < len(frames)  # something was skipped
    assert _outcome(module, REQUESTS[module], watched) == _outcome(module, REQUESTS[module], frames)


@pytest.mark.parametrize("folder,module", [("openai-chat-streams", openai_chat), ("anthropic-streams", anthropic),
                                           ("gemini-streams", gemini)])
def test_real_streams_notice_the_same_end_with_content_frames_skipped(real_samples, folder, module):
    files = sorted((real_samples / folder).glob("*.sse"))
    assert files
    for path in files:
        frames = _frames(path.read_bytes())
        watched = [f for f in frames if not module.is_content_frame(f)]
        assert _outcome(module, REQUESTS[module], watched) == _outcome(module, REQUESTS[module], frames), path.name
