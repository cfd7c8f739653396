"""Ingest: the edge of corrmesh.

Validates events, assigns ``event_id`` and ``correlation_id``, appends them to a
durable, strictly ordered event log and serves that log as a resumable stream.
"""
