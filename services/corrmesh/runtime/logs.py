"""Structured logs: one JSON object per line, with trace_id and correlation_id.

The trace and span ids come from the current OpenTelemetry span, the
correlation id from W3C baggage (``correlation.id``), so a log line written
while handling an event can be joined to its trace without passing ids around.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from opentelemetry import baggage, trace

from corrmesh.runtime.tracing import CORRELATION_BAGGAGE_KEY

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; extra= fields become keys."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            payload["trace_id"] = format(span_context.trace_id, "032x")
            payload["span_id"] = format(span_context.span_id, "016x")
        correlation_id = baggage.get_baggage(CORRELATION_BAGGAGE_KEY)
        if correlation_id:
            payload["correlation_id"] = str(correlation_id)
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Sends every log record to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # SQL echo and per-request library chatter stay out unless asked for
    # (pynetdicom logs a line per C-STORE; the SCP logs its associations itself).
    for noisy in ("sqlalchemy.engine", "alembic.runtime.migration", "pynetdicom"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
