"""Measuring the mesh on labelled scenarios: replay, collect the answer, score it.

A scenario directory (``events.jsonl``, ``topology.json``, ``truth.json``) is
replayed through a fresh mesh; the groups Correlation formed become an answer
(``assignments.jsonl``, ``groups.jsonl``) that is scored against the truth,
which the mesh never sees.
"""
