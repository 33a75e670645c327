"""A do-nothing TCP relay, for reference: what any hop between client and mock costs."""
from __future__ import annotations

import socket
from typing import Callable


def relay_connection(down: socket.socket, up_host: str, up_port: int,
                     on_upstream_data: Callable[[bytes], None] | None = None) -> None:
    """One accepted connection relayed to (up_host, up_port), bytes in, bytes
    out, one greenlet per direction (the caller has monkey-patched);
    `on_upstream_data` sees each upstream read before it is passed on."""
    import gevent

    def pump(src: socket.socket, dst: socket.socket, observe: Callable[[bytes], None] | None) -> None:
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                if observe is not None:
                    observe(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s_ in (src, dst):
                try:
                    s_.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    down.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        up = socket.create_connection((up_host, up_port))
    except OSError:
        down.close()
        return
    up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    g = gevent.spawn(pump, down, up, None)
    pump(up, down, on_upstream_data)
    g.join()
    up.close()
    down.close()


def relay_main(argv: list[str]) -> int:
    """A TCP relay that does no work (bytes in, bytes out, one greenlet per
    direction): what any proxy in its own process costs on this machine, as a
    floor for the proxy's added latency and per-chunk delay."""
    from gevent import monkey
    monkey.patch_all()
    from gevent.server import StreamServer

    up_host, up_port = argv[0], int(argv[1])
    port = int(argv[2]) if len(argv) > 2 else 0

    def handle(down: socket.socket, _addr) -> None:
        relay_connection(down, up_host, up_port)

    server = StreamServer(("127.0.0.1", port), handle, backlog=8192)
    server.init_socket()
    print(f"TCP relay listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
