"""Bearer-token authentication with ``read`` and ``write`` scopes.

Tokens come from a file of lines ``<token> <scope>[,<scope>] [subject]``
(``#`` starts a comment). A call without a known token is UNAUTHENTICATED; a
call to a mutating method without the ``write`` scope is PERMISSION_DENIED.
Health checks and server reflection stay open so probes and tools work.

Which methods mutate is decided by name, following the API design guide's
verbs: Get, List, Watch, Find, Explain, Analyze, Subscribe, Relate and Query
read; everything else writes.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

READ_SCOPE = "read"
WRITE_SCOPE = "write"
READ_VERBS = (
    "Get",
    "List",
    "Watch",
    "Find",
    "Explain",
    "Analyze",
    "Subscribe",
    "Relate",
    "Query",
)
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]


def load_tokens(path: str | Path) -> dict[str, Principal]:
    """Parses a token file; raises ValueError naming the line of a bad entry."""
    tokens: dict[str, Principal] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f"{path}:{number}: expected '<token> <scopes> [subject]'")
        scopes = frozenset(s for s in parts[1].split(",") if s)
        unknown = scopes - {READ_SCOPE, WRITE_SCOPE}
        if unknown:
            raise ValueError(f"{path}:{number}: unknown scope(s) {sorted(unknown)}")
        subject = parts[2] if len(parts) > 2 else f"token-{number}"
        tokens[parts[0]] = Principal(subject=subject, scopes=scopes)
    return tokens


def required_scope(method: str) -> str | None:
    """The scope ``/pkg.Service/Method`` needs, or None for open services."""
    if method.startswith(OPEN_SERVICES):
        return None
    name = method.rsplit("/", 1)[-1]
    return READ_SCOPE if name.startswith(READ_VERBS) else WRITE_SCOPE


def _denying_handler(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that fails with ``code``.

    The shape must match the method's, or gRPC cannot answer the call at all.
    """

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, des, ser)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, des, ser)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming, des, ser)
    return grpc.unary_unary_rpc_method_handler(unary, des, ser)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Checks ``authorization: Bearer <token>`` against the scopes a method needs."""

    def __init__(self, tokens: Mapping[str, Principal]) -> None:
        self._tokens = dict(tokens)

    def _lookup(self, presented: str) -> Principal | None:
        for token, principal in self._tokens.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                return principal
        return None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        scope = required_scope(method)
        handler = await continuation(handler_call_details)
        if scope is None or handler is None:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        header = str(metadata.get("authorization", ""))
        presented = header[7:].strip() if header.lower().startswith("bearer ") else ""
        principal = self._lookup(presented) if presented else None
        if principal is None:
            return _denying_handler(
                handler, grpc.StatusCode.UNAUTHENTICATED, "missing or unknown bearer token"
            )
        if scope not in principal.scopes:
            return _denying_handler(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method.rsplit('/', 1)[-1]} needs the {scope!r} scope",
            )
        return handler
