"""Service selectors matched against Pod labels, kept up to date incrementally.

Pods are indexed by each (cluster, namespace, label, value) they carry;
Services by the first requirement of their selector. A changed Pod is then
checked only against Services whose first requirement it meets, and a
changed Service only against Pods carrying its first label: neither side is
ever scanned in full, which matters with ten thousand Pods.
"""

from __future__ import annotations

from corrmesh.topology.keys import Key

#: (cluster, namespace, label, value)
LabelKey = tuple[str, str, str, str]
Scope = tuple[str, str]


class SelectorIndex:
    """Which Services select which Pods, by label."""

    def __init__(self) -> None:
        self._pods: dict[Key, tuple[Scope, dict[str, str]]] = {}
        self._pods_by_label: dict[LabelKey, dict[Key, None]] = {}
        self._services: dict[Key, tuple[Scope, dict[str, str]]] = {}
        self._services_by_first: dict[LabelKey, dict[Key, None]] = {}

    @staticmethod
    def _first(selector: dict[str, str]) -> tuple[str, str]:
        label = min(selector)
        return label, selector[label]

    def pod_labels(self, key: Key) -> dict[str, str] | None:
        entry = self._pods.get(key)
        return None if entry is None else entry[1]

    def service_selector(self, key: Key) -> dict[str, str] | None:
        entry = self._services.get(key)
        return None if entry is None else entry[1]

    def set_pod(self, key: Key, scope: Scope, labels: dict[str, str]) -> set[Key]:
        """Records a Pod's labels; returns the Services selecting it."""
        self.remove_pod(key)
        self._pods[key] = (scope, labels)
        for label, value in labels.items():
            self._pods_by_label.setdefault((*scope, label, value), {})[key] = None
        selecting: set[Key] = set()
        for label, value in labels.items():
            for service in self._services_by_first.get((*scope, label, value), ()):
                selector = self._services[service][1]
                if all(labels.get(k) == v for k, v in selector.items()):
                    selecting.add(service)
        return selecting

    def remove_pod(self, key: Key) -> None:
        entry = self._pods.pop(key, None)
        if entry is None:
            return
        scope, labels = entry
        for label, value in labels.items():
            bucket = self._pods_by_label.get((*scope, label, value))
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self._pods_by_label[(*scope, label, value)]

    def set_service(self, key: Key, scope: Scope, selector: dict[str, str]) -> set[Key]:
        """Records a Service's selector; returns the Pods it selects."""
        self.remove_service(key)
        if not selector:
            return set()  # a Service without a selector selects nothing
        self._services[key] = (scope, selector)
        label, value = self._first(selector)
        self._services_by_first.setdefault((*scope, label, value), {})[key] = None
        selected: set[Key] = set()
        for pod in self._pods_by_label.get((*scope, label, value), ()):
            labels = self._pods[pod][1]
            if all(labels.get(k) == v for k, v in selector.items()):
                selected.add(pod)
        return selected

    def remove_service(self, key: Key) -> None:
        entry = self._services.pop(key, None)
        if entry is None:
            return
        scope, selector = entry
        first = (*scope, *self._first(selector))
        bucket = self._services_by_first.get(first)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._services_by_first[first]
