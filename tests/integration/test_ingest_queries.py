"""GetEvent and ListEvents: lookups, filters, pagination, bad input."""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from google.protobuf import timestamp_pb2

from corrmesh.runtime.errors import bad_request_fields
from corrmesh.v1 import event_pb2, ingest_pb2
from tests.support.ingest import BASE_TIME, ingest_server, make_event


async def _invalid_fields(awaitable: object) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable  # type: ignore[misc]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return bad_request_fields(caught.value)


async def test_get_event_not_found_and_bad_ids(database_url: str) -> None:
    async with ingest_server(database_url) as (_app, stub):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetEvent(ingest_pb2.GetEventRequest(event_id="missing"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "missing" in (caught.value.details() or "")

        assert await _invalid_fields(stub.GetEvent(ingest_pb2.GetEventRequest())) == ["event_id"]
        too_long = ingest_pb2.GetEventRequest(event_id="x" * 129)
        assert await _invalid_fields(stub.GetEvent(too_long)) == ["event_id"]


async def test_list_events_pages_in_sequence_order(database_url: str) -> None:
    async with ingest_server(database_url) as (_app, stub):
        # Published out of event-time order: the listing follows the log.
        await stub.Publish(
            ingest_pb2.PublishRequest(events=[make_event(100 - i) for i in range(25)])
        )
        pages: list[list[int]] = []
        token = ""
        while True:
            page = await stub.ListEvents(
                ingest_pb2.ListEventsRequest(page_size=10, page_token=token)
            )
            pages.append([e.sequence for e in page.events])
            token = page.next_page_token
            if not token:
                break
    assert pages == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]


async def test_list_events_rejects_bad_paging(database_url: str) -> None:
    async with ingest_server(database_url) as (_app, stub):
        await stub.Publish(ingest_pb2.PublishRequest(events=[make_event(i) for i in range(3)]))
        first = await stub.ListEvents(ingest_pb2.ListEventsRequest(page_size=1))
        token = first.next_page_token
        assert token

        tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        assert await _invalid_fields(
            stub.ListEvents(ingest_pb2.ListEventsRequest(page_size=1, page_token=tampered))
        ) == ["page_token"]
        # Well-formed, but not a position this service hands out.
        forged = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        forged["p"] = "DROP TABLE"
        forged_token = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
        assert await _invalid_fields(
            stub.ListEvents(ingest_pb2.ListEventsRequest(page_token=forged_token))
        ) == ["page_token"]
        # A token is bound to the filter it was issued for.
        other_filter = ingest_pb2.EventFilter(sources=["elsewhere"])
        assert await _invalid_fields(
            stub.ListEvents(ingest_pb2.ListEventsRequest(page_token=token, filter=other_filter))
        ) == ["page_token"]
        assert await _invalid_fields(
            stub.ListEvents(ingest_pb2.ListEventsRequest(page_size=-1))
        ) == ["page_size"]
        bad_time = ingest_pb2.EventFilter(occurred_after=timestamp_pb2.Timestamp(nanos=-1))
        assert await _invalid_fields(
            stub.ListEvents(ingest_pb2.ListEventsRequest(filter=bad_time))
        ) == ["filter.occurred_after"]

        # Still serving, and the real token still works.
        second = await stub.ListEvents(ingest_pb2.ListEventsRequest(page_size=1, page_token=token))
        assert [e.sequence for e in second.events] == [2]


def _at(seconds: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromSeconds(int(BASE_TIME.timestamp()) + seconds)
    return stamp


FILTER_CASES = [
    (ingest_pb2.EventFilter(), [1, 2, 3, 4, 5]),
    (ingest_pb2.EventFilter(domains=[event_pb2.DOMAIN_DICOM]), [2]),
    (ingest_pb2.EventFilter(domains=[event_pb2.DOMAIN_DICOM, event_pb2.DOMAIN_CAMERA]), [2, 5]),
    (ingest_pb2.EventFilter(sources=["pacs-a"]), [2]),
    (ingest_pb2.EventFilter(min_severity=event_pb2.SEVERITY_ERROR), [3, 4]),
    (ingest_pb2.EventFilter(correlation_ids=["cid-x", "cid-y"]), [1, 4]),
    (ingest_pb2.EventFilter(clusters=["prod-us"]), [3]),
    (ingest_pb2.EventFilter(namespaces=["billing"]), [4]),
    (ingest_pb2.EventFilter(types=["OOMKilled"]), [3]),
    # Half-open: occurred_after <= occurred_at < occurred_before.
    (ingest_pb2.EventFilter(occurred_after=_at(20)), [3, 4, 5]),
    (ingest_pb2.EventFilter(occurred_before=_at(20)), [1, 2]),
    (ingest_pb2.EventFilter(occurred_after=_at(10), occurred_before=_at(30)), [2, 3]),
    (
        ingest_pb2.EventFilter(
            domains=[event_pb2.DOMAIN_KUBERNETES], min_severity=event_pb2.SEVERITY_CRITICAL
        ),
        [4],
    ),
]


async def test_list_events_filters(database_url: str) -> None:
    events = [
        make_event(0, correlation_id="cid-x"),
        make_event(10, domain=event_pb2.DOMAIN_DICOM, source="pacs-a", type="STORE"),
        make_event(
            20,
            severity=event_pb2.SEVERITY_ERROR,
            type="OOMKilled",
            resource=event_pb2.ResourceRef(cluster="prod-us", kind="Pod", name="api-1"),
        ),
        make_event(
            30,
            correlation_id="cid-y",
            severity=event_pb2.SEVERITY_CRITICAL,
            resource=event_pb2.ResourceRef(namespace="billing", kind="Pod", name="b-1"),
        ),
        make_event(40, domain=event_pb2.DOMAIN_CAMERA, source="unifi"),
    ]
    async with ingest_server(database_url) as (_app, stub):
        await stub.Publish(ingest_pb2.PublishRequest(events=events))
        for event_filter, expected in FILTER_CASES:
            listed = await stub.ListEvents(ingest_pb2.ListEventsRequest(filter=event_filter))
            assert [e.sequence for e in listed.events] == expected, event_filter
