"""SpannerService over gRPC: the configuration API, spanning Query and Retrieve,
the query log, service status and listener control.
"""

# The servicer's method names are the RPC names the generated base class defines.
# ruff: noqa: N802

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2

from corrmesh.runtime.errors import (
    FieldViolations,
    abort,
    abort_invalid,
    abort_not_found,
    error_info_status,
)
from corrmesh.runtime.paging import filter_fingerprint
from corrmesh.runtime.settings import Settings
from corrmesh.spanner import validation
from corrmesh.spanner.engine import SpannerEngine
from corrmesh.spanner.listeners import LISTENER_IDS, ListenerManager
from corrmesh.spanner.masks import (
    CONFIG_MASK,
    MAPPING_MASK,
    NODE_MASK,
    MaskRules,
    apply_mask,
    resolve_mask,
)
from corrmesh.spanner.pages import page_request, page_token_for
from corrmesh.spanner.query_rpc import check_retrieve, query_spec, stream_query
from corrmesh.spanner.retrieve import Retriever
from corrmesh.spanner.store import (
    AlreadyExistsError,
    InUseError,
    InvalidError,
    NotFoundError,
    SpannerStore,
)
from corrmesh.v1 import spanner_pb2 as pb
from corrmesh.v1 import spanner_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
M = TypeVar("M", bound=Message)


