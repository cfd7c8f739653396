"""The fan-out engine: one query to every mapped source, in parallel, folded into one answer.

``SpannerEngine.query`` yields, in order of arrival, a ``SourceStatus`` as each
source finishes and the matches (``Folded``), then one ``QuerySummary``. With
FIRST_WINS a match streams as soon as its source has answered; the other dedup
strategies need every answer first, so their matches follow the last status.
A FAILED summary (FAIL_FAST, or fewer successes than the threshold) comes
with no matches for the strategies that wait; the caller turns it into an error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar, cast

import httpx
from pydicom import Dataset

from corrmesh.spanner import dimse, qido
from corrmesh.spanner.alerts import Publisher
from corrmesh.spanner.datasets import (
    dedup_key,
    model_uid,
    outgoing_identifier,
    redacted_keys,
    restrict,
)
from corrmesh.spanner.dedup import Deduplicator, Folded
from corrmesh.spanner.health import HealthTracker, TtlCache, seconds_to_duration
from corrmesh.spanner.pool import AssociationPool
from corrmesh.spanner.store import SpannerStore
from corrmesh.v1 import spanner_pb2 as pb

log = logging.getLogger(__name__)

EngineItem = Folded | pb.SourceStatus | pb.QuerySummary
T = TypeVar("T")

#: How long a resolved configuration is reused; changes made through another
#: Spanner replica show up within this many seconds.
RESOLVE_TTL = 2.0


class ConfigUnavailableError(Exception):
    """The configuration is disabled or has no enabled source."""


@dataclass(frozen=True)
class Source:
    """A node as mapped into one configuration."""

    node: pb.DicomNode
    mapping: pb.SourceMapping

    @property
    def node_id(self) -> str:
        return self.node.node_id

    def timeout(self, config: pb.SpannerConfig) -> float:
        own = self.mapping.timeout.ToNanoseconds()
        return (own or config.query_timeout.ToNanoseconds()) / 1e9


@dataclass
class QuerySpec:
    """One spanning query as the engine runs it."""

    config_id: str
    level: int
    model: int
    identifier: Dataset
    limit: int = 0
    requested_by: str = ""
    operation: int = pb.SPANNING_OPERATION_C_FIND


@dataclass
class _Answer:
    status: pb.SourceStatus
    matches: list[Dataset] = field(default_factory=list)


class SpannerEngine:
    """Runs spanning queries for one Spanner process (shared health, cache, audit)."""

    def __init__(
        self,
        store: SpannerStore,
        publisher: Publisher | None = None,
        calling_ae: str = "CORRMESH",
        health: HealthTracker | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.calling_ae = calling_ae
        self.health = health or HealthTracker()
        self.cache = TtlCache()
        self.threads = ThreadPoolExecutor(max_workers=32, thread_name_prefix="spanner-dimse")
        # C-FINDs reuse established associations: setting one up and releasing it
        # would cost more than the C-FIND itself.
        self.associations = AssociationPool(dimse.release_later)
        self.http = httpx.AsyncClient()
        self._audits: set[asyncio.Task[None]] = set()
        self._resolved = TtlCache()

    async def close(self) -> None:
        await self.flush_audits()
        await self.http.aclose()
        self.associations.close()
        self.threads.shutdown(wait=False, cancel_futures=True)

    async def resolve(self, config_id: str) -> tuple[pb.SpannerConfig, list[Source]]:
        """The configuration and its enabled sources, preferred first (NotFoundError if none)."""
        config, pairs = await self._cached(
            ("sources", config_id), self.store.spanning_sources, config_id
        )
        if not config.enabled:
            raise ConfigUnavailableError(f"SpannerConfig {config_id!r} is disabled")
        sources = [
            Source(node, mapping) for mapping, node in pairs if mapping.enabled and node.enabled
        ]
        if not sources:
            raise ConfigUnavailableError(f"SpannerConfig {config_id!r} has no enabled source")
        return config, sources

    async def configs(self) -> list[pb.SpannerConfig]:
        """Every configuration, oldest first (what the listeners choose from)."""
        configs, _ = await self._cached(("configs",), self.store.list_configs, None, 1000)
        return list(configs)

    async def scp_config(self, called_ae: str) -> str:
        """The configuration the DIMSE SCP serves: named like the called AE title, else
        the first enabled one that supports the SCP; empty when there is none."""
        usable = [c for c in await self.configs() if c.enabled and c.supports_dimse_scp]
        named = [c for c in usable if c.name == called_ae]
        return (named or usable or [pb.SpannerConfig()])[0].config_id

    async def destination(self, ae_title: str) -> pb.DicomNode | None:
        """The enabled node with this AE title: where C-MOVE and C-STORE may send."""
        nodes, _ = await self._cached(("nodes",), self.store.list_nodes, None, 1000)
        return next((n for n in nodes if n.enabled and n.ae_title == ae_title), None)

    async def _cached(self, key: tuple[str, ...], read: Callable[..., T], *args: object) -> T:
        """``read(*args)`` from the store, reused for RESOLVE_TTL seconds unless this
        process changes a configuration, node or mapping first: every spanning
        operation starts with these reads, and they cost a database round trip."""
        generation = self.store.generation
        cached = self._resolved.get(key)
        if cached is not None and cached[0] == generation:
            return cast(T, cached[1])
        value = await asyncio.to_thread(read, *args)
        self._resolved.put(key, (generation, value), RESOLVE_TTL)
        return value

    async def query(self, spec: QuerySpec) -> AsyncIterator[EngineItem]:
        """Fans ``spec`` out; see the module docstring for what is yielded."""
        config, sources = await self.resolve(spec.config_id)
        started, clock = datetime.now(UTC), time.perf_counter()
        summary = pb.QuerySummary(query_id=str(uuid.uuid4()))
        cache_key = _cache_key(spec)
        cached = self.cache.get(cache_key)
        if cached is not None:
            folded_all, statuses, before = cached
            for folded in folded_all:
                yield folded
            summary.sources.extend(statuses)
            summary.matches_before_dedup, summary.matches_after_dedup = before, len(folded_all)
            summary.outcome = pb.OPERATION_OUTCOME_SUCCEEDED
        else:
            dedup = Deduplicator(config.deduplication_strategy)
            streaming = config.deduplication_strategy == pb.DEDUPLICATION_STRATEGY_FIRST_WINS
            ttl = config.cache_ttl.ToNanoseconds() / 1e9
            # Kept only when the answer may be cached: otherwise each match can be
            # freed as soon as it is sent.
            kept: list[Folded] | None = [] if ttl > 0 else None
            sent = 0
            async for item in self.fan_out(config, sources, spec, summary):
                if isinstance(item, pb.SourceStatus):
                    yield item
                    continue
                source, matches = item
                for match in matches:
                    key = dedup_key(match, spec.level)
                    if not key:
                        continue
                    new = dedup.add(key, match, source.node_id, source.mapping.priority)
                    if streaming and new and not _full(spec.limit, sent):
                        folded = Folded(key, match, (source.node_id,))
                        sent += 1
                        if kept is not None:
                            kept.append(folded)
                        yield folded
            summary.outcome = _outcome(config, summary)  # type: ignore[assignment]
            if not streaming and summary.outcome != pb.OPERATION_OUTCOME_FAILED:
                for folded in dedup.results():
                    if _full(spec.limit, sent):
                        break
                    sent += 1
                    if kept is not None:
                        kept.append(folded)
                    yield folded
            summary.matches_before_dedup, summary.matches_after_dedup = dedup.before, len(dedup)
            if spec.limit and len(dedup) > spec.limit:
                summary.partial = True
            ok = summary.outcome == pb.OPERATION_OUTCOME_SUCCEEDED and not summary.partial
            if ok and kept is not None:
                self.cache.put(cache_key, (kept, list(summary.sources), dedup.before), ttl)
        summary.partial = summary.partial or summary.outcome != pb.OPERATION_OUTCOME_SUCCEEDED
        summary.elapsed.CopyFrom(seconds_to_duration(time.perf_counter() - clock))
        await self.audit(spec, summary, started)
        yield summary

    async def fan_out(
        self,
        config: pb.SpannerConfig,
        sources: list[Source],
        spec: QuerySpec,
        summary: pb.QuerySummary,
    ) -> AsyncIterator[pb.SourceStatus | tuple[Source, list[Dataset]]]:
        """Statuses as sources finish, each followed by its matches when it succeeded."""
        gate = asyncio.Semaphore(config.max_concurrent_sources)
        tasks: dict[asyncio.Task[_Answer], Source] = {}
        for source in sources:
            until = self.health.skip_until(source.node_id)
            if until:
                status = _status(source, pb.SOURCE_OUTCOME_SKIPPED, 0.0, 0)
                status.error = "unhealthy; in back-off until " + _iso(until)
                summary.sources.append(status)
                yield status
                continue
            task = asyncio.create_task(self._ask(gate, config, source, spec))
            tasks[task] = source
        deadline = time.monotonic() + config.query_timeout.ToNanoseconds() / 1e9
        pending = set(tasks)
        stop = False
        try:
            while pending and not stop:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    answer = task.result()
                    self._record(tasks[task], answer.status)
                    summary.sources.append(answer.status)
                    yield answer.status
                    if answer.status.outcome == pb.SOURCE_OUTCOME_SUCCEEDED:
                        yield tasks[task], answer.matches
                    elif config.failure_strategy == pb.FAILURE_STRATEGY_FAIL_FAST:
                        stop = True
        finally:
            for task in pending:
                task.cancel()
        for task in pending:
            outcome = pb.SOURCE_OUTCOME_CANCELLED if stop else pb.SOURCE_OUTCOME_TIMED_OUT
            status = _status(tasks[task], outcome, 0.0, 0)
            status.error = "cancelled after another source failed" if stop else "query timeout"
            if not stop:
                self._record(tasks[task], status)
            summary.sources.append(status)
            yield status

    async def _ask(
        self, gate: asyncio.Semaphore, config: pb.SpannerConfig, source: Source, spec: QuerySpec
    ) -> _Answer:
        """Queries one source with its timeout and retries; never raises (but cancellation)."""
        timeout = source.timeout(config)
        attempts, error, outcome = 0, "", pb.SOURCE_OUTCOME_FAILED
        async with gate:
            started = time.perf_counter()
            for attempts in range(1, source.mapping.max_retries + 2):
                cancelled = threading.Event()
                try:
                    matches = await asyncio.wait_for(
                        self._search(source, spec, timeout, cancelled), timeout
                    )
                except TimeoutError:
                    cancelled.set()
                    error, outcome = f"no answer within {timeout:g} s", pb.SOURCE_OUTCOME_TIMED_OUT
                    continue
                except asyncio.CancelledError:
                    cancelled.set()
                    raise
                except (dimse.SourceError, httpx.HTTPError, OSError, ValueError) as exc:
                    error, outcome = _describe(exc), pb.SOURCE_OUTCOME_FAILED
                    continue
                latency = time.perf_counter() - started
                status = _status(source, pb.SOURCE_OUTCOME_SUCCEEDED, latency, attempts)
                status.match_count = len(matches)
                return _Answer(status, restrict(matches, spec.identifier))
        status = _status(source, outcome, time.perf_counter() - started, attempts)
        status.error = error
        return _Answer(status)

    async def _search(
        self, source: Source, spec: QuerySpec, timeout: float, cancelled: threading.Event
    ) -> list[Dataset]:
        if source.mapping.protocol == pb.SOURCE_PROTOCOL_DICOMWEB:
            if not source.node.dicomweb_base_url:
                raise ValueError(f"node {source.node.name} has no DICOMweb base URL")
            return await qido.search(
                self.http, source.node.dicomweb_base_url, spec.level, spec.identifier, timeout
            )
        identifier = outgoing_identifier(spec.identifier)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.threads, dimse.find, dimse.Remote.of(source.node), self.calling_ae,
            model_uid(spec.model, "find"), identifier, timeout, cancelled, self.associations,
        )  # fmt: skip

    def _record(self, source: Source, status: pb.SourceStatus) -> None:
        if status.outcome == pb.SOURCE_OUTCOME_SUCCEEDED:
            self.health.succeeded(source.node_id, status.latency.ToNanoseconds() / 1e9)
        elif status.outcome in (pb.SOURCE_OUTCOME_FAILED, pb.SOURCE_OUTCOME_TIMED_OUT):
            self.health.failed(source.node_id, status.error)
        if self.publisher is not None:
            self.publisher.report(source.node, status)

    async def audit(self, spec: QuerySpec, summary: pb.QuerySummary, started: datetime) -> None:
        """Appends the operation to the query log (keys with names and birth dates
        redacted) from a background task: the caller's answer does not wait for the
        database write. ``flush_audits`` waits for the writes in flight."""
        entry = pb.QueryLog(
            config_id=spec.config_id,
            operation=spec.operation,  # type: ignore[arg-type]
            requested_by=spec.requested_by,
            level=spec.level,  # type: ignore[arg-type]
            query_keys=redacted_keys(spec.identifier),
            sources=summary.sources,
            matches_before_dedup=summary.matches_before_dedup,
            matches_after_dedup=summary.matches_after_dedup,
            outcome=summary.outcome,
            elapsed=summary.elapsed,
            error="; ".join(s.error for s in summary.sources if s.error),
        )
        entry.started_at.FromDatetime(started)
        task = asyncio.create_task(self._write_audit(entry))
        self._audits.add(task)
        task.add_done_callback(self._audits.discard)

    async def _write_audit(self, entry: pb.QueryLog) -> None:
        try:
            await asyncio.to_thread(self.store.add_query_log, entry)
        except Exception:  # the answer matters more than its audit line; log and go on
            log.exception("cannot write the query log")

    async def flush_audits(self) -> None:
        """Waits until every audit line written so far is in the database."""
        if self._audits:
            await asyncio.gather(*self._audits)


def _outcome(config: pb.SpannerConfig, summary: pb.QuerySummary) -> int:
    ok = sum(1 for s in summary.sources if s.outcome == pb.SOURCE_OUTCOME_SUCCEEDED)
    failed = len(summary.sources) - ok
    if failed == 0:
        return pb.OPERATION_OUTCOME_SUCCEEDED
    if config.failure_strategy == pb.FAILURE_STRATEGY_FAIL_FAST or ok == 0:
        return pb.OPERATION_OUTCOME_FAILED
    threshold = config.failure_strategy == pb.FAILURE_STRATEGY_MINIMUM_THRESHOLD
    if threshold and ok < config.minimum_success_threshold:
        return pb.OPERATION_OUTCOME_FAILED
    return pb.OPERATION_OUTCOME_PARTIAL


def _full(limit: int, count: int) -> bool:
    return bool(limit) and count >= limit


def _status(source: Source, outcome: int, latency: float, attempts: int) -> pb.SourceStatus:
    return pb.SourceStatus(
        node_id=source.node_id,
        ae_title=source.node.ae_title,
        outcome=outcome,  # type: ignore[arg-type]
        latency=seconds_to_duration(latency),
        attempts=attempts,
        protocol=source.mapping.protocol,
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"DICOMweb answered HTTP {exc.response.status_code}"
    return str(exc) or type(exc).__name__


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def _cache_key(spec: QuerySpec) -> tuple[object, ...]:
    keys = tuple(sorted((f"{e.tag:08X}", str(e.value)) for e in spec.identifier))
    return (spec.config_id, spec.level, spec.model, spec.limit, keys)
