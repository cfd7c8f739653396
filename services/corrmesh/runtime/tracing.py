"""OpenTelemetry setup and the event-carried trace context.

RPC metadata carries context for one call, but a long-lived stream's metadata
belongs to the stream. So each accepted event stores the W3C context of the span
that accepted it (``Event.trace_context``), and whoever processes the event
later continues that trace with :func:`event_span`.

The correlation id rides in W3C baggage as ``correlation.id``; the
:class:`CorrelationIdSpanProcessor` copies it onto every span started while it is
in the context, as the attribute ``corrmesh.correlation_id``.

A span per event is the costliest step of a busy consumer, so when the process
has no exporter (``OTEL_TRACES_EXPORTER=none``, the default) and no other
processor was added (:func:`spans_exported`), its consumers call
:func:`event_span` and its edges (webhook, C-STORE) :func:`entry_span` with
``record=False``: no span is started, but the event's stored context (or the
caller's, or a fresh trace id) is made current, so log lines, outgoing calls,
stored events and the updates they cause carry trace and correlation ids all the
same.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote_plus

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags

from corrmesh.v1 import event_pb2

CORRELATION_BAGGAGE_KEY = "correlation.id"
CORRELATION_ATTRIBUTE = "corrmesh.correlation_id"

_provider: MeshTracerProvider | None = None


class CorrelationIdSpanProcessor(SpanProcessor):
    """Stamps the baggage correlation id on each span as it starts."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        value = baggage.get_baggage(CORRELATION_BAGGAGE_KEY, parent_context)
        if value:
            span.set_attribute(CORRELATION_ATTRIBUTE, str(value))

    def on_end(self, span: ReadableSpan) -> None:
        return None


class MeshTracerProvider(TracerProvider):
    """The SDK's provider, knowing whether any processor receives finished spans."""

    exporting = False

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        if not isinstance(span_processor, CorrelationIdSpanProcessor):
            self.exporting = True


def _exporters_from_env() -> list[SpanExporter]:
    # The SDK's documented default is "otlp"; a local mesh without a collector
    # would then log export errors forever, so "none" is ours.
    names = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    exporters: list[SpanExporter] = []
    for name in (n.strip().lower() for n in names.split(",")):
        if name in ("", "none"):
            continue
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            raise SystemExit(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r}")
    return exporters


def configure_tracing(
    service: str, exporters: Sequence[SpanExporter] | None = None
) -> MeshTracerProvider:
    """Installs the global tracer provider for this process (once).

    The service name is ``corrmesh-<service>`` unless ``OTEL_SERVICE_NAME`` says
    otherwise; exporters follow ``OTEL_TRACES_EXPORTER`` (otlp, console, none)
    and the exporter's own ``OTEL_EXPORTER_OTLP_*`` variables.
    """
    global _provider
    if _provider is not None:
        return _provider
    name = os.environ.get("OTEL_SERVICE_NAME") or f"corrmesh-{service}"
    provider = MeshTracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(CorrelationIdSpanProcessor())
    chosen = list(exporters) if exporters is not None else _exporters_from_env()
    for exporter in chosen:
        if isinstance(exporter, ConsoleSpanExporter):
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """Flushes and stops the exporters; spans ended before this are sent."""
    if _provider is not None:
        _provider.force_flush()
        _provider.shutdown()


def spans_exported() -> bool:
    """Whether a span finished in this process reaches anything: an exporter or
    another processor (True when :func:`configure_tracing` did not set up tracing)."""
    return _provider is None or _provider.exporting


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


_ids = RandomIdGenerator()


