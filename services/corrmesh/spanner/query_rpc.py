"""The Query RPC: request checks, the engine's items as QueryResponses, and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.rpc import code_pb2
from pydicom import Dataset

from corrmesh.runtime.errors import (
    FieldViolations,
    abort,
    abort_invalid,
    abort_not_found,
    error_info_status,
    unavailable_status,
)
from corrmesh.spanner.datasets import LEVEL_KEYS, LEVEL_NAMES, from_proto, to_proto
from corrmesh.spanner.dedup import Folded
from corrmesh.spanner.engine import ConfigUnavailableError, EngineItem, QuerySpec
from corrmesh.spanner.store import NotFoundError
from corrmesh.v1 import spanner_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]


def check_identifier(
    level: int, model: int, identifier: Dataset, violations: FieldViolations
) -> Dataset:
    """Validates level and model and completes the identifier (level, level key)."""
    if level not in LEVEL_NAMES:
        violations.add("level", "must be PATIENT, STUDY, SERIES or IMAGE")
        return identifier
    if model not in (pb.INFORMATION_MODEL_PATIENT_ROOT, pb.INFORMATION_MODEL_STUDY_ROOT):
        violations.add("information_model", "must be PATIENT_ROOT or STUDY_ROOT")
    elif model == pb.INFORMATION_MODEL_STUDY_ROOT and level == pb.QUERY_LEVEL_PATIENT:
        violations.add("information_model", "STUDY_ROOT has no PATIENT level")
    identifier.QueryRetrieveLevel = LEVEL_NAMES[level]
    key = LEVEL_KEYS[level]
    if key not in identifier:
        setattr(identifier, key, "")
    return identifier


async def query_spec(request: pb.QueryRequest, context: Context) -> QuerySpec:
    """A QuerySpec from a valid request; INVALID_ARGUMENT naming each bad field otherwise."""
    violations = FieldViolations()
    if not request.config_id:
        violations.add("config_id", "is required")
    if request.limit < 0:
        violations.add("limit", "must not be negative")
    identifier, bad = from_proto(request.identifier)
    for path in bad:
        violations.add(path, "needs a known tag or keyword and a non-sequence VR")
    model = request.information_model or pb.INFORMATION_MODEL_STUDY_ROOT
    check_identifier(request.level, model, identifier, violations)
    if violations:
        await abort_invalid(context, violations)
    return QuerySpec(
        config_id=request.config_id,
        level=request.level,
        model=model,
        identifier=identifier,
        limit=request.limit,
        requested_by=context.peer() or "",
    )


async def check_retrieve(request: pb.RetrieveRequest, context: Context) -> None:
    """INVALID_ARGUMENT naming each field a Retrieve request is missing."""
    violations = FieldViolations()
    if not request.config_id:
        violations.add("config_id", "is required")
    if request.level not in (pb.QUERY_LEVEL_STUDY, pb.QUERY_LEVEL_SERIES, pb.QUERY_LEVEL_IMAGE):
        violations.add("level", "must be STUDY, SERIES or IMAGE")
    if not request.study_instance_uid:
        violations.add("study_instance_uid", "is required")
    if request.level >= pb.QUERY_LEVEL_SERIES and not request.series_instance_uid:
        violations.add("series_instance_uid", "is required at SERIES and IMAGE level")
    if request.level == pb.QUERY_LEVEL_IMAGE and not request.sop_instance_uids:
        violations.add("sop_instance_uids", "is required at IMAGE level")
    direct_get = (request.method, request.strategy) == (
        pb.RETRIEVE_METHOD_C_GET,
        pb.RETRIEVE_STRATEGY_DIRECT,
    )
    if not request.destination_ae_title and not direct_get:
        violations.add("destination_ae_title", "is required unless a DIRECT C-GET")
    if violations:
        await abort_invalid(context, violations)


def as_response(item: EngineItem) -> pb.QueryResponse:
    if isinstance(item, Folded):
        match = pb.QueryMatch(dataset=to_proto(item.dataset), node_ids=item.node_ids)
        match.dedup_key = item.key
        return pb.QueryResponse(match=match)
    if isinstance(item, pb.SourceStatus):
        return pb.QueryResponse(source_status=item)
    return pb.QueryResponse(summary=item)


async def stream_query(
    items: AsyncIterator[Any], config_id: str, context: Context
) -> AsyncIterator[Any]:
    """Engine items as QueryResponses (RetrieveResponses pass through); a FAILED query
    summary ends the call UNAVAILABLE, other errors become their statuses."""
    failed: pb.QuerySummary | None = None
    try:
        async for item in items:
            if isinstance(item, pb.RetrieveResponse):
                yield item
                continue
            if isinstance(item, pb.QuerySummary) and item.outcome == pb.OPERATION_OUTCOME_FAILED:
                failed = item
            yield as_response(item)
    except NotFoundError as exc:
        await abort_not_found(context, exc.resource_type, exc.resource_id)
    except ConfigUnavailableError as exc:
        await abort(
            context,
            error_info_status(
                code_pb2.FAILED_PRECONDITION, "CONFIG_UNAVAILABLE", str(exc), config_id=config_id
            ),
        )
    if failed is not None:
        errors = "; ".join(f"{s.ae_title}: {s.error}" for s in failed.sources if s.error)
        await abort(context, unavailable_status(f"spanning query failed ({errors})", 5.0))
