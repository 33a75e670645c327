"""The shape every provider has.

A provider knows where one configured backend's calls go and how they are
authorised: the URL layout per action, static headers, the credential (an API
key, a bearer token, an OAuth2 token it fetches and caches, a SigV4 signature
over the exact bytes sent), small body tweaks its API needs on top of the wire
format, and the stream framing it answers with. It knows nothing of any wire
format's content: the wire module (app/protocols/<wire>) builds the body, the
provider places it.

One instance per backend, built when the app is built (a class missing a
piece fails then, not at request time); instances hold what must outlive a
request (a token cache, AWS credentials).
"""
from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from app.base_url import BaseUrl, BaseUrlError, normalise_base_url
from app.errors import redact_url
from app.jsonutil import dumps
from app.protocols.base import UpstreamRequest

if TYPE_CHECKING:
    from app.upstream.http import ClientLink, UpstreamClient, UpstreamResponse

GENERATE = "generate"
COUNT_TOKENS = "count_tokens"


@dataclass(frozen=True, slots=True)
class Call:
    """One upstream call as the pipeline asks for it, before a provider places it."""
    model: str  # the provider's model id
    body: Mapping[str, Any]  # the wire body, as the wire module built it
    stream: bool = False
    action: str = GENERATE
    headers: Mapping[str, str] = field(default_factory=dict)  # client headers this backend forwards


@dataclass(frozen=True, slots=True)
class Setting:
    """A backend config key a provider kind reads, beyond the common ones."""
    type: type
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()  # the values allowed, when it is one of a few
    minimum: int | None = None  # the least value allowed (numbers)


class Provider(ABC):
    kind: ClassVar[str]  # the config `kind` ("azure_openai")
    wire: ClassVar[str]  # the protocol module it speaks (a name in app.protocols.MODULES)
    framing: ClassVar[str] = "sse"  # a name in app.upstream.framing.FRAMERS
    actions: ClassVar[frozenset[str]] = frozenset({GENERATE})
    settings: ClassVar[Mapping[str, Setting]] = {}
    url_required: ClassVar[bool] = True  # False: derived from settings (a region, a location)
    uses_api_key: ClassVar[bool] = True  # False: authorised otherwise (OAuth2, SigV4)
    api_key_optional: ClassVar[bool] = False  # True: a backend without api_key/api_key_env sends none (local Ollama)
    # Wire options every backend of this kind gets (under its config `options`, which win):
    # how this provider's dialect of the wire differs (OpenRouter's `reasoning` object).
    wire_options: ClassVar[Mapping[str, Any]] = {}
    # Characters this provider's native paths hold that transparent mode otherwise refuses
    # in a client's path (app/transparent.py): Vertex's `model@version`.
    native_path_chars: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, backend) -> None:  # backend: app.config.BackendConfig
        self.backend = backend

    @classmethod
    def base_url(cls, url: str) -> BaseUrl:
        """The configured `url` as the base this kind's paths extend (at config load)."""
        return normalise_base_url(cls.wire, url)

    @abstractmethod
    def prepare(self, call: Call) -> UpstreamRequest:
        """The HTTP request for `call`: URL, headers, body bytes, then `authorise` (last)."""

    @abstractmethod
    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        """`request` with this provider's credentials applied, whatever built it: any credential
        it carries (a client's, in any scheme) removed, then the key or token header set, or a
        signature computed over its exact method, URL, headers and body. The one way this
        provider's requests are authorised: `prepare` ends with it, and transparent mode
        (app/transparent.py) applies it to a client's native request."""

    def native_base(self) -> str:
        """The base URL this provider's native API paths extend (transparent mode sends a
        client's path under it): the configured `url`, or the default the kind derives from
        its settings (a region, a location)."""
        return self.backend.url

    def exchange(self, call: Call, client: "UpstreamClient", client_link: "ClientLink | None" = None
                 ) -> "UpstreamResponse":
        """The upstream reply to `call`, its body unread. One request for most providers; one
        whose exchange takes more (a queued job polled until it ends) overrides this and
        returns an object of the same shape: `status_code`, `headers`, `iter_raw()`, `close(reuse)`."""
        return self.send(lambda: self.prepare(call), client, client_link)

    def send(self, build: Callable[[], UpstreamRequest], client: "UpstreamClient",
             client_link: "ClientLink | None" = None) -> "UpstreamResponse":
        """The reply to the authorised request `build()` makes, its body unread.

        A 401 to a credential this provider fetched and cached (a token revoked before its
        expiry) renews it and replays the request once, built again (so signed or authorised
        anew); a second 401 goes to the client."""
        request = build()
        resp = client.send(self.backend, request, client_link)
        if resp.status_code == 401 and self.forget_credentials(request):
            resp.close(reuse=False)
            resp = client.send(self.backend, build(), client_link)
        return resp

    def forget_credentials(self, refused: UpstreamRequest) -> bool:
        """The upstream refused `refused` (401): drop the cached credential it carried, if that
        is still the one in use, so the next `prepare` fetches another (requests refused together
        share one renewal). True when a replay is worth it; a static key or token has nothing
        to renew."""
        return False

    def secrets(self) -> tuple[str, ...]:
        """What must never reach a client or a log (credentials in use)."""
        key = self.backend.resolved_key()
        return (key,) if key else ()

    def setting(self, name: str, default: Any = None) -> Any:
        return self.backend.settings.get(name, default)


