"""What the services' HTTP listeners (uvicorn) share: the parser and the socket."""

from __future__ import annotations

import socket

#: uvicorn's HTTP/1.1 parser: httptools (llhttp, in C) takes about a sixth off
#: Ingest's CPU per alert against h11 (make bench, webhook row).
HTTP_PARSER = "httptools"


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (so a bad port fails at start, and 0 works).

    Its connections have Nagle's algorithm off. asyncio turns it off only on
    sockets made with ``proto=IPPROTO_TCP``; with it on, uvicorn writing a
    response's head and body separately waits for the client's delayed ACK,
    about 40 ms a request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock
