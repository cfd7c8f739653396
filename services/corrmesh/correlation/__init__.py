"""Correlation: turns Ingest's event stream into correlation groups.

Pieces: :mod:`.strategies` (pluggable scoring of an event against a
candidate), :mod:`.window` (the event-time window and its indexes),
:mod:`.engine` (owns groups: create, join, merge), :mod:`.consumer` (the
Ingest subscription, Topology lookups and the one-transaction commit),
:mod:`.store` (SQLAlchemy persistence), :mod:`.servicer` (the RPCs).
"""
