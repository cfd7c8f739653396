"""The baseline: a gRPC server that receives the same Publish messages and does nothing.

Run as a separate process, like Ingest, so the bench compares like with like:
``python -m tests.bench.bare_server PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc

from corrmesh.runtime.server import MAX_MESSAGE_BYTES
from corrmesh.v1 import ingest_pb2

METHOD = "/bench.Bare/Publish"


async def _publish(request: ingest_pb2.PublishRequest, context: Any) -> ingest_pb2.PublishResponse:
    return ingest_pb2.PublishResponse(accepted_count=len(request.events))


async def main(port: int) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    handler = grpc.unary_unary_rpc_method_handler(
        _publish,
        request_deserializer=ingest_pb2.PublishRequest.FromString,
        response_serializer=ingest_pb2.PublishResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("bench.Bare", {"Publish": handler})]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
