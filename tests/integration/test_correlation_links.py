"""LinkCorrelations / ListRelated through the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from sqlalchemy import func, select

from corrmesh.correlation.links import CorrelationLinkRow, add_links
from corrmesh.correlation.store import CorrelationStore
from corrmesh.runtime.errors import bad_request_fields
from corrmesh.v1 import correlation_pb2
from tests.support.correlation_mesh import mesh

R = correlation_pb2.RelationshipType
SPAWNED, RELATED, BATCH = (
    R.RELATIONSHIP_TYPE_SPAWNED,
    R.RELATIONSHIP_TYPE_RELATED,
    R.RELATIONSHIP_TYPE_BATCH,
)


def link(parent: str, child: str, type_: int = SPAWNED, **metadata: str) -> Any:
    return correlation_pb2.CorrelationLink(
        parent_correlation_id=parent,
        child_correlation_id=child,
        relationship_type=cast(Any, type_),
        metadata=metadata,
    )


def rows(related: correlation_pb2.ListRelatedResponse) -> list[tuple[str, int, int, str, bool]]:
    return [
        (r.correlation_id, r.relationship_type, r.depth, r.via_correlation_id, r.is_parent)
        for r in related.related
    ]


def count_links(store: CorrelationStore) -> int:
    with store.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(CorrelationLinkRow)) or 0)


async def test_links_are_idempotent_and_related_ids_are_walked_breadth_first(
    database_url: str, tmp_path: Path
) -> None:
    async with mesh(database_url, tmp_path) as m:
        stub = m.correlation
        first = await stub.LinkCorrelations(
            correlation_pb2.LinkCorrelationsRequest(
                links=[
                    link("assoc", "study-1", ae="CT01"),
                    link("assoc", "study-2"),
                    link("study-1", "step-1", RELATED),
                    link("batch-7", "study-1", BATCH),
                ]
            )
        )
        assert [(x.parent_correlation_id, x.child_correlation_id) for x in first.links] == [
            ("assoc", "study-1"),
            ("assoc", "study-2"),
            ("study-1", "step-1"),
            ("batch-7", "study-1"),
        ]
        assert first.links[0].metadata == {"ae": "CT01"}
        assert first.links[0].created_at.seconds > 0

        # The same link again (other metadata): nothing new, the stored link back.
        again = await stub.LinkCorrelations(
            correlation_pb2.LinkCorrelationsRequest(
                links=[link("assoc", "study-1", ae="OTHER"), link("assoc", "study-1", RELATED)]
            )
        )
        assert again.links[0] == first.links[0]
        assert again.links[1].relationship_type == RELATED
        assert count_links(m.app.store) == 5

        def ask(correlation_id: str, **fields: Any) -> Any:
            return stub.ListRelated(
                correlation_pb2.ListRelatedRequest(correlation_id=correlation_id, **fields)
            )

        # Direct only: parents and children of study-1 (the two links assoc→study-1
        # report the smaller type).
        assert rows(await ask("study-1", max_depth=5)) == [
            ("assoc", SPAWNED, 1, "study-1", True),
            ("batch-7", BATCH, 1, "study-1", True),
            ("step-1", RELATED, 1, "study-1", False),
        ]
        assert rows(await ask("study-2", transitive=True)) == [
            ("assoc", SPAWNED, 1, "study-2", True),
            ("study-1", SPAWNED, 2, "assoc", False),
            ("batch-7", BATCH, 3, "study-1", True),
            ("step-1", RELATED, 3, "study-1", False),
        ]
        assert rows(await ask("study-2", transitive=True, max_depth=2)) == [
            ("assoc", SPAWNED, 1, "study-2", True),
            ("study-1", SPAWNED, 2, "assoc", False),
        ]
        # Only SPAWNED links are followed: batch-7 and step-1 are out of reach.
        assert rows(
            await ask("study-2", transitive=True, relationship_types=[SPAWNED, SPAWNED])
        ) == [("assoc", SPAWNED, 1, "study-2", True), ("study-1", SPAWNED, 2, "assoc", False)]
        assert rows(await ask("step-1", relationship_types=[BATCH])) == []
        # Ids are free-form: one nobody linked simply has no relatives.
        assert rows(await ask("never-linked", transitive=True)) == []


async def test_cycles_are_rejected_atomically(database_url: str, tmp_path: Path) -> None:
    async with mesh(database_url, tmp_path) as m:
        stub = m.correlation
        await stub.LinkCorrelations(
            correlation_pb2.LinkCorrelationsRequest(links=[link("a", "b"), link("b", "c", RELATED)])
        )
        cases = [
            # Through stored links of another type: c reaches nothing, a reaches c.
            ([link("x", "y"), link("c", "a", BATCH)], "links[1]"),
            # Inside one request.
            ([link("p", "q"), link("q", "r"), link("r", "p")], "links[2]"),
        ]
        for links, field in cases:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.LinkCorrelations(correlation_pb2.LinkCorrelationsRequest(links=links))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad_request_fields(error.value) == [field]
            assert "cycle" in (error.value.details() or "")
        assert count_links(m.app.store) == 2, "a rejected request stores none of its links"

        # Two requests racing to close a cycle: exactly one wins.
        results = await asyncio.gather(
            stub.LinkCorrelations(correlation_pb2.LinkCorrelationsRequest(links=[link("m", "n")])),
            stub.LinkCorrelations(correlation_pb2.LinkCorrelationsRequest(links=[link("n", "m")])),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(failures) == 1
        assert failures[0].code() == grpc.StatusCode.INVALID_ARGUMENT
        # Many callers storing the same link at once: one row.
        same = correlation_pb2.LinkCorrelationsRequest(links=[link("s", "t", ae="x")])
        answers = await asyncio.gather(*(stub.LinkCorrelations(same) for _ in range(8)))
        assert len({a.links[0].SerializeToString() for a in answers}) == 1
        assert count_links(m.app.store) == 4


async def test_bad_requests_name_the_field(database_url: str, tmp_path: Path) -> None:
    async with mesh(database_url, tmp_path) as m:
        stub = m.correlation
        link_cases: list[tuple[list[Any], list[str]]] = [
            ([], ["links"]),
            (
                [link("", "b"), link("a", "", 0), link("a", "a", 42)],
                [
                    "links[0].parent_correlation_id",
                    "links[1].child_correlation_id",
                    "links[1].relationship_type",
                    "links[2].child_correlation_id",
                    "links[2].relationship_type",
                ],
            ),
            (
                [link("a" * 129, "b", SPAWNED, k="v" * 2000)],
                [
                    "links[0].parent_correlation_id",
                    "links[0].metadata[k]",
                ],
            ),
            ([link("a", f"b{i}") for i in range(1001)], ["links"]),
        ]
        for links, fields in link_cases:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.LinkCorrelations(correlation_pb2.LinkCorrelationsRequest(links=links))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad_request_fields(error.value) == fields
        related_cases: list[tuple[correlation_pb2.ListRelatedRequest, list[str]]] = [
            (correlation_pb2.ListRelatedRequest(), ["correlation_id"]),
            (
                correlation_pb2.ListRelatedRequest(correlation_id="a", max_depth=-1),
                ["max_depth"],
            ),
            (
                correlation_pb2.ListRelatedRequest(correlation_id="a", max_depth=101),
                ["max_depth"],
            ),
            (
                correlation_pb2.ListRelatedRequest(
                    correlation_id="a", relationship_types=cast(Any, [SPAWNED, 0, 99])
                ),
                ["relationship_types[1]", "relationship_types[2]"],
            ),
        ]
        for request, fields in related_cases:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.ListRelated(request)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad_request_fields(error.value) == fields
        assert count_links(m.app.store) == 0


def test_add_links_joins_the_callers_transaction(database_url: str) -> None:
    store = CorrelationStore(database_url)
    try:
        store.migrate()
        recurrence = R.RELATIONSHIP_TYPE_RECURRENCE
        continuation = R.RELATIONSHIP_TYPE_CONTINUATION
        with store.sessions.begin() as session:
            add_links(session, [("g-old", "g-new", recurrence, {"reason": "recurrence"})])
            add_links(
                session,
                [("g-old", "g-new", recurrence, {}), ("g-full", "g-next", continuation, {})],
            )
        assert count_links(store) == 2
        with pytest.raises(RuntimeError), store.sessions.begin() as session:
            add_links(session, [("g-a", "g-b", recurrence, {})])
            raise RuntimeError("the batch failed")
        assert count_links(store) == 2, "links roll back with the caller's transaction"
        with store.sessions() as session:
            kept = session.scalars(
                select(CorrelationLinkRow).where(CorrelationLinkRow.child_correlation_id == "g-new")
            ).one()
        assert kept.details == {"reason": "recurrence"}
    finally:
        store.close()