class FetchedTokenProvider(Provider):
    """A provider authorised by a bearer token it fetches and caches (a Google OAuth2 token,
    an IBM IAM token): `self._token` has token() (cached, renewed near expiry), current()
    (the one in use, or None) and forget(refused) (drop it if it is still the refused one).
    A 401 to that token renews it once (exchange's rule)."""
    _token: Any

    def authorise(self, request: UpstreamRequest) -> UpstreamRequest:
        return with_credentials(request, {"Authorization": "Bearer " + self._token.token()})

    def forget_credentials(self, refused: UpstreamRequest) -> bool:
        return self._token.forget(bearer_token(refused))


def base_before(url: str, tail: re.Pattern, how: str) -> BaseUrl:
    """`url` without a pasted endpoint `tail` (at config load), noting `how` requests go
    when something was dropped."""
    if "?" in url or "#" in url:
        raise BaseUrlError("must not carry a query or fragment (?… / #…)")
    url = url.rstrip("/")
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    match = tail.search(slash + path)
    if match is None:
        return BaseUrl(url)
    base = f"{scheme}://{host}" + (slash + path)[: match.start()]
    return BaseUrl(base, f"{redact_url(url)} understood as base {redact_url(base)} ({how})")


# Credentials (and request-signing headers) a client may send us: never passed
# upstream, whatever a backend's forward_headers allowlist says, whichever
# scheme the provider itself authorises with.
NEVER_FORWARDED = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key",
                             "cookie", "host", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"})


def merge_headers(own: Mapping[str, str], forwarded: Mapping[str, str]) -> dict[str, str]:
    """The forwarded client headers, less credentials and any name `own` has (in any
    letter case), then `own`: the provider's own headers always win."""
    taken = {k.lower() for k in own}
    headers = {k: v for k, v in forwarded.items() if (low := k.lower()) not in taken and low not in NEVER_FORWARDED}
    headers.update(own)
    return headers


def with_credentials(request: UpstreamRequest, own: Mapping[str, str]) -> UpstreamRequest:
    """`request` with every credential it carries removed (NEVER_FORWARDED) and `own` (the
    provider's key or token header) set, winning over any spelling of its names."""
    return dataclasses.replace(request, headers=merge_headers(own, request.headers))


def bearer_token(request: UpstreamRequest) -> str | None:
    """The bearer token `request` carries (the one a 401 refused), if any."""
    value = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
    return value[len("Bearer "):] if value.startswith("Bearer ") else None


def json_request(url: str, own: Mapping[str, str], call: Call, body: Mapping[str, Any] | None = None,
                 method: str = "POST") -> UpstreamRequest:
    """A JSON POST, not yet authorised: `own` headers win over the forwarded client headers
    in any letter case."""
    if not any(k.lower() == "content-type" for k in own):
        own = {"Content-Type": "application/json", **own}
    return UpstreamRequest(method, url, merge_headers(own, call.headers), dumps(call.body if body is None else body),
                           stream=call.stream)