@contextmanager
def entry_span(
    span_tracer: trace.Tracer,
    name: str,
    parent: Context | None = None,
    kind: trace.SpanKind = trace.SpanKind.SERVER,
    record: bool = True,
) -> Iterator[trace.Span]:
    """The span of a request entering the mesh at an edge (webhook, C-STORE), current
    inside the block, as a child of ``parent`` (default: current context).

    With ``record=False`` no span is started (module docstring): the parent's span
    context is made current as it is, or, without a valid one, a new trace id and
    span id, sampled as the SDK's default sampler would, so events accepted here
    still carry a trace of their own.
    """
    if record:
        with span_tracer.start_as_current_span(name, context=parent, kind=kind) as started:
            yield started
        return
    ctx = parent if parent is not None else context.get_current()
    upstream = trace.get_current_span(ctx).get_span_context()
    if upstream.is_valid:
        span = NonRecordingSpan(upstream)
    else:
        span = NonRecordingSpan(
            SpanContext(
                trace_id=_ids.generate_trace_id(),
                span_id=_ids.generate_span_id(),
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
    token = context.attach(trace.set_span_in_context(span, ctx))
    try:
        yield span
    finally:
        context.detach(token)


def with_correlation_id(correlation_id: str, ctx: Context | None = None) -> Context:
    """A context whose baggage carries ``correlation_id``."""
    return baggage.set_baggage(CORRELATION_BAGGAGE_KEY, correlation_id, ctx)


def capture_trace_context(ctx: Context | None = None) -> event_pb2.TraceContext:
    """The W3C headers of ``ctx`` (default: current), to store on an event."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return event_pb2.TraceContext(
        traceparent=carrier.get("traceparent", ""),
        tracestate=carrier.get("tracestate", ""),
        baggage=carrier.get("baggage", ""),
    )


#: Stands in for the correlation id in :class:`TraceContextStamps`' template;
#: URL encoding leaves it as it is.
_PLACEHOLDER = "corrmesh0correlation0placeholder"
#: Above this many baggage bytes the W3C limits (8,192 in all) might drop
#: entries differently for a longer id: such contexts are injected in full.
_TEMPLATE_MAX_BAGGAGE = 4096
#: quote_plus of each ASCII character, for str.translate: the same encoding in C.
_QUOTE_PLUS_ASCII = {code: quote_plus(chr(code)) for code in range(128)}


def baggage_encoded(value: str) -> str:
    """``urllib.parse.quote_plus(value)``, as W3C baggage values are written, faster for ASCII."""
    return value.translate(_QUOTE_PLUS_ASCII) if value.isascii() else quote_plus(value)


class TraceContextStamps:
    """Trace contexts of ``ctx`` (default: current) for many correlation ids.

    Equal to ``capture_trace_context(with_correlation_id(id, ctx))`` for each id,
    at a fraction of the cost: the propagators run once, for a template whose
    baggage carries a placeholder, and each id is URL-encoded into a copy of it.
    Where the template does not show the placeholder exactly once (no baggage
    propagator configured, an unusual baggage entry, a long header) every id is
    injected in full.
    """

    def __init__(self, ctx: Context | None = None) -> None:
        self._ctx = ctx if ctx is not None else context.get_current()
        template = capture_trace_context(with_correlation_id(_PLACEHOLDER, self._ctx))
        self._template = template
        marker = f"{quote_plus(CORRELATION_BAGGAGE_KEY)}={_PLACEHOLDER}"
        baggage_header = template.baggage
        self._split: tuple[str, str] | None = None
        if baggage_header.count(marker) == 1 and len(baggage_header) <= _TEMPLATE_MAX_BAGGAGE:
            before, after = baggage_header.split(marker)
            self._split = (before + quote_plus(CORRELATION_BAGGAGE_KEY) + "=", after)
        self._made: dict[str, event_pb2.TraceContext] = {}

    def for_correlation(self, correlation_id: str) -> event_pb2.TraceContext:
        """The context to store on an event with ``correlation_id`` (shared: copy it)."""
        made = self._made.get(correlation_id)
        if made is not None:
            return made
        if self._split is None:
            made = capture_trace_context(with_correlation_id(correlation_id, self._ctx))
        else:
            before, after = self._split
            made = event_pb2.TraceContext(
                traceparent=self._template.traceparent,
                tracestate=self._template.tracestate,
                baggage=before + baggage_encoded(correlation_id) + after,
            )
        self._made[correlation_id] = made
        return made


def context_of(trace_context: event_pb2.TraceContext) -> Context:
    """The context stored on an event, ready to be a parent."""
    carrier = {
        key: value
        for key, value in (
            ("traceparent", trace_context.traceparent),
            ("tracestate", trace_context.tracestate),
            ("baggage", trace_context.baggage),
        )
        if value
    }
    return propagate.extract(carrier)


@contextmanager
def event_span(
    span_tracer: trace.Tracer,
    name: str,
    event: event_pb2.Event,
    links: Sequence[Link] = (),
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    record: bool = True,
) -> Iterator[trace.Span]:
    """Continues ``event``'s trace: a child span of the span that accepted it.

    The event's correlation id is put in baggage for the span's lifetime, so
    spans and log lines made inside carry it too. With ``record=False`` no span
    is started: the event's own context is made current and its
    (non-recording) span yielded (module docstring).
    """
    ctx = context_of(event.trace_context)
    if event.correlation_id:
        ctx = with_correlation_id(event.correlation_id, ctx)
    token = context.attach(ctx)
    try:
        if not record:
            yield trace.get_current_span()
            return
        with span_tracer.start_as_current_span(name, kind=kind, links=links) as span:
            if event.correlation_id:
                span.set_attribute(CORRELATION_ATTRIBUTE, event.correlation_id)
            if event.event_id:
                span.set_attribute("corrmesh.event_id", event.event_id)
            yield span
    finally:
        context.detach(token)
