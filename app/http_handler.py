"""The client-facing HTTP/1.1 connection: gevent's WSGI handler, made strict,
bounded in time, aware of a client that leaves, and cheaper per request.

- The request head is read and checked by app.http_head (RFC 9112 framing);
  a refused head is answered with a small JSON error (no frontend is known
  yet) and the connection closed, never a traceback in the log.
- Deadlines without a timer per request (`_Deadlines`): one greenlet sweeps
  the connections; one waiting for its next request longer than the
  keep-alive timeout is closed, one whose head has started but not ended
  within the head timeout (a slowloris) is dropped.
- `ClientConnection` (environ[CONNECTION_KEY]): the pipeline's upstream call
  asks it to be aborted if the client closes the connection while that call
  is in flight (waiting for the first byte, or a silent stream).
- TCP_NODELAY on every connection, and the headers and a small first body
  piece in one send (gevent writes them as two; with Nagle the second waits
  for the client's delayed ACK, 40 ms on Linux); no access-log line formatted
  for a log that is off.
- `Connection: close` among other options is honoured, and said in the reply.
- environ["RAW_URI"] is the request target as sent, still percent-encoded, as
  gunicorn's workers give it (transparent mode checks that, app/transparent.py).
"""
from __future__ import annotations

import logging
import socket
import time
from typing import Callable

import gevent
from gevent.pywsgi import WSGIHandler, _NoopLog

from app.http_head import MAX_REQUEST_LINE, STATUS_TEXT, HeadError, read_head
from app.jsonutil import dumps

log = logging.getLogger("interchange.http")

CONNECTION_KEY = "interchange.connection"  # the environ key of the request's ClientConnection

_COALESCE_LIMIT = 256 * 1024
_MAX_EMPTY_LINES = 4  # CRLFs before a request line, which RFC 9112 2.2 asks a server to ignore
_LINGER_SECONDS = 1.0  # after a refusal: read what the client still sends, so the close is no reset
_LINGER_BYTES = 1024 * 1024

# What a connection is doing, for the deadlines.
_BUSY, _IDLE, _HEAD = 0, 1, 2

_monotonic = time.monotonic


def handler_class(head_timeout: float, keepalive_timeout: float) -> type[WSGIHandler]:
    """The handler class for gevent's WSGIServer, with these deadlines (seconds)."""
    deadlines = _Deadlines(head_timeout, keepalive_timeout)
    return type("Handler", (Handler,), {"deadlines": deadlines})


class ClientConnection:
    """The client's side of the request being served, as its upstream call sees
    it. `on_gone(abort)` asks for `abort()` to be called if the client closes
    the connection while that call is in flight; `on_gone(None)` withdraws it.

    Nothing is watched until asked: then an io watcher on the client socket
    fires when it turns readable. End of file or a reset means the client is
    gone; data means its next, pipelined request, and the watch ends (the
    client is there). A client that half-closes after its request counts as
    gone, as in nginx."""

    __slots__ = ("_handler", "_abort", "gone", "_done")

    def __init__(self, handler: "Handler"):
        self._handler = handler
        self._abort: Callable[[], None] | None = None
        self.gone = False
        self._done = False  # the watch is over (pipelined data seen, or the request ended)

    def on_gone(self, abort: Callable[[], None] | None) -> None:
        if self.gone:
            if abort is not None:
                abort()
            return
        self._abort = abort
        if self._done:
            return
        watcher = self._handler.client_watcher(create=abort is not None)
        if watcher is None:
            return
        if abort is None:
            watcher.stop()
        elif not watcher.active:
            watcher.start(self._readable)

    def cut(self) -> None:
        """Break the reply off: the connection is shut down, so a reply whose body could not be
        relayed whole reaches the client as broken (no final chunk), never as finished."""
        self._handler.close_connection = True
        try:
            self._handler.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass

    def end(self) -> None:
        """The request is over: stop watching."""
        self._done = True
        self._abort = None
        watcher = self._handler.client_watcher(create=False)
        if watcher is not None:
            watcher.stop()

    def _readable(self) -> None:
        """Runs in gevent's hub: must not block."""
        try:
            raw = self._handler.socket._sock
            try:
                data = raw.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return  # woken for nothing: keep watching
            except OSError:
                data = b""  # reset
            self._handler.client_watcher().stop()
            if data:
                self._done = True
                return
            self.gone = True
            abort, self._abort = self._abort, None
            log.debug("client %s closed the connection during an upstream call; abandoning it",
                      _address(self._handler.client_address))
            if abort is not None:
                abort()
        except Exception:  # never let the hub print a traceback for this
            log.exception("client disconnect watch failed")


