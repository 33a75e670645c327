"""The path rest transparent mode sends upstream: as written when it stays under its base,
refused (naming why) at whatever level of percent-encoding it would leave it."""
from __future__ import annotations

import pytest

from app.transparent_path import MAX_DECODINGS, PathRefused, checked_query, checked_rest


@pytest.mark.parametrize("rest", [
    "", "/", "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse-stream",
    "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude/converse",
    "/v1/messages/", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", "/v1/models/caf%C3%A9",
    "/a/%2541",  # a literal "%41" in a name: decodes to "A" one level further, harmlessly
])
def test_a_path_under_the_base_goes_on_exactly_as_written(rest):
    assert checked_rest(rest) == rest


def test_dot_segments_written_plainly_are_dropped():
    assert checked_rest("/model/./x/./converse") == "/model/x/converse"


@pytest.mark.parametrize("rest,why", [
    ("/../admin", "The path has a '..' segment; it may not leave the endpoint's base."),
    ("/model/..", "The path has a '..' segment; it may not leave the endpoint's base."),
    ("/%2e%2e/admin", "The path has a '..' segment once percent-decoded; it may not leave the endpoint's base."),
    ("/%2E/admin", "The path has a '.' segment once percent-decoded; it may not leave the endpoint's base."),
    ("/a/..%2F..%2Fadmin", "The path has a '..' segment once percent-decoded; it may not leave the endpoint's base."),
    ("/%252e%252e/admin", "The path has a '..' segment once percent-decoded 2 times; it may not leave the "
                          "endpoint's base."),
    ("/a/..%252F..", "The path has a '..' segment once percent-decoded 2 times; it may not leave the "
                     "endpoint's base."),
    ("/a%2F%2Fb", "The path has an empty segment ('//') once percent-decoded."),
    ("//evil.example/x", "The path has an empty segment ('//')."),
    ("/a%5Cb", "The path contains an encoded backslash (%5C)."),
    ("/a%255Cb", "The path holds a backslash once percent-decoded 2 times (an encoded '\\\\')."),
    ("/a\\b", "The path contains a backslash."),
    ("/http://evil.example/x", "The path holds an absolute URL (a scheme and '://'); only a path under the "
                               "endpoint is relayed."),
    ("/https%3A%2F%2Fevil.example", "The path holds an absolute URL (a scheme and '://') once percent-decoded; "
                                    "only a path under the endpoint is relayed."),
    ("/user@evil.example/x", "The path holds '@' (userinfo); it is not relayed."),
    ("/x%40evil.example", "The path holds '@' once percent-decoded (userinfo); it is not relayed."),
    ("/x%0D%0AHost:%20evil", "The path holds a control character once percent-decoded."),
    ("/x%00", "The path holds a control character once percent-decoded."),
    ("/x\x7f", "The path contains a control character."),
    ("/a b", "The path contains a character that must be percent-encoded (a space, a quote, non-ASCII text...)."),
    ("/caf\u00e9", "The path contains a character that must be percent-encoded (a space, a quote, non-ASCII "
                   "text...)."),
    ("/a%zz", "The path has a '%' that is not followed by two hex digits."),
    ("x", "The path must continue the endpoint path with '/'."),
    ("/%" + "25" * MAX_DECODINGS + "41", f"The path is percent-encoded more than {MAX_DECODINGS} times over."),
])
def test_a_path_leaving_its_base_is_refused_naming_why(rest, why):
    with pytest.raises(PathRefused) as caught:
        checked_rest(rest)
    assert str(caught.value) == why


def test_a_provider_may_allow_a_character_its_native_paths_hold():
    rest = "/v1/projects/p/locations/l/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    assert checked_rest(rest, frozenset("@")) == rest
    with pytest.raises(PathRefused):
        checked_rest(rest)
    with pytest.raises(PathRefused):  # never a way around the traversal checks
        checked_rest("/models/x@1/%2e%2e", frozenset("@"))


def test_a_query_goes_on_as_written_unless_it_holds_what_must_be_encoded():
    assert checked_query("beta=true&x=a%20b&path=/a?b") == "beta=true&x=a%20b&path=/a?b"
    for query, why in (("x=caf\u00e9", "The query string contains a character that must be percent-encoded."),
                       ("x=a\r\nb", "The query string contains a character that must be percent-encoded."),
                       ("x=%g1", "The query string has a '%' that is not followed by two hex digits.")):
        with pytest.raises(PathRefused) as caught:
            checked_query(query)
        assert str(caught.value) == why
