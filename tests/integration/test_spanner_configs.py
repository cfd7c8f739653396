"""SpannerConfig create/get/list/update/delete over gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import duration_pb2

from corrmesh.runtime.errors import bad_request_fields
from corrmesh.v1 import spanner_pb2 as pb
from tests.support.spanner import (
    create_config,
    create_node,
    fails,
    mask,
    resource_info,
)

if TYPE_CHECKING:
    from corrmesh.v1.spanner_pb2_grpc import SpannerServiceAsyncStub as Stub


# Spanner configurations.


async def test_config_lifecycle(spanner: Stub) -> None:
    created = await create_config(
        spanner,
        description="primary",
        supports_qido=True,
        cache_ttl=duration_pb2.Duration(seconds=60),
    )
    uuid.UUID(created.config_id)
    # Create-time defaults.
    assert created.max_concurrent_sources == 5
    assert created.query_timeout == duration_pb2.Duration(seconds=30)
    assert created.failure_strategy == pb.FAILURE_STRATEGY_BEST_EFFORT
    assert created.deduplication_strategy == pb.DEDUPLICATION_STRATEGY_MOST_COMPLETE
    assert created.supports_qido and not created.supports_wado
    assert created.cache_ttl.seconds == 60
    assert created.create_time == created.update_time and created.create_time.seconds > 0

    got = await spanner.GetSpannerConfig(pb.GetSpannerConfigRequest(config_id=created.config_id))
    assert got.config == created
    listed = await spanner.ListSpannerConfigs(pb.ListSpannerConfigsRequest())
    assert list(listed.configs) == [created] and listed.next_page_token == ""

    await spanner.DeleteSpannerConfig(pb.DeleteSpannerConfigRequest(config_id=created.config_id))
    error = await fails(
        spanner.GetSpannerConfig(pb.GetSpannerConfigRequest(config_id=created.config_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert resource_info(error) == ("SpannerConfig", created.config_id)
    await fails(
        spanner.DeleteSpannerConfig(pb.DeleteSpannerConfigRequest(config_id=created.config_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert not (await spanner.ListSpannerConfigs(pb.ListSpannerConfigsRequest())).configs


async def test_create_ignores_output_only_fields(spanner: Stub) -> None:
    created = await create_config(spanner, config_id="mine")
    assert created.config_id != "mine"


async def test_masked_update_changes_only_masked_fields(spanner: Stub) -> None:
    created = await create_config(spanner, description="before", supports_cmove=True)
    request = pb.SpannerConfig(
        config_id=created.config_id,
        description="after",
        name="ignored because not masked",
        max_concurrent_sources=9,
    )
    updated = (
        await spanner.UpdateSpannerConfig(
            pb.UpdateSpannerConfigRequest(
                config=request, update_mask=mask("description", "max_concurrent_sources")
            )
        )
    ).config
    assert updated.description == "after" and updated.max_concurrent_sources == 9
    assert updated.name == created.name and updated.supports_cmove
    assert updated.query_timeout == created.query_timeout
    assert updated.create_time == created.create_time
    assert updated.update_time.ToNanoseconds() > created.update_time.ToNanoseconds()
    stored = await spanner.GetSpannerConfig(pb.GetSpannerConfigRequest(config_id=created.config_id))
    assert stored.config == updated


async def test_empty_mask_replaces_every_mutable_field(spanner: Stub) -> None:
    created = await create_config(spanner, description="old", supports_wado=True)
    replacement = pb.SpannerConfig(
        config_id=created.config_id,
        name="Renamed",
        max_concurrent_sources=3,
        query_timeout=duration_pb2.Duration(seconds=10),
        failure_strategy=pb.FAILURE_STRATEGY_MINIMUM_THRESHOLD,
        minimum_success_threshold=2,
        deduplication_strategy=pb.DEDUPLICATION_STRATEGY_MERGE_ALL,
        enabled=True,
        cache_ttl=duration_pb2.Duration(),  # responses always carry the (zero) duration
    )
    updated = (
        await spanner.UpdateSpannerConfig(pb.UpdateSpannerConfigRequest(config=replacement))
    ).config
    assert updated.description == "" and not updated.supports_wado
    expected = pb.SpannerConfig()
    expected.CopyFrom(replacement)
    expected.create_time.CopyFrom(created.create_time)
    expected.update_time.CopyFrom(updated.update_time)
    assert updated == expected

    # A full replace does not apply create defaults: unset required values are errors.
    error = await fails(
        spanner.UpdateSpannerConfig(
            pb.UpdateSpannerConfigRequest(
                config=pb.SpannerConfig(config_id=created.config_id, name="x")
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(bad_request_fields(error)) == {
        "config.max_concurrent_sources",
        "config.query_timeout",
        "config.failure_strategy",
        "config.deduplication_strategy",
    }


@pytest.mark.parametrize("path", ["config_id", "create_time", "update_time", "no_such_field"])
async def test_update_rejects_bad_mask_paths(spanner: Stub, path: str) -> None:
    created = await create_config(spanner)
    error = await fails(
        spanner.UpdateSpannerConfig(
            pb.UpdateSpannerConfigRequest(
                config=pb.SpannerConfig(config_id=created.config_id, description="x"),
                update_mask=mask("description", path),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == ["update_mask"]
    unchanged = await spanner.GetSpannerConfig(
        pb.GetSpannerConfigRequest(config_id=created.config_id)
    )
    assert unchanged.config == created


async def test_update_producing_invalid_config_is_rejected_and_not_stored(spanner: Stub) -> None:
    created = await create_config(spanner)
    error = await fails(
        spanner.UpdateSpannerConfig(
            pb.UpdateSpannerConfigRequest(
                config=pb.SpannerConfig(
                    config_id=created.config_id,
                    failure_strategy=pb.FAILURE_STRATEGY_MINIMUM_THRESHOLD,
                    query_timeout=duration_pb2.Duration(seconds=-1),
                ),
                update_mask=mask("failure_strategy", "query_timeout"),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == ["config.query_timeout", "config.minimum_success_threshold"]
    stored = await spanner.GetSpannerConfig(pb.GetSpannerConfigRequest(config_id=created.config_id))
    assert stored.config == created


async def test_update_needs_an_existing_id(spanner: Stub) -> None:
    error = await fails(
        spanner.UpdateSpannerConfig(
            pb.UpdateSpannerConfigRequest(
                config=pb.SpannerConfig(name="x"), update_mask=mask("name")
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == ["config.config_id"]
    await fails(
        spanner.UpdateSpannerConfig(
            pb.UpdateSpannerConfigRequest(
                config=pb.SpannerConfig(config_id=str(uuid.uuid4()), name="x"),
                update_mask=mask("name"),
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_config_names_are_unique(spanner: Stub) -> None:
    first = await create_config(spanner, "A")
    await create_config(spanner, "B")
    await fails(create_config(spanner, "A"), grpc.StatusCode.ALREADY_EXISTS)
    await fails(
        spanner.UpdateSpannerConfig(
            pb.UpdateSpannerConfigRequest(
                config=pb.SpannerConfig(config_id=first.config_id, name="B"),
                update_mask=mask("name"),
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    # Keeping one's own name is no clash.
    same = await spanner.UpdateSpannerConfig(
        pb.UpdateSpannerConfigRequest(
            config=pb.SpannerConfig(config_id=first.config_id, name="A", description="d"),
            update_mask=mask("name", "description"),
        )
    )
    assert same.config.description == "d"


async def test_create_config_names_each_bad_field(spanner: Stub) -> None:
    error = await fails(
        spanner.CreateSpannerConfig(
            pb.CreateSpannerConfigRequest(
                config=pb.SpannerConfig(
                    max_concurrent_sources=-1,
                    query_timeout=duration_pb2.Duration(seconds=-5),
                    failure_strategy=pb.FAILURE_STRATEGY_MINIMUM_THRESHOLD,
                    cache_ttl=duration_pb2.Duration(seconds=-1),
                )
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == [
        "config.name",
        "config.max_concurrent_sources",
        "config.query_timeout",
        "config.minimum_success_threshold",
        "config.cache_ttl",
    ]
    # The server keeps serving.
    assert (await create_config(spanner)).config_id


async def test_config_paging(spanner: Stub) -> None:
    created = [await create_config(spanner, f"config-{i}") for i in range(5)]
    seen: list[pb.SpannerConfig] = []
    token = ""
    pages = 0
    while True:
        page = await spanner.ListSpannerConfigs(
            pb.ListSpannerConfigsRequest(page_size=2, page_token=token)
        )
        pages += 1
        seen.extend(page.configs)
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert [c.config_id for c in seen] == [c.config_id for c in created]


async def test_list_rejects_bad_paging(spanner: Stub) -> None:
    error = await fails(
        spanner.ListSpannerConfigs(
            pb.ListSpannerConfigsRequest(page_size=-1, page_token="garbage!")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == ["page_size", "page_token"]
    # A node listing's token is not a config listing's token.
    await create_node(spanner, "a")
    await create_node(spanner, "b")
    nodes = await spanner.ListDicomNodes(pb.ListDicomNodesRequest(page_size=1))
    error = await fails(
        spanner.ListSpannerConfigs(pb.ListSpannerConfigsRequest(page_token=nodes.next_page_token)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == ["page_token"]


@pytest.mark.parametrize(
    "call",
    ["GetSpannerConfig", "DeleteSpannerConfig", "GetDicomNode", "DeleteDicomNode"],
)
async def test_get_and_delete_need_an_id(spanner: Stub, call: str) -> None:
    request_type = getattr(pb, call + "Request")
    error = await fails(getattr(spanner, call)(request_type()), grpc.StatusCode.INVALID_ARGUMENT)
    assert bad_request_fields(error) == ["config_id" if "Config" in call else "node_id"]
