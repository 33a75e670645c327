"""The matrix's reader of OCI requests (scripts/matrix/upstream_oci.py): what it makes of a
ChatDetails body, and that it flags the faults a broken writer would make."""
from __future__ import annotations

from scripts.matrix.capabilities import Call, Result, TextPart, Turn
from scripts.matrix.upstream_oci import OCICohereUpstream

PATH = "/20231130/actions/chat"
CALL = {"name": "get_weather", "parameters": {"location": "Paris"}}
BODY = {"compartmentId": "ocid1.compartment.oc1..x",
        "servingMode": {"servingType": "ON_DEMAND", "modelId": "cohere.command-r-plus-08-2024"},
        "chatRequest": {"apiFormat": "COHERE", "message": "", "preambleOverride": "Be brief.",
                        "chatHistory": [{"role": "USER", "message": "Weather?"},
                                        {"role": "CHATBOT", "toolCalls": [CALL]}],
                        "toolResults": [{"call": CALL, "outputs": [{"output": "18°C and sunny"}]}],
                        "tools": [{"name": "get_weather", "description": "Get it", "parameterDefinitions": {
                            "location": {"description": "City name", "type": "str", "isRequired": True}}}],
                        "maxTokens": 16, "stopSequences": ["four"], "isStream": True,
                        "streamOptions": {"isIncludeUsage": True}}}


def test_a_chat_details_body_as_the_conversation_it_carries():
    v = OCICohereUpstream().view(BODY, PATH, {})
    assert (v.model, v.stream, v.system, v.max_tokens, v.stop) == (
        "cohere.command-r-plus-08-2024", True, "Be brief.", 16, ["four"])
    assert v.turns == [Turn("user", (TextPart("Weather?"),)), Turn("assistant", (Call("get_weather", {"location": "Paris"},
                                                                                   "get_weather"),)),
                       Turn("user", (Result('[{"output": "18°C and sunny"}]', "get_weather"),))]
    assert v.tools[0].schema == {"type": "object", "properties": {"location": {"type": "string",
                                                                               "description": "City name"}},
                                 "required": ["location"]}
    assert v.problems == []


def test_faults_are_flagged():
    chat = {**BODY["chatRequest"], "apiFormat": "GENERIC", "streamOptions": {}}
    body = {**BODY, "compartmentId": "", "servingMode": {"servingType": "DEDICATED"}, "chatRequest": chat}
    assert OCICohereUpstream().view(body, "/20231130/actions/generateText", {}).problems == [
        "path '/20231130/actions/generateText' is not /20231130/actions/chat",
        "servingMode {'servingType': 'DEDICATED'} is not ON_DEMAND",
        "ChatDetails has no compartmentId OCID",
        "apiFormat 'GENERIC' is not COHERE",
        "streamed upstream request did not ask for usage (streamOptions.isIncludeUsage)"]
