"""gRPC errors with rich details (google.rpc.Status), as every service returns them.

INVALID_ARGUMENT carries a ``BadRequest`` naming each bad field, NOT_FOUND a
``ResourceInfo`` naming the resource, UNAVAILABLE a ``RetryInfo``. Messages must
never contain PHI: callers pass field paths and ids, not values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "corrmesh.dev"


@dataclass
class FieldViolations:
    """Collects bad fields while validating a request, then reports them at once."""

    prefix: str = ""
    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, description: str) -> None:
        full = f"{self.prefix}.{path}" if self.prefix and path else (self.prefix or path)
        self.items.append((full, description))

    def nested(self, prefix: str) -> FieldViolations:
        """A collector that writes into this one under ``prefix``."""
        child = FieldViolations(prefix=f"{self.prefix}.{prefix}" if self.prefix else prefix)
        child.items = self.items
        return child

    def __bool__(self) -> bool:
        return bool(self.items)

    def to_status(self, message: str = "") -> status_pb2.Status:
        """The google.rpc.Status for these violations (INVALID_ARGUMENT)."""
        return bad_request_status(self.items, message)


def _pack(detail: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)  # type: ignore[arg-type]
    return packed


def bad_request_status(
    violations: Iterable[tuple[str, str]], message: str = ""
) -> status_pb2.Status:
    """An INVALID_ARGUMENT status naming each field; the message lists the fields too."""
    items = list(violations)
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in items
        ]
    )
    text = message or "invalid " + ", ".join(f"{f}: {d}" for f, d in items)
    return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=text, details=[_pack(detail)])


def not_found_status(resource_type: str, name: str) -> status_pb2.Status:
    detail = error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=name)
    return status_pb2.Status(
        code=code_pb2.NOT_FOUND,
        message=f"{resource_type} {name!r} not found",
        details=[_pack(detail)],
    )


def unavailable_status(message: str, retry_after_seconds: float = 1.0) -> status_pb2.Status:
    seconds = int(retry_after_seconds)
    delay = duration_pb2.Duration(seconds=seconds, nanos=int((retry_after_seconds - seconds) * 1e9))
    return status_pb2.Status(
        code=code_pb2.UNAVAILABLE,
        message=message,
        details=[_pack(error_details_pb2.RetryInfo(retry_delay=delay))],
    )


def error_info_status(code: int, reason: str, message: str, **metadata: str) -> status_pb2.Status:
    detail = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
    return status_pb2.Status(code=code, message=message, details=[_pack(detail)])


async def abort(
    context: grpc.aio.ServicerContext[object, object], status: status_pb2.Status
) -> NoReturn:
    """Ends the call with ``status`` and its details in the trailers."""
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


async def abort_invalid(
    context: grpc.aio.ServicerContext[object, object],
    violations: FieldViolations | Iterable[tuple[str, str]],
) -> NoReturn:
    items = violations.items if isinstance(violations, FieldViolations) else list(violations)
    await abort(context, bad_request_status(items))


async def abort_not_found(
    context: grpc.aio.ServicerContext[object, object], resource_type: str, name: str
) -> NoReturn:
    await abort(context, not_found_status(resource_type, name))


def field_violation_names(status: status_pb2.Status) -> list[str]:
    """The field names of the BadRequest details in a google.rpc.Status."""
    names: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            names.extend(v.field for v in bad.field_violations)
    return names


def bad_request_fields(error: grpc.aio.AioRpcError | grpc.RpcError) -> list[str]:
    """The field names of a BadRequest carried by a client-side error (for callers and tests)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    return [] if status is None else field_violation_names(status)
