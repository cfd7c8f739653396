"""Alertmanager's webhook (payload version 4) into Ingest's log, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from corrmesh.ingest.server import IngestApp
from corrmesh.ingest.webhooks import ALERTMANAGER_PATH
from corrmesh.v1 import event_pb2
from tests.support.ingest import all_events, edge_server

GROUP_KEY = '{}:{alertname="KubePodCrashLooping", namespace="shop"}'
#: Shaped exactly as Alertmanager's webhook_config documentation gives the body.
FIRING: dict[str, Any] = {
    "version": "4",
    "groupKey": GROUP_KEY,
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "corrmesh",
    "groupLabels": {"alertname": "KubePodCrashLooping", "namespace": "shop"},
    "commonLabels": {
        "alertname": "KubePodCrashLooping",
        "namespace": "shop",
        "severity": "warning",
        "cluster": "prod-eu",
    },
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.monitoring:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "KubePodCrashLooping",
                "namespace": "shop",
                "pod": "checkout-7d9f8-abcde",
                "container": "checkout",
                "severity": "warning",
                "cluster": "prod-eu",
            },
            "annotations": {
                "summary": "Pod is crash looping.",
                "description": (
                    "Pod shop/checkout-7d9f8-abcde is in waiting state (CrashLoopBackOff)."
                ),
                "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
            },
            "startsAt": "2026-11-21T10:00:00.123456789+01:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting_reason%5B5m%5D%29+%3E%3D+1&g0.tab=1",
            "fingerprint": "5a3a0b1c9e8d7f60",
        },
        {
            "status": "firing",
            "labels": {
                "alertname": "KubePodCrashLooping",
                "namespace": "shop",
                "pod": "payments-5c6b7-fghij",
                "container": "payments",
                "severity": "critical",
                "cluster": "prod-eu",
            },
            "annotations": {"summary": "Pod is crash looping."},
            "startsAt": "2026-11-21T09:01:30Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=up&g0.tab=1",
            "fingerprint": "0f1e2d3c4b5a6978",
        },
    ],
}


def _resolved() -> dict[str, Any]:
    """The same group a little later: the first alert resolved, the second still firing."""
    payload = copy.deepcopy(FIRING)
    first = payload["alerts"][0]
    first["status"] = "resolved"
    first["endsAt"] = "2026-11-21T10:20:00Z"
    return payload


async def _post(
    app: IngestApp, body: Any, raw: bytes | None = None, **headers: str
) -> httpx.Response:
    assert app.webhooks is not None
    url = f"http://127.0.0.1:{app.webhooks.port}{ALERTMANAGER_PATH}"
    async with httpx.AsyncClient() as client:
        content = raw if raw is not None else json.dumps(body).encode()
        return await client.post(
            url, content=content, headers={"content-type": "application/json", **headers}
        )


async def test_firing_and_resolved_alerts_become_events(database_url: str, tmp_path: Path) -> None:
    async with edge_server(database_url, tmp_path) as (app, stub):
        first = await _post(app, FIRING)
        again = await _post(app, FIRING)  # Alertmanager repeats a group on every change
        later = await _post(app, _resolved())
        events = await all_events(stub)

    assert first.status_code == again.status_code == later.status_code == 200
    assert first.json()["accepted"] == 2 and first.json()["event_ids"] == again.json()["event_ids"]
    assert len(events) == 3  # the repeats are stored once
    crash, payments, resolved = events
    assert crash.domain == event_pb2.DOMAIN_INCIDENT and crash.source == "alertmanager"
    assert crash.fingerprint == "5a3a0b1c9e8d7f60" and payments.fingerprint == "0f1e2d3c4b5a6978"
    assert crash.type == "KubePodCrashLooping"
    assert crash.title == "KubePodCrashLooping: Pod is crash looping."
    assert crash.description.startswith("Pod shop/checkout-7d9f8-abcde")
    assert (crash.severity, payments.severity) == (
        event_pb2.SEVERITY_WARNING,
        event_pb2.SEVERITY_CRITICAL,
    )
    assert crash.resource == event_pb2.ResourceRef(
        cluster="prod-eu", kind="Pod", namespace="shop", name="checkout-7d9f8-abcde"
    )
    # Labels are attributes as they are; Alertmanager's facts sit beside them.
    labels = FIRING["alerts"][0]["labels"]
    assert {k: crash.attributes[k] for k in labels} == labels
    assert crash.attributes["annotation.runbook_url"].startswith("https://runbooks.")
    assert crash.attributes["alertmanager.status"] == "firing"
    assert crash.attributes["alertmanager.group_key"] == GROUP_KEY
    incident = crash.incident
    assert incident.status == event_pb2.ALERT_STATUS_FIRING and incident.receiver == "corrmesh"
    assert incident.starts_at.ToJsonString() == "2026-11-21T09:00:00.123456789Z"
    assert not incident.HasField("ends_at")
    assert crash.occurred_at == incident.starts_at
    assert incident.generator_url.startswith("http://prometheus.monitoring:9090/graph")

    # The resolution: its own event, same fingerprint and correlation id as the firing one.
    assert resolved.incident.status == event_pb2.ALERT_STATUS_RESOLVED
    assert resolved.attributes["alertmanager.status"] == "resolved"
    assert resolved.fingerprint == crash.fingerprint
    assert resolved.correlation_id == crash.correlation_id
    assert resolved.event_id != crash.event_id
    assert resolved.occurred_at.ToJsonString() == "2026-11-21T10:20:00Z"
    assert resolved.severity == event_pb2.SEVERITY_INFO
    assert resolved.title.startswith("[RESOLVED] ")
    assert unquote(resolved.trace_context.baggage) == f"correlation.id={crash.correlation_id}"


@pytest.mark.parametrize(
    ("raw", "status", "message", "field"),
    [
        (b'{"version": "4", "alerts": [', 400, "not valid JSON", None),
        (b"\xff\xfe", 400, "not valid JSON", None),
        (b"[]", 400, "must be a JSON object", None),
        (json.dumps({**FIRING, "version": "3"}).encode(), 400, "v4", "version"),
        (json.dumps({**FIRING, "alerts": {}}).encode(), 400, "must be a list", "alerts"),
        (
            json.dumps(
                {**FIRING, "alerts": [{**FIRING["alerts"][0], "status": "pending"}]}
            ).encode(),
            400,
            "'firing' or 'resolved'",
            "alerts[0].status",
        ),
        (
            json.dumps(
                {**FIRING, "alerts": [{**FIRING["alerts"][0], "startsAt": "yesterday"}]}
            ).encode(),
            400,
            "RFC 3339",
            "alerts[0].startsAt",
        ),
        (
            json.dumps(
                {**FIRING, "alerts": [{**FIRING["alerts"][0], "labels": {"a": 1}}]}
            ).encode(),
            400,
            "must be a string",
            "alerts[0].labels.a",
        ),
    ],
)
async def test_bad_bodies_get_400_naming_the_problem(
    tmp_path: Path, raw: bytes, status: int, message: str, field: str | None
) -> None:
    async with edge_server(f"sqlite:///{tmp_path / 'ingest.db'}", tmp_path) as (app, stub):
        response = await _post(app, None, raw)
        good = await _post(app, FIRING)  # the listener keeps serving
        events = await all_events(stub)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert response.json().get("field") == field
    assert good.status_code == 200 and len(events) == 2


async def test_alert_rejected_by_validation_is_named_and_others_kept(tmp_path: Path) -> None:
    payload = copy.deepcopy(FIRING)
    payload["alerts"][1]["labels"]["huge"] = "x" * 9000
    async with edge_server(f"sqlite:///{tmp_path / 'ingest.db'}", tmp_path) as (app, stub):
        response = await _post(app, payload)
        events = await all_events(stub)
    assert response.status_code == 400
    assert response.json()["rejected"] == ["events[1].attributes"]
    assert response.json()["accepted"] == 1 and len(events) == 1


async def test_tokens_guard_the_webhook(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("w-token write alertmanager\nr-token read viewer\n")
    async with edge_server(
        f"sqlite:///{tmp_path / 'ingest.db'}", tmp_path, auth_tokens_file=str(tokens)
    ) as (app, _stub):
        missing = await _post(app, FIRING)
        reader = await _post(app, FIRING, authorization="Bearer r-token")
        writer = await _post(app, FIRING, authorization="Bearer w-token")
    assert (missing.status_code, reader.status_code, writer.status_code) == (401, 401, 200)


async def test_a_request_that_is_not_http_gets_400_and_the_listener_keeps_serving(
    tmp_path: Path,
) -> None:
    async with edge_server(f"sqlite:///{tmp_path / 'ingest.db'}", tmp_path) as (app, stub):
        assert app.webhooks is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", app.webhooks.port)
        writer.write(b"\x16\x03\x01\x02\x00 this is no HTTP request\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        good = await _post(app, FIRING)
        events = await all_events(stub)
    assert answer.startswith(b"HTTP/1.1 400")
    assert good.status_code == 200 and len(events) == 2