class Handler(WSGIHandler):
    deadlines: "_Deadlines"  # set per server by handler_class()
    _phase = _BUSY
    _since = 0.0
    _expired = False
    _watcher = None  # the io watcher on the client socket, created on first use

    # ------------------------------------------------------------ connection

    def handle(self):
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # not TCP (a Unix socket): nothing to tune
        self.deadlines.add(self)
        try:
            return super().handle()
        finally:
            self.deadlines.discard(self)
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None

    def expire(self) -> None:
        """Called by the deadlines: drop the connection (the blocked read wakes with end of file)."""
        if self._phase == _HEAD:
            log.info("request head from %s not complete within %g s; connection dropped",
                     _address(self.client_address), self.deadlines.head_timeout)
        self._expired = True
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass

    def client_watcher(self, create: bool = True):
        watcher = self._watcher
        if watcher is None and create and self.socket is not None:
            watcher = self._watcher = gevent.get_hub().loop.io(self.socket.fileno(), 1)  # 1: readable
        return watcher

    # ------------------------------------------------------------ one request

    def handle_one_request(self):
        rfile = self.rfile
        if rfile.closed:
            return None
        self._phase, self._since = _IDLE, _monotonic()
        try:
            for _ in range(_MAX_EMPTY_LINES + 1):
                if not rfile.peek(1) or self._expired:
                    return None  # closed by the client, or idle past the keep-alive timeout
                if self._phase == _IDLE:
                    self._phase, self._since = _HEAD, _monotonic()
                line = rfile.readline(MAX_REQUEST_LINE + 1)
                if line != b"\r\n" and line != b"\n":
                    break
            head = read_head(line, rfile.readline)
        except HeadError as e:
            if self._expired:
                return None
            return self._refuse(e)
        except OSError:
            return None
        finally:
            self._phase = _BUSY
        if head is None or self._expired:
            return None
        self.requestline = line.decode("latin-1").rstrip("\r\n")
        self.command, self.path, self.request_version = head.method, head.target, head.version
        self.headers = head.headers
        self.content_length = head.content_length
        self.close_connection = head.close
        self.response_length = 0
        self.environ = self.get_environ()
        self.environ["RAW_URI"] = head.target  # as sent, still percent-encoded (gunicorn's name for it)
        self.application = self.server.application
        connection = self.environ[CONNECTION_KEY] = ClientConnection(self)
        try:
            self.handle_one_response()
        finally:
            connection.end()
        if self.close_connection or rfile.closed:
            return None
        return True

    def _refuse(self, err: HeadError):
        """Answer a refused head with a small JSON error, then close without a reset."""
        log.info("refused a request from %s: %d %s", _address(self.client_address), err.status, err.message)
        kind = "request_too_large" if err.status in (414, 431) else "invalid_request_error"
        body = dumps({"error": {"message": err.message, "type": kind, "code": err.status}})
        head = (f"HTTP/1.1 {err.status} {STATUS_TEXT[err.status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("latin-1")
        try:
            self.socket.sendall(head + body)
            self.socket.shutdown(socket.SHUT_WR)
            # Unread request bytes would make the close a reset, which can
            # destroy the answer before the client reads it.
            with gevent.Timeout(_LINGER_SECONDS, False):
                drained = 0
                while drained < _LINGER_BYTES:
                    data = self.socket.recv(65536)
                    if not data:
                        break
                    drained += len(data)
        except OSError:
            pass
        return None

    # ------------------------------------------------------------ the reply

    def log_request(self):
        # gevent formats an access-log line (a datetime, string formatting)
        # even when the log is its no-op one (log=None).
        if not isinstance(self.server.log, _NoopLog):
            super().log_request()

    def finalize_headers(self):
        super().finalize_headers()
        if self.close_connection and self.request_version == "HTTP/1.1" and \
                not any(k.lower() == b"connection" for k, _ in self.response_headers):
            self.response_headers.append((b"Connection", b"close"))

    def _write_with_headers(self, data):
        if not data or len(data) > _COALESCE_LIMIT:
            return super()._write_with_headers(data)
        self.headers_sent = True
        self.finalize_headers()
        towrite = bytearray(b"HTTP/1.1 ")
        towrite += self.status
        towrite += b"\r\n"
        for header, value in self.response_headers:
            towrite += header
            towrite += b": "
            towrite += value
            towrite += b"\r\n"
        towrite += b"\r\n"
        if self.response_use_chunked:
            towrite += b"%x\r\n" % len(data)
            towrite += data
            towrite += b"\r\n"
        else:
            towrite += data
        self._sendall(towrite)


class _Deadlines:
    """Keep-alive and request-head timeouts, kept by one greenlet that sweeps
    the open connections every quarter of the shorter timeout (at most 1 s),
    so no request arms a timer. A deadline is noticed between timeout and
    timeout + a quarter of it."""

    def __init__(self, head_timeout: float, keepalive_timeout: float):
        self.head_timeout = head_timeout
        self.keepalive_timeout = keepalive_timeout
        self._interval = max(0.02, min(1.0, min(head_timeout, keepalive_timeout) / 4))
        self._handlers: set[Handler] = set()
        self._sweeper: gevent.Greenlet | None = None

    def add(self, handler: Handler) -> None:
        self._handlers.add(handler)
        if self._sweeper is None:
            self._sweeper = gevent.spawn(self._run)

    def discard(self, handler: Handler) -> None:
        self._handlers.discard(handler)

    def _run(self) -> None:
        while True:
            gevent.sleep(self._interval)
            try:
                self.sweep(_monotonic())
            except Exception:  # the deadlines must outlive a bug in one sweep
                log.exception("request deadline sweep failed")

    def sweep(self, now: float) -> None:
        head, idle = self.head_timeout, self.keepalive_timeout
        for handler in list(self._handlers):
            phase = handler._phase
            if phase == _IDLE and now - handler._since > idle or phase == _HEAD and now - handler._since > head:
                handler.expire()


def _address(address) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address or "-")
