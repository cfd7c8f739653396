"""Topology: the live relationship graph and the questions asked of it.

The graph (:mod:`.graph`) holds resources and typed edges; today declared
service dependencies (persisted in :mod:`.store`, loaded from the API and a
YAML file), later also Kubernetes objects from list+watch. Queries answer
owner chains, neighbours, paths, blast radius (:mod:`.impact`) and pairwise
relations for the correlation engine (:mod:`.relate`); every change is logged
and streamed by WatchTopology.
"""
