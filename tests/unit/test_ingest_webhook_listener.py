"""The webhook listener's socket: connections without Nagle's algorithm."""

from __future__ import annotations

import asyncio
import socket

from corrmesh.runtime.web import listening_socket


def test_accepted_connections_have_nagle_off() -> None:
    # Otherwise uvicorn writing a response's head and body separately waits
    # for the client's delayed ACK (about 40 ms a request).
    server = listening_socket("127.0.0.1", 0)
    try:
        assert server.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only then
        with socket.create_connection(server.getsockname()[:2]):
            accepted, _peer = server.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        server.close()


async def test_asyncio_servers_on_it_keep_nagle_off() -> None:
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connection(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        nodelay.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connection, sock=listening_socket("127.0.0.1", 0))
    async with server:
        host, port = server.sockets[0].getsockname()[:2]
        _reader, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(nodelay, 10)
        writer.close()
