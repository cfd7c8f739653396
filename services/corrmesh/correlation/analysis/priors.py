"""How likely a kind of event is to be a cause rather than a symptom.

A node going NotReady, a container killed for memory or a volume that will not
attach are causes far more often than they are consequences; a failed
readiness probe or a slow call is usually what a cause looks like from
upstream. The priors are in [0, 1]; a type that is not listed gets
:data:`DEFAULT_PRIOR`, and a resource takes the highest prior among its events.
Matching is on the event type (the Kubernetes reason, the alert name, the
metric) in lower case; :data:`TEXT_PRIORS` catch the same causes in titles.
"""

from __future__ import annotations

from corrmesh.correlation.window import EventInfo

DEFAULT_PRIOR = 0.4

TYPE_PRIORS: dict[str, float] = {
    # Nodes and capacity.
    "nodenotready": 1.0,
    "nodeunreachable": 1.0,
    "kubenodenotready": 1.0,
    "nodehasdiskpressure": 0.9,
    "nodehasmemorypressure": 0.9,
    "evictionthresholdmet": 0.85,
    # Memory and CPU.
    "oomkilled": 0.95,
    "oomkilling": 0.95,
    "kubecontaineroomkilled": 0.95,
    "cputhrottlinghigh": 0.75,
    # Storage.
    "provisioningfailed": 0.9,
    "failedattachvolume": 0.85,
    "failedmount": 0.8,
    "kubepersistentvolumefillingup": 0.85,
    # Rollouts and images.
    "scalingreplicaset": 0.7,
    "failed": 0.7,
    "errimagepull": 0.8,
    "imagepullbackoff": 0.8,
    "backoff": 0.6,
    "kubepodcrashlooping": 0.65,
    # Symptoms seen from upstream.
    "unhealthy": 0.3,
    "failedscheduling": 0.25,
    "taintmanagereviction": 0.2,
    "killing": 0.3,
    "kubepodnotready": 0.45,
    "highrequestlatency": 0.3,
    "highrequesterrorrate": 0.35,
    "norequestsreceived": 0.25,
    "nodatabaseoperations": 0.3,
    "trace_latency_anomaly": 0.3,
    "log_template_anomaly": 0.45,
}

#: (word in the title or description, prior) for events whose type says little.
TEXT_PRIORS: tuple[tuple[str, float], ...] = (
    ("out of memory", 0.9),
    ("oom", 0.9),
    ("disk pressure", 0.9),
    ("memory pressure", 0.9),
    ("no space left", 0.9),
    ("not ready", 0.6),
    ("connection refused", 0.45),
)

#: Metric anomalies (``<kpi>_<up|down>``): saturation of the resource itself is a
#: cause; what it sends or receives is mostly a symptom of someone else.
METRIC_PRIORS: tuple[tuple[str, float], ...] = (
    ("mem_", 0.65),
    ("cpu_", 0.6),
    ("fs_", 0.55),
    ("threads_", 0.5),
    ("net_", 0.4),
    ("src_", 0.3),
    ("dest_", 0.3),
    ("trace_status_", 0.35),
)


def prior(event: EventInfo) -> float:
    """The cause prior of one event."""
    kind = event.type.lower()
    known = TYPE_PRIORS.get(kind)
    if known is not None:
        return known
    for prefix, value in METRIC_PRIORS:
        if kind.startswith(prefix) or kind.startswith("node_" + prefix):
            return value
    text = f"{event.title} {event.description}".lower()
    for word, value in TEXT_PRIORS:
        if word in text:
            return value
    return DEFAULT_PRIOR


#: Event types that say traffic stopped arriving: the resource is starved by
#: whoever should call it, the reverse of the usual direction of failure.
STARVATION_TYPES = frozenset(
    {
        "norequestsreceived",
        "nodatabaseoperations",
        "dest_qps_down",
        "src_qps_down",
        "net_receive_down",
    }
)


def starved(event: EventInfo) -> bool:
    """True for an event that only says the resource's traffic stopped."""
    return event.type.lower() in STARVATION_TYPES
