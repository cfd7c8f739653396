"""DicomNode and SourceMapping RPCs over gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc

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


# DICOM nodes.


async def test_node_lifecycle(spanner: Stub) -> None:
    tls = pb.TlsSettings(
        enabled=True, ca_cert_path="/ca.pem", cert_path="/c.pem", key_path="/k.pem"
    )
    node = await create_node(
        spanner, dicomweb_base_url="http://127.0.0.1:8042/dicom-web", tls=tls, enabled=True
    )
    uuid.UUID(node.node_id)
    assert node.tls == tls and node.enabled and node.port == 4242
    got = await spanner.GetDicomNode(pb.GetDicomNodeRequest(node_id=node.node_id))
    assert got.node == node

    updated = (
        await spanner.UpdateDicomNode(
            pb.UpdateDicomNodeRequest(
                node=pb.DicomNode(node_id=node.node_id, port=11112, name="not masked"),
                update_mask=mask("port"),
            )
        )
    ).node
    assert updated.port == 11112
    assert (updated.name, updated.ae_title, updated.tls) == (node.name, node.ae_title, node.tls)

    # A TLS sub-field alone, keeping its siblings.
    updated = (
        await spanner.UpdateDicomNode(
            pb.UpdateDicomNodeRequest(
                node=pb.DicomNode(node_id=node.node_id, tls=pb.TlsSettings(ca_cert_path="/new")),
                update_mask=mask("tls.ca_cert_path"),
            )
        )
    ).node
    assert updated.tls.ca_cert_path == "/new" and updated.tls.cert_path == "/c.pem"

    # Clearing only the key breaks the cert/key pair.
    error = await fails(
        spanner.UpdateDicomNode(
            pb.UpdateDicomNodeRequest(
                node=pb.DicomNode(node_id=node.node_id), update_mask=mask("tls.key_path")
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == ["node.tls.key_path"]

    error = await fails(
        spanner.UpdateDicomNode(
            pb.UpdateDicomNodeRequest(
                node=pb.DicomNode(node_id=node.node_id), update_mask=mask("node_id")
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == ["update_mask"]

    await spanner.DeleteDicomNode(pb.DeleteDicomNodeRequest(node_id=node.node_id))
    error = await fails(
        spanner.GetDicomNode(pb.GetDicomNodeRequest(node_id=node.node_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert resource_info(error) == ("DicomNode", node.node_id)


async def test_create_node_names_each_bad_field(spanner: Stub) -> None:
    node = pb.DicomNode(
        ae_title="BAD\\AE",
        port=70000,
        dicomweb_base_url="pacs/dicom-web",
        tls=pb.TlsSettings(enabled=True, cert_path="/c.pem"),
    )
    error = await fails(
        spanner.CreateDicomNode(pb.CreateDicomNodeRequest(node=node)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == [
        "node.name",
        "node.ae_title",
        "node.host",
        "node.port",
        "node.dicomweb_base_url",
        "node.tls.key_path",
    ]
    assert "BAD" not in (error.details() or "")


async def test_node_paging(spanner: Stub) -> None:
    created = [await create_node(spanner, f"node-{i}") for i in range(3)]
    first = await spanner.ListDicomNodes(pb.ListDicomNodesRequest(page_size=2))
    second = await spanner.ListDicomNodes(
        pb.ListDicomNodesRequest(page_size=2, page_token=first.next_page_token)
    )
    assert second.next_page_token == ""
    assert [n.node_id for n in (*first.nodes, *second.nodes)] == [n.node_id for n in created]


# Source mappings.


async def test_mapping_lifecycle_and_order(spanner: Stub) -> None:
    config = await create_config(spanner)
    nodes = [await create_node(spanner, f"pacs-{i}") for i in range(3)]
    added = []
    for node, priority in zip(nodes, (5, 1, 3), strict=True):
        response = await spanner.AddSourceMapping(
            pb.AddSourceMappingRequest(
                mapping=pb.SourceMapping(
                    config_id=config.config_id, node_id=node.node_id, priority=priority
                )
            )
        )
        added.append(response.mapping)
    assert all(m.protocol == pb.SOURCE_PROTOCOL_DIMSE and m.mapping_id for m in added)

    listed = await spanner.ListSourceMappings(
        pb.ListSourceMappingsRequest(config_id=config.config_id)
    )
    assert [m.priority for m in listed.mappings] == [1, 3, 5]

    updated = (
        await spanner.UpdateSourceMapping(
            pb.UpdateSourceMappingRequest(
                mapping=pb.SourceMapping(mapping_id=added[0].mapping_id, priority=0, max_retries=9),
                update_mask=mask("priority"),
            )
        )
    ).mapping
    assert updated.priority == 0 and updated.max_retries == added[0].max_retries
    assert (updated.config_id, updated.node_id) == (config.config_id, nodes[0].node_id)
    listed = await spanner.ListSourceMappings(
        pb.ListSourceMappingsRequest(config_id=config.config_id)
    )
    assert listed.mappings[0].mapping_id == added[0].mapping_id

    error = await fails(
        spanner.UpdateSourceMapping(
            pb.UpdateSourceMappingRequest(
                mapping=pb.SourceMapping(mapping_id=added[0].mapping_id, max_retries=11),
                update_mask=mask("max_retries"),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == ["mapping.max_retries"]
    error = await fails(
        spanner.UpdateSourceMapping(
            pb.UpdateSourceMappingRequest(
                mapping=pb.SourceMapping(mapping_id=added[0].mapping_id, node_id=nodes[1].node_id),
                update_mask=mask("node_id"),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == ["update_mask"]

    await spanner.RemoveSourceMapping(pb.RemoveSourceMappingRequest(mapping_id=added[1].mapping_id))
    await fails(
        spanner.RemoveSourceMapping(pb.RemoveSourceMappingRequest(mapping_id=added[1].mapping_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    listed = await spanner.ListSourceMappings(
        pb.ListSourceMappingsRequest(config_id=config.config_id)
    )
    assert {m.mapping_id for m in listed.mappings} == {added[0].mapping_id, added[2].mapping_id}


async def test_add_mapping_checks_references(spanner: Stub) -> None:
    config = await create_config(spanner)
    node = await create_node(spanner)
    missing = str(uuid.uuid4())
    error = await fails(
        spanner.AddSourceMapping(
            pb.AddSourceMappingRequest(
                mapping=pb.SourceMapping(config_id=missing, node_id=node.node_id)
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert resource_info(error) == ("SpannerConfig", missing)
    error = await fails(
        spanner.AddSourceMapping(
            pb.AddSourceMappingRequest(
                mapping=pb.SourceMapping(config_id=config.config_id, node_id=missing)
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert resource_info(error) == ("DicomNode", missing)

    error = await fails(
        spanner.AddSourceMapping(
            pb.AddSourceMappingRequest(mapping=pb.SourceMapping(priority=-1, max_retries=11))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_request_fields(error) == [
        "mapping.config_id",
        "mapping.node_id",
        "mapping.priority",
        "mapping.max_retries",
    ]

    request = pb.AddSourceMappingRequest(
        mapping=pb.SourceMapping(config_id=config.config_id, node_id=node.node_id)
    )
    await spanner.AddSourceMapping(request)
    await fails(spanner.AddSourceMapping(request), grpc.StatusCode.ALREADY_EXISTS)


async def test_mapping_calls_need_ids(spanner: Stub) -> None:
    for call, request, field in (
        (spanner.ListSourceMappings, pb.ListSourceMappingsRequest(), "config_id"),
        (spanner.RemoveSourceMapping, pb.RemoveSourceMappingRequest(), "mapping_id"),
        (spanner.UpdateSourceMapping, pb.UpdateSourceMappingRequest(), "mapping.mapping_id"),
    ):
        error = await fails(call(request), grpc.StatusCode.INVALID_ARGUMENT)  # type: ignore[arg-type]
        assert bad_request_fields(error) == [field]
    await fails(
        spanner.ListSourceMappings(pb.ListSourceMappingsRequest(config_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_node_in_use_cannot_be_deleted(spanner: Stub) -> None:
    config = await create_config(spanner)
    node = await create_node(spanner)
    mapping = (
        await spanner.AddSourceMapping(
            pb.AddSourceMappingRequest(
                mapping=pb.SourceMapping(config_id=config.config_id, node_id=node.node_id)
            )
        )
    ).mapping
    error = await fails(
        spanner.DeleteDicomNode(pb.DeleteDicomNodeRequest(node_id=node.node_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert config.config_id in (error.details() or "")
    await spanner.RemoveSourceMapping(pb.RemoveSourceMappingRequest(mapping_id=mapping.mapping_id))
    await spanner.DeleteDicomNode(pb.DeleteDicomNodeRequest(node_id=node.node_id))


async def test_deleting_a_config_removes_its_mappings(spanner: Stub) -> None:
    config = await create_config(spanner, "doomed")
    other = await create_config(spanner, "kept")
    node = await create_node(spanner)
    doomed = (
        await spanner.AddSourceMapping(
            pb.AddSourceMappingRequest(
                mapping=pb.SourceMapping(config_id=config.config_id, node_id=node.node_id)
            )
        )
    ).mapping
    kept = (
        await spanner.AddSourceMapping(
            pb.AddSourceMappingRequest(
                mapping=pb.SourceMapping(config_id=other.config_id, node_id=node.node_id)
            )
        )
    ).mapping
    await spanner.DeleteSpannerConfig(pb.DeleteSpannerConfigRequest(config_id=config.config_id))
    await fails(
        spanner.RemoveSourceMapping(pb.RemoveSourceMappingRequest(mapping_id=doomed.mapping_id)),
        grpc.StatusCode.NOT_FOUND,
    )
    listed = await spanner.ListSourceMappings(
        pb.ListSourceMappingsRequest(config_id=other.config_id)
    )
    assert list(listed.mappings) == [kept]
    # The node is now used only by "kept".
    error = await fails(
        spanner.DeleteDicomNode(pb.DeleteDicomNodeRequest(node_id=node.node_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert config.config_id not in (error.details() or "")
