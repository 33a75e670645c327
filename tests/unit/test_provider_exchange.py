"""Provider.exchange, the one place an upstream call may become more than one request:
a 401 to a credential the provider fetched and cached renews it and replays the call
once; a static credential, or a second 401, is the client's answer as it came."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from app.providers.base import Call, Provider, bearer_token
from app.protocols.base import UpstreamRequest


@dataclass
class Reply:
    status_code: int
    closed: list[bool] = field(default_factory=list)

    def close(self, reuse: bool = True) -> None:
        self.closed.append(reuse)


class ScriptedClient:
    """Answers each send with the next status, recording the Authorization header sent."""

    def __init__(self, statuses: list[int]):
        self.statuses, self.sent, self.replies = list(statuses), [], []

    def send(self, backend, req: UpstreamRequest, client_link=None) -> Reply:
        self.sent.append(req.headers["Authorization"])
        self.replies.append(Reply(self.statuses.pop(0)))
        return self.replies[-1]


class TokenProvider(Provider):
    """A bearer token fetched on demand (a counter stands in for the token endpoint)."""
    kind, wire = "test", "openai"

    def __init__(self, renewable: bool):
        super().__init__(backend=None)
        self.renewable, self.fetched, self.cached = renewable, 0, None

    def prepare(self, call: Call) -> UpstreamRequest:
        return self.authorise(UpstreamRequest("POST", "http://upstream/x", {}, b"{}"))

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        if self.cached is None:
            self.fetched += 1
            self.cached = f"token-{self.fetched}"
        return UpstreamRequest(request.method, request.url, {**request.headers, "Authorization": self.cached},
                               request.body)

    def forget_credentials(self, refused: UpstreamRequest) -> bool:
        if not self.renewable:
            return False
        if self.cached == refused.headers["Authorization"]:
            self.cached = None
        return True


CALL = Call(model="m", body={})


@pytest.mark.parametrize("statuses,renewable,sent,status", [
    ([200], True, ["token-1"], 200),
    ([401, 200], True, ["token-1", "token-2"], 200),  # refused, renewed, replayed once
    ([401, 401], True, ["token-1", "token-2"], 401),  # the replay refused too: the client's error
    ([401], False, ["token-1"], 401),  # nothing to renew: no replay
    ([403], True, ["token-1"], 403),  # only a 401 says the credential is stale
])
def test_a_refused_token_is_renewed_and_the_call_replayed_once(statuses, renewable, sent, status):
    client, provider = ScriptedClient(statuses), TokenProvider(renewable)
    resp = provider.exchange(CALL, client)
    assert (client.sent, resp.status_code) == (sent, status)
    assert resp is client.replies[-1]
    assert [r.closed for r in client.replies[:-1]] == [[False]] * (len(sent) - 1)  # the refused reply dropped


def test_a_request_built_elsewhere_is_authorised_and_renewed_by_the_same_rule():
    # Transparent mode: the client's native request, authorised by the provider's one hook.
    native = UpstreamRequest("GET", "http://upstream/native?x=1", {"Accept": "application/json"}, b"")
    client, provider = ScriptedClient([401, 200]), TokenProvider(renewable=True)
    resp = provider.send(lambda: provider.authorise(native), client)
    assert (client.sent, resp.status_code) == (["token-1", "token-2"], 200)


def test_the_base_provider_has_nothing_to_renew():
    assert Provider.forget_credentials(TokenProvider(True), UpstreamRequest("POST", "http://u/x", {}, b"")) is False


def test_bearer_token_reads_the_refused_requests_authorization():
    assert bearer_token(UpstreamRequest("POST", "http://u", {"authorization": "Bearer t-1"}, b"")) == "t-1"
    assert bearer_token(UpstreamRequest("POST", "http://u", {"api-key": "k"}, b"")) is None
