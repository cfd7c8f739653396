"""Kubernetes reasons, alert names and message phrases the patterns look for.

Reasons are the ``reason`` of Kubernetes Events as the kubelet, scheduler,
controllers and node lifecycle controller emit them; phrases are parts of
their messages ("Back-off restarting failed container ...", "Readiness probe
failed: ..."). All in lower case.
"""

from __future__ import annotations

from corrmesh.correlation.window import EventInfo

EXHAUSTION_TYPES = frozenset(
    {
        "oomkilled",
        "oomkilling",
        "kubecontaineroomkilled",
        "evicted",
        "evictionthresholdmet",
        "nodehasmemorypressure",
        "nodehasdiskpressure",
        "nodehaspidpressure",
        "cputhrottlinghigh",
        "kubememoryovercommit",
        "kubepersistentvolumefillingup",
    }
)
EXHAUSTION_PHRASES = (
    "out of memory",
    "oomkilled",
    "memory pressure",
    "disk pressure",
    "ephemeral-storage",
    "no space left on device",
    "cpu throttling",
)

ROLLOUT_TYPES = frozenset({"scalingreplicaset", "deploymentrollout", "kubedeploymentrollout"})
NEW_POD_FAILURE_PHRASES = (
    "back-off restarting failed container",
    "crashloopbackoff",
    "failed to pull image",
    "errimagepull",
    "imagepullbackoff",
    "back-off pulling image",
    "readiness probe failed",
    "liveness probe failed",
    "error: ",
)
NODE_DOWN_TYPES = frozenset(
    {"nodenotready", "nodeunreachable", "kubenodenotready", "kubenodeunreachable"}
)
NODE_DOWN_PHRASES = ("status is now: nodenotready", "node is not ready", "node(s) were unreachable")
EVICTION_TYPES = frozenset({"taintmanagereviction", "evicted", "preempting"})
EVICTION_PHRASES = ("marking for deletion pod",)
SCHEDULING_TYPES = frozenset({"failedscheduling"})
CONNECTION_PHRASES = (
    "connection refused",
    "connection reset",
    "i/o timeout",
    "no route to host",
    "network is unreachable",
    "failed to connect",
    "dial tcp",
    "context deadline exceeded",
    "connection timed out",
    "bgp not established",
    "health rpc did not complete",
)
CONNECTION_TYPES = frozenset({"networkunavailable", "kubenetworkunavailable"})


def text_of(event: EventInfo) -> str:
    """Type, title and description of ``event`` in lower case."""
    return f"{event.type} {event.title} {event.description}".lower()


def is_exhaustion(event: EventInfo) -> bool:
    """A resource ran out of memory, CPU or disk."""
    # Reasons and messages, not metric anomalies: a memory metric drifting up
    # on one of many pods is too weak a sign to name a pattern on.
    if event.type.lower() in EXHAUSTION_TYPES:
        return True
    return any(phrase in text_of(event) for phrase in EXHAUSTION_PHRASES)


def is_node_down(event: EventInfo) -> bool:
    kind = event.type.lower()
    return kind in NODE_DOWN_TYPES or any(p in text_of(event) for p in NODE_DOWN_PHRASES)


def is_eviction(event: EventInfo) -> bool:
    kind = event.type.lower()
    return kind in EVICTION_TYPES or any(p in text_of(event) for p in EVICTION_PHRASES)


def is_connection_error(event: EventInfo) -> bool:
    kind = event.type.lower()
    return kind in CONNECTION_TYPES or any(p in text_of(event) for p in CONNECTION_PHRASES)
