"""HTTP to providers: one pooled `requests.Session` per backend, timeouts, and
transport failures turned into ProxyErrors (never a traceback to the client)."""
from __future__ import annotations

import logging
from typing import Iterator

import requests
from requests.adapters import HTTPAdapter

from app.config import BackendConfig
from app.errors import ErrorKind, ProxyError
from app.protocols.base import UpstreamRequest

log = logging.getLogger("interchange.upstream")


class UpstreamClient:
    """Sends UpstreamRequests. Sessions are created once per backend and reused,
    so connections to a provider stay pooled across requests (and greenlets)."""

    def __init__(self, pool_size: int = 256):
        self._pool_size = pool_size
        self._sessions: dict[str, requests.Session] = {}

    def _session(self, backend: BackendConfig) -> requests.Session:
        s = self._sessions.get(backend.name)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # a proxy's upstream must not depend on the caller's HTTP_PROXY
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._pool_size, max_retries=0)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            self._sessions[backend.name] = s
        return s

    def send(self, backend: BackendConfig, req: UpstreamRequest) -> requests.Response:
        """Send and return the response with its body unread (`stream=True`), so a
        streamed reply can be relayed chunk by chunk."""
        try:
            return self._session(backend).request(
                req.method, req.url, data=req.body, headers=dict(req.headers), stream=True,
                timeout=(backend.connect_timeout, backend.timeout), allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout:
            raise ProxyError(ErrorKind.timeout, f"Timed out connecting to backend '{backend.name}'.",
                             provider=backend.name) from None
        except requests.exceptions.ReadTimeout:
            raise ProxyError(ErrorKind.timeout, f"Backend '{backend.name}' did not answer within "
                             f"{backend.timeout:g} s.", provider=backend.name) from None
        except requests.exceptions.RequestException as e:
            log.warning("backend %s unreachable: %s", backend.name, type(e).__name__)
            raise ProxyError(ErrorKind.bad_gateway, f"Could not reach backend '{backend.name}' "
                             f"({type(e).__name__}).", provider=backend.name) from None

    def close(self) -> None:
        for s in self._sessions.values():
            s.close()


def iter_body(resp: requests.Response, backend: BackendConfig) -> Iterator[bytes]:
    """The upstream body as it arrives; transport failures mid-body become ProxyErrors."""
    try:
        # Yield whatever the socket delivers, never waiting to fill a buffer:
        # chunked replies chunk by chunk, others by what read1 has at hand.
        raw = resp.raw
        if raw.chunked:
            yield from raw.read_chunked(None, decode_content=True)
        else:
            while True:
                data = raw.read1(65536, decode_content=True)
                if not data:
                    break
                yield data
    except (requests.exceptions.ReadTimeout, TimeoutError) as e:
        raise ProxyError(ErrorKind.timeout, f"Backend '{backend.name}' stalled mid-response "
                         f"(no data for {backend.timeout:g} s).", provider=backend.name) from e
    except Exception as e:  # urllib3 protocol errors, connection resets
        if "timed out" in str(e).lower():
            raise ProxyError(ErrorKind.timeout, f"Backend '{backend.name}' stalled mid-response "
                             f"(no data for {backend.timeout:g} s).", provider=backend.name) from e
        raise ProxyError(ErrorKind.bad_gateway, f"Connection to backend '{backend.name}' broke "
                         f"mid-response ({type(e).__name__}).", provider=backend.name) from e
    finally:
        resp.close()


def read_body(resp: requests.Response, backend: BackendConfig, limit: int = 256 * 1024 * 1024) -> bytes:
    """The whole upstream body (non-streamed replies), bounded."""
    parts: list[bytes] = []
    size = 0
    for chunk in iter_body(resp, backend):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            resp.close()
            raise ProxyError(ErrorKind.bad_gateway, f"Backend '{backend.name}' reply exceeds {limit} bytes.")
    return b"".join(parts)
