"""HTTP to providers: one urllib3 pool per backend, timeouts, and transport
failures turned into ProxyErrors (never a traceback to the client).

urllib3 directly rather than `requests`: the proxy sends one request shape (a
POST of bytes it built) and reads the reply as it arrives, so requests'
session machinery (settings merging, cookie jars, hooks, redirects) is pure
cost on the hot path, while urllib3 keeps the HTTP/1.1, TLS and pooling code
that the rest of the Python world runs on.
"""
from __future__ import annotations

import logging
from typing import Iterator

import certifi
import urllib3
from urllib3.exceptions import (ConnectTimeoutError, HTTPError, MaxRetryError, NewConnectionError,
                                ProtocolError, ReadTimeoutError)

from app.config import BackendConfig
from app.errors import ErrorKind, ProxyError
from app.protocols.base import UpstreamRequest

log = logging.getLogger("interchange.upstream")

_READ_SIZE = 256 * 1024


class UpstreamResponse:
    """Status, headers (case-insensitive) and the body as it arrives."""

    __slots__ = ("status_code", "headers", "_resp")

    def __init__(self, resp: urllib3.BaseHTTPResponse):
        self._resp = resp
        self.status_code = resp.status
        self.headers = resp.headers

    def close(self) -> None:
        self._resp.release_conn() if self._resp.isclosed() else self._resp.close()


class UpstreamClient:
    """Sends UpstreamRequests; one connection pool per backend, created once and
    shared by every greenlet, so connections to a provider stay warm."""

    def __init__(self, pool_size: int = 1024):
        self._pool_size = pool_size
        self._pools: dict[str, urllib3.PoolManager] = {}

    def _pool(self, backend: BackendConfig) -> urllib3.PoolManager:
        pool = self._pools.get(backend.name)
        if pool is None:
            pool = self._pools[backend.name] = urllib3.PoolManager(
                num_pools=4, maxsize=self._pool_size, block=False, retries=False,
                ca_certs=certifi.where(),
                timeout=urllib3.Timeout(connect=backend.connect_timeout, read=backend.timeout))
        return pool

    def send(self, backend: BackendConfig, req: UpstreamRequest) -> UpstreamResponse:
        """Send and return the reply with its body unread, so a stream can be relayed as it comes."""
        try:
            resp = self._pool(backend).request(req.method, req.url, body=req.body, headers=dict(req.headers),
                                               preload_content=False, decode_content=True, redirect=False)
        except (ConnectTimeoutError, MaxRetryError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ConnectTimeoutError) or isinstance(e, ConnectTimeoutError):
                raise ProxyError(ErrorKind.timeout, f"Timed out connecting to backend '{backend.name}'.",
                                 provider=backend.name) from None
            if isinstance(reason, ReadTimeoutError):
                raise _stalled_before_reply(backend) from None
            raise _unreachable(backend, type(reason).__name__) from None
        except ReadTimeoutError:
            raise _stalled_before_reply(backend) from None
        except (NewConnectionError, ProtocolError, HTTPError, OSError) as e:
            raise _unreachable(backend, type(e).__name__) from None
        return UpstreamResponse(resp)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.clear()


def _stalled_before_reply(backend: BackendConfig) -> ProxyError:
    return ProxyError(ErrorKind.timeout, f"Backend '{backend.name}' did not answer within {backend.timeout:g} s.",
                      provider=backend.name)


def _unreachable(backend: BackendConfig, name: str) -> ProxyError:
    log.warning("backend %s unreachable: %s", backend.name, name)
    return ProxyError(ErrorKind.bad_gateway, f"Could not reach backend '{backend.name}' ({name}).",
                      provider=backend.name)


def iter_body(resp: UpstreamResponse, backend: BackendConfig) -> Iterator[bytes]:
    """The body as it arrives (whatever the socket has, never waiting to fill a
    buffer); transport failures mid-body become ProxyErrors."""
    raw = resp._resp
    try:
        if raw.chunked:
            yield from raw.read_chunked(None, decode_content=True)
        else:
            while data := raw.read1(_READ_SIZE, decode_content=True):
                yield data
    except ReadTimeoutError as e:
        raise ProxyError(ErrorKind.timeout, f"Backend '{backend.name}' stalled mid-response "
                         f"(no data for {backend.timeout:g} s).", provider=backend.name) from e
    except (ProtocolError, HTTPError, OSError) as e:
        raise ProxyError(ErrorKind.bad_gateway, f"Connection to backend '{backend.name}' broke "
                         f"mid-response ({type(e).__name__}).", provider=backend.name) from e
    finally:
        resp.close()


def read_body(resp: UpstreamResponse, backend: BackendConfig, limit: int = 256 * 1024 * 1024) -> bytes:
    """The whole body (non-streamed replies), bounded."""
    parts: list[bytes] = []
    size = 0
    for chunk in iter_body(resp, backend):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ProxyError(ErrorKind.bad_gateway, f"Backend '{backend.name}' reply exceeds {limit} bytes.")
    return b"".join(parts)
