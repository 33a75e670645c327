"""The request pipeline every emulated provider shares: authenticate the
way the provider does, parse and validate strictly, pick a scenario, log,
replay. Each provider module subclasses `Provider` with its own rules,
envelopes and framing."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import Response

from mocks import replay
from mocks.aws_credentials import TemporaryCredentials
from mocks.google_oauth import TokenIssuer
from mocks.request_log import (MAX_LOGGED_BODY, LoggedRequest, RequestLog, credential_digests, redact_headers,
                                redact_query)
from mocks.scenarios import Scenario, ScenarioFrame, ScenarioLibrary
from mocks.wire import ApiError, parse_json, stable_id

SCENARIO_HEADER = "X-Mock-Scenario"


@dataclass
class MockState:
    """What the routes share: the fixtures, the request log, the OAuth2 tokens and the
    temporary AWS credentials issued."""
    library: ScenarioLibrary
    log: RequestLog
    tokens: TokenIssuer = field(default_factory=TokenIssuer)
    aws: TemporaryCredentials = field(default_factory=TemporaryCredentials)


@dataclass
class Call:
    """One request to a provider endpoint, as the pipeline sees it."""
    method: str
    path: str
    query: dict[str, str]
    headers: Any  # werkzeug Headers: case-insensitive
    raw_body: bytes
    too_large: bool = False
    socket: Any = None
    body: Any = None
    model: str | None = None
    stream: bool = False
    scenario: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # provider-specific parse results

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if value is None else value.strip()


class Provider(ABC):
    """One emulated API. Subclasses supply the rules; this class runs them."""

    name: str = ""
    # Whose fixtures it replays: a provider that speaks another's wire format at
    # other URLs with other auth (Azure OpenAI, Vertex) replays that one's.
    scenario_set: str = ""

    @property
    def scenarios_of(self) -> str:
        return self.scenario_set or self.name

    # ----------------------------------------------------------- rules
    @abstractmethod
    def authenticate(self, call: Call) -> None:
        """Raise the provider's auth error unless the call carries a usable key."""

    @abstractmethod
    def invalid_json(self, call: Call, detail: str) -> ApiError:
        """The error for a body that is not a JSON object."""

    @abstractmethod
    def too_large(self, call: Call) -> ApiError:
        """The error for a body over the size limit."""

    @abstractmethod
    def validate(self, call: Call) -> None:
        """Reject what the real API rejects; set call.model and call.stream."""

    @abstractmethod
    def detect(self, call: Call) -> str:
        """The scenario a request implies when no header names one."""

    @abstractmethod
    def error(self, status: int, message: str, call: Call) -> ApiError:
        """A generic error in this provider's envelope (unknown scenario, 404, ...)."""

    # ----------------------------------------------------------- rendering
    @abstractmethod
    def encode_body(self, body: Any, status: int, call: Call) -> bytes: ...

    @abstractmethod
    def stream_writer(self, call: Call) -> replay.StreamWriter: ...

    def body_content_type(self, call: Call) -> str:
        return "application/json"

    def stream_content_type(self, call: Call) -> str:
        return "text/event-stream; charset=utf-8"

    def response_headers(self, call: Call) -> dict[str, str]:
        """Headers every reply carries (request ids)."""
        return {}

    def select_frames(self, frames: list[ScenarioFrame], call: Call) -> list[ScenarioFrame]:
        """Drop frames the request did not ask for (e.g. OpenAI's usage chunk)."""
        return frames

    def select_body(self, body: Any, call: Call) -> Any:
        """Same as select_frames, for the non-streamed body."""
        return body

    def placeholders(self, call: Call) -> Callable[[str, str | None], str]:
        """Values for `{{model}}` and `{{id}}` / `{{id:salt}}` in fixtures: ids are a
        hash of the request, so the same request always gets the same bytes."""
        seed = call.path.encode() + b"\n" + call.raw_body
        values = {("model", None): call.model or ""}

        def lookup(name: str, salt: str | None) -> str:
            value = values.get((name, salt))
            if value is None:
                if name != "id":
                    raise KeyError(f"unknown fixture placeholder {{{{{name}}}}}")
                value = values[(name, salt)] = stable_id(seed, salt or "")
            return value
        return lookup

    def error_response(self, err: ApiError, call: Call) -> Response:
        headers = {**self.response_headers(call), **err.headers}
        return Response(self.encode_body(err.body, err.status, call), status=err.status, headers=headers,
                        content_type=self.body_content_type(call))

    # ----------------------------------------------------------- pipeline
    def parse(self, call: Call) -> None:
        if call.too_large:
            raise self.too_large(call)
        try:
            body = parse_json(call.raw_body)
        except ValueError as exc:
            raise self.invalid_json(call, str(exc)) from None
        if not isinstance(body, dict):
            raise self.invalid_json(call, "the body is not a JSON object")
        call.body = body

    def choose_scenario(self, call: Call, library: ScenarioLibrary) -> Scenario:
        requested = call.header(SCENARIO_HEADER)
        if requested:
            scenario = library.get(self.scenarios_of, requested)
            if scenario is None:
                known = ", ".join(library.names(self.scenarios_of))
                raise self.error(400, f"Unknown mock scenario {requested!r} for {self.name}. Known scenarios: {known}.",
                                 call)
            return scenario
        name = self.detect(call)
        scenario = library.get(self.scenarios_of, name)
        if scenario is None:
            raise self.error(500, f"The mock has no {self.scenarios_of}/{name} scenario fixture.", call)
        return scenario

    def handle_generation(self, call: Call, state: MockState) -> Response:
        """Auth, parse, validate, choose, log, replay."""
        try:
            self.authenticate(call)
            self.parse(call)
            self.validate(call)
            scenario = self.choose_scenario(call, state.library)
        except ApiError as err:
            return self.reject(err, call, state)
        call.scenario = scenario.name
        print(f"Detected scenario: {self.name}/{scenario.name}", flush=True)
        response = replay.respond(self, scenario, call)
        self.record(call, state, response.status_code)
        return response

    def handle_simple(self, call: Call, state: MockState, answer: Callable[[Call], Response],
                      parse_body: bool = False) -> Response:
        """Non-generating endpoints (model lists, token counts): auth (+ body), then `answer`."""
        try:
            self.authenticate(call)
            if parse_body:
                self.parse(call)
            response = answer(call)
        except ApiError as err:
            return self.reject(err, call, state)
        self.record(call, state, response.status_code)
        return response

    def reject(self, err: ApiError, call: Call, state: MockState) -> Response:
        call.scenario = None
        message = err.body if not isinstance(err.body, (dict, list)) else str(err.body)[:300]
        print(f"Rejected {self.name} request {call.method} {call.path}: {err.status} {message}", flush=True)
        self.record(call, state, err.status)
        return self.error_response(err, call)

    def record(self, call: Call, state: MockState, status: int) -> None:
        body = call.body
        if body is None and call.raw_body and len(call.raw_body) <= MAX_LOGGED_BODY:
            try:
                body = parse_json(call.raw_body)
            except ValueError:
                body = None
        if len(call.raw_body) > MAX_LOGGED_BODY:
            body = None
        state.log.record(LoggedRequest(
            provider=self.name, method=call.method, path=call.path, query=redact_query(call.query),
            headers=redact_headers(call.headers), body=body, body_bytes=len(call.raw_body),
            scenario=call.scenario, stream=call.stream, status=status, credentials=credential_digests(call.headers),
            # SigV4: the region the request was signed for (its Authorization header is redacted).
            extra={"signed_region": call.notes["region"]} if "region" in call.notes else {},
        ))