class SpannerServicer(spanner_pb2_grpc.SpannerServiceServicer):
    """Answers SpannerService calls from a :class:`SpannerStore`."""

    def __init__(
        self,
        store: SpannerStore,
        settings: Settings,
        engine: SpannerEngine,
        retriever: Retriever,
        listeners: ListenerManager,
    ) -> None:
        self.store = store
        self.settings = settings
        self.engine = engine
        self.retriever = retriever
        self.listeners = listeners

    # Spanner configurations.

    async def CreateSpannerConfig(
        self, request: pb.CreateSpannerConfigRequest, context: Context
    ) -> pb.CreateSpannerConfigResponse:
        config = await _creatable(
            context, request.config, "config", CONFIG_MASK.immutable,
            validation.validate_config, validation.apply_config_defaults,
        )  # fmt: skip
        created = await self._call(context, self.store.create_config, config)
        return pb.CreateSpannerConfigResponse(config=created)

    async def GetSpannerConfig(
        self, request: pb.GetSpannerConfigRequest, context: Context
    ) -> pb.GetSpannerConfigResponse:
        await _require_id(context, "config_id", request.config_id)
        config = await self._call(context, self.store.get_config, request.config_id)
        return pb.GetSpannerConfigResponse(config=config)

    async def ListSpannerConfigs(
        self, request: pb.ListSpannerConfigsRequest, context: Context
    ) -> pb.ListSpannerConfigsResponse:
        fingerprint = filter_fingerprint("spanner_configs")
        size, after = await page_request(
            context, request.page_size, request.page_token, fingerprint
        )
        configs, position = await self._call(context, self.store.list_configs, after, size)
        return pb.ListSpannerConfigsResponse(
            configs=configs, next_page_token=page_token_for(position, fingerprint)
        )

    async def UpdateSpannerConfig(
        self, request: pb.UpdateSpannerConfigRequest, context: Context
    ) -> pb.UpdateSpannerConfigResponse:
        change = await _updater(
            context, request.config, "config", request.update_mask, CONFIG_MASK,
            validation.validate_config,
        )  # fmt: skip
        config = await self._call(
            context, self.store.update_config, request.config.config_id, change
        )
        return pb.UpdateSpannerConfigResponse(config=config)

    async def DeleteSpannerConfig(
        self, request: pb.DeleteSpannerConfigRequest, context: Context
    ) -> pb.DeleteSpannerConfigResponse:
        await _require_id(context, "config_id", request.config_id)
        await self._call(context, self.store.delete_config, request.config_id)
        return pb.DeleteSpannerConfigResponse()

    # DICOM nodes.

    async def CreateDicomNode(
        self, request: pb.CreateDicomNodeRequest, context: Context
    ) -> pb.CreateDicomNodeResponse:
        node = await _creatable(
            context, request.node, "node", NODE_MASK.immutable, validation.validate_node
        )
        created = await self._call(context, self.store.create_node, node)
        return pb.CreateDicomNodeResponse(node=created)

    async def GetDicomNode(
        self, request: pb.GetDicomNodeRequest, context: Context
    ) -> pb.GetDicomNodeResponse:
        await _require_id(context, "node_id", request.node_id)
        node = await self._call(context, self.store.get_node, request.node_id)
        return pb.GetDicomNodeResponse(node=node)

    async def ListDicomNodes(
        self, request: pb.ListDicomNodesRequest, context: Context
    ) -> pb.ListDicomNodesResponse:
        fingerprint = filter_fingerprint("dicom_nodes")
        size, after = await page_request(
            context, request.page_size, request.page_token, fingerprint
        )
        nodes, position = await self._call(context, self.store.list_nodes, after, size)
        return pb.ListDicomNodesResponse(
            nodes=nodes, next_page_token=page_token_for(position, fingerprint)
        )

    async def UpdateDicomNode(
        self, request: pb.UpdateDicomNodeRequest, context: Context
    ) -> pb.UpdateDicomNodeResponse:
        change = await _updater(
            context, request.node, "node", request.update_mask, NODE_MASK,
            validation.validate_node,
        )  # fmt: skip
        node = await self._call(context, self.store.update_node, request.node.node_id, change)
        return pb.UpdateDicomNodeResponse(node=node)

    async def DeleteDicomNode(
        self, request: pb.DeleteDicomNodeRequest, context: Context
    ) -> pb.DeleteDicomNodeResponse:
        await _require_id(context, "node_id", request.node_id)
        await self._call(context, self.store.delete_node, request.node_id)
        return pb.DeleteDicomNodeResponse()

    # Source mappings.

    async def AddSourceMapping(
        self, request: pb.AddSourceMappingRequest, context: Context
    ) -> pb.AddSourceMappingResponse:
        mapping = await _creatable(
            context, request.mapping, "mapping", ("mapping_id",),
            validation.validate_mapping, validation.apply_mapping_defaults,
        )  # fmt: skip
        added = await self._call(context, self.store.add_mapping, mapping)
        return pb.AddSourceMappingResponse(mapping=added)

    async def ListSourceMappings(
        self, request: pb.ListSourceMappingsRequest, context: Context
    ) -> pb.ListSourceMappingsResponse:
        await _require_id(context, "config_id", request.config_id)
        mappings = await self._call(context, self.store.list_mappings, request.config_id)
        return pb.ListSourceMappingsResponse(mappings=mappings)

    async def UpdateSourceMapping(
        self, request: pb.UpdateSourceMappingRequest, context: Context
    ) -> pb.UpdateSourceMappingResponse:
        change = await _updater(
            context, request.mapping, "mapping", request.update_mask, MAPPING_MASK,
            validation.validate_mapping,
        )  # fmt: skip
        mapping = await self._call(
            context, self.store.update_mapping, request.mapping.mapping_id, change
        )
        return pb.UpdateSourceMappingResponse(mapping=mapping)

    async def RemoveSourceMapping(
        self, request: pb.RemoveSourceMappingRequest, context: Context
    ) -> pb.RemoveSourceMappingResponse:
        await _require_id(context, "mapping_id", request.mapping_id)
        await self._call(context, self.store.remove_mapping, request.mapping_id)
        return pb.RemoveSourceMappingResponse()

    # Audit and status.

    async def ListQueryLogs(
        self, request: pb.ListQueryLogsRequest, context: Context
    ) -> pb.ListQueryLogsResponse:
        """Newest first. A config_id filter need not name a live configuration:
        the audit trail outlives the configurations it records."""
        await self.engine.flush_audits()  # this process's own operations are listed
        fingerprint = filter_fingerprint("query_logs", request.config_id)
        size, after = await page_request(
            context, request.page_size, request.page_token, fingerprint
        )
        logs, position = await self._call(
            context, self.store.list_query_logs, request.config_id, after, size
        )
        return pb.ListQueryLogsResponse(
            logs=logs, next_page_token=page_token_for(position, fingerprint)
        )

    async def GetServiceStatus(
        self, request: pb.GetServiceStatusRequest, context: Context
    ) -> pb.GetServiceStatusResponse:
        return pb.GetServiceStatusResponse(
            listeners=self.listeners.all(), sources=self.engine.health.snapshot()
        )

    # Not yet implemented: the spanning engine and listener control.

    async def Query(
        self, request: pb.QueryRequest, context: Context
    ) -> AsyncIterator[pb.QueryResponse]:
        spec = await query_spec(request, context)
        async for response in stream_query(self.engine.query(spec), spec.config_id, context):
            yield response

    async def Retrieve(
        self, request: pb.RetrieveRequest, context: Context
    ) -> AsyncIterator[pb.RetrieveResponse]:
        await check_retrieve(request, context)
        async for response in stream_query(
            self.retriever.retrieve(request), request.config_id, context
        ):
            yield response

    async def StartListeners(
        self, request: pb.StartListenersRequest, context: Context
    ) -> pb.StartListenersResponse:
        ids = await _listener_ids(context, request.listener_ids)
        return pb.StartListenersResponse(listeners=[await self.listeners.start(i) for i in ids])

    async def StopListeners(
        self, request: pb.StopListenersRequest, context: Context
    ) -> pb.StopListenersResponse:
        ids = await _listener_ids(context, request.listener_ids)
        return pb.StopListenersResponse(listeners=[await self.listeners.stop(i) for i in ids])

    async def RestartListener(
        self, request: pb.RestartListenerRequest, context: Context
    ) -> pb.RestartListenerResponse:
        ids = await _listener_ids(context, [request.listener_id], required=True)
        return pb.RestartListenerResponse(listener=await self.listeners.restart(ids[0]))

    async def _call(self, context: Context, work: Callable[..., T], *args: Any) -> T:
        """Runs blocking store work off the event loop; store errors become statuses."""
        try:
            return await asyncio.to_thread(work, *args)
        except NotFoundError as exc:
            await abort_not_found(context, exc.resource_type, exc.resource_id)
        except AlreadyExistsError as exc:
            await abort(
                context,
                error_info_status(
                    code_pb2.ALREADY_EXISTS,
                    "ALREADY_EXISTS",
                    exc.message,
                    resource_type=exc.resource_type,
                ),
            )
        except InUseError as exc:
            message = f"{exc.resource_type} {exc.resource_id!r} is used by source mappings"
            if exc.used_by:
                message += " of SpannerConfig " + ", ".join(repr(c) for c in exc.used_by)
            await abort(
                context,
                error_info_status(
                    code_pb2.FAILED_PRECONDITION,
                    "RESOURCE_IN_USE",
                    message + "; remove those mappings first",
                    resource_type=exc.resource_type,
                    resource_id=exc.resource_id,
                    used_by=",".join(exc.used_by),
                ),
            )
        except InvalidError as exc:
            await abort_invalid(context, exc.violations)


