"""Channels from one service to another: traced, authenticated, TLS when set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from corrmesh.runtime.server import MAX_MESSAGE_BYTES
from corrmesh.runtime.settings import Settings
from corrmesh.runtime.tls import channel_credentials


def _with_token(details: grpc.aio.ClientCallDetails, header: tuple[str, str]) -> Any:
    metadata = list(details.metadata or ())
    metadata.append(header)
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


# grpc.aio files an interceptor under the first call shape it implements only,
# so each shape needs its own class.
class _TokenUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, header: tuple[str, str]) -> None:
        self.header = header

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self.header), request)


class _TokenUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, header: tuple[str, str]) -> None:
        self.header = header

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self.header), request)


class _TokenStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, header: tuple[str, str]) -> None:
        self.header = header

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self.header), request_iterator)


class _TokenStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, header: tuple[str, str]) -> None:
        self.header = header

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self.header), request_iterator)


def bearer_token_interceptors(token: str) -> list[Any]:
    """Client interceptors adding ``authorization: Bearer <token>`` to every call."""
    header = ("authorization", f"Bearer {token}")
    return [
        _TokenUnaryUnary(header),
        _TokenUnaryStream(header),
        _TokenStreamUnary(header),
        _TokenStreamStream(header),
    ]


def open_channel(
    address: str, settings: Settings | None = None, traced: bool = True
) -> grpc.aio.Channel:
    """An aio channel to ``address`` with OpenTelemetry client spans.

    With ``settings``, the channel uses its TLS CA (and client pair for mTLS)
    and presents its client token.
    """
    interceptors: list[Any] = list(aio_client_interceptors()) if traced else []
    if settings is not None and settings.client_token:
        interceptors.extend(bearer_token_interceptors(settings.client_token))
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # Peers restart; reconnect quickly rather than backing off for minutes.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    credentials = channel_credentials(settings) if settings is not None else None
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
