"""Kubernetes side of Topology: discovery, list+watch sync per kind, the mapping
of objects to graph resources and edges, the cluster registry, and the
publisher of core/v1 Events to Ingest."""