async def _listener_ids(context: Context, ids: Any, required: bool = False) -> list[str]:
    """The named listeners (all when none are named); NOT_FOUND names an unknown one."""
    chosen = [i for i in ids if i]
    if required and not chosen:
        await abort_invalid(context, [("listener_id", "is required")])
    for listener_id in chosen:
        if listener_id not in LISTENER_IDS:
            await abort_not_found(context, "Listener", listener_id)
    return chosen or list(LISTENER_IDS)


async def _require_id(context: Context, field: str, value: str) -> None:
    if not value:
        await abort_invalid(context, [(field, "is required")])


async def _creatable(
    context: Context,
    requested: M,
    prefix: str,
    output_only: Iterable[str],
    validate: Callable[[M, FieldViolations], None],
    defaults: Callable[[M], None] | None = None,
) -> M:
    """A copy of ``requested`` without its output-only fields, with defaults, validated."""
    resource = type(requested)()
    resource.CopyFrom(requested)
    for name in output_only:
        resource.ClearField(name)
    if defaults is not None:
        defaults(resource)
    violations = FieldViolations(prefix=prefix)
    validate(resource, violations)
    if violations:
        await abort_invalid(context, violations)
    return resource


async def _updater(
    context: Context,
    requested: M,
    prefix: str,
    mask: field_mask_pb2.FieldMask,
    rules: MaskRules,
    validate: Callable[[M, FieldViolations], None],
) -> Callable[[M], M]:
    """Checks an Update request and returns the change to apply to the stored resource.

    The change copies the masked fields from ``requested`` onto the stored
    resource and validates the result, raising InvalidError (inside the store's
    transaction, so nothing is written) when it is not a valid resource.
    """
    violations = FieldViolations()
    if not getattr(requested, rules.id_field):
        violations.add(f"{prefix}.{rules.id_field}", "is required")
    paths = resolve_mask(mask, rules, violations)
    if violations:
        await abort_invalid(context, violations)

    def change(current: M) -> M:
        apply_mask(requested, current, paths)
        problems = FieldViolations(prefix=prefix)
        validate(current, problems)
        if problems:
            raise InvalidError(problems.items)
        return current

    return change
