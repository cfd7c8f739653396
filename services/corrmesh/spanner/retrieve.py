"""Retrieve across sources: find which source holds each instance, then move or fetch.

- DIRECT: the client is told (``RetrieveDirective``) which source holds which
  instances; for C-MOVE the spanner also asks that source to move them straight
  to the destination, so the data never passes through the spanner.
- PROXY: the spanner fetches the instances with C-GET and sends them on with C-STORE.
- HYBRID: DIRECT first; whatever the source could not move goes by PROXY.

Final statuses: 0x0000 all done, 0xB000 some failed (with their UIDs),
0xA702 none could be done, 0xA801 unknown destination, 0xA701 lookup failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydicom import Dataset

from corrmesh.spanner import dimse
from corrmesh.spanner.datasets import LEVEL_NAMES, model_uid, normalise_uid
from corrmesh.spanner.engine import QuerySpec, Source, SpannerEngine
from corrmesh.spanner.health import seconds_to_duration
from corrmesh.v1 import spanner_pb2 as pb

SUCCESS, SOME_FAILED, NONE_DONE = 0x0000, 0xB000, 0xA702
UNKNOWN_DESTINATION, LOOKUP_FAILED = 0xA801, 0xA701
_STUDY_ROOT = pb.INFORMATION_MODEL_STUDY_ROOT


@dataclass
class Instance:
    sop_uid: str
    sop_class: str
    study_uid: str
    series_uid: str
    sources: list[Source] = field(default_factory=list)


@dataclass
class Tally:
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def status(self) -> int:
        if not self.failed:
            return SUCCESS
        return SOME_FAILED if self.completed else NONE_DONE


def _ident(level: str, **keys: str | list[str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


class Retriever:
    """Plans and runs retrieves with the engine's sources, health and audit."""

    def __init__(self, engine: SpannerEngine) -> None:
        self.engine = engine

    async def _find_all(
        self, config: pb.SpannerConfig, sources: list[Source], level: int, ident: Dataset
    ) -> dict[str, tuple[Dataset, list[Source]]]:
        """Every match of ``ident`` by key, with every source holding it (preferred first)."""
        spec = QuerySpec(config.config_id, level, _STUDY_ROOT, ident)
        found: dict[str, tuple[Dataset, list[Source]]] = {}
        summary = pb.QuerySummary()
        key = {2: "StudyInstanceUID", 3: "SeriesInstanceUID", 4: "SOPInstanceUID"}[level]
        async for item in self.engine.fan_out(config, sources, spec, summary):
            if isinstance(item, pb.SourceStatus):
                continue
            source, matches = item
            for match in matches:
                uid = normalise_uid(match.get(key, ""))
                if uid:
                    found.setdefault(uid, (match, []))[1].append(source)
        for _match, holders in found.values():
            holders.sort(key=lambda s: s.mapping.priority)
        return found

    async def locate(
        self, config: pb.SpannerConfig, sources: list[Source], ident: Dataset
    ) -> list[Instance]:
        """The instances ``ident`` (any level) names, hierarchically, as dcmqrscp requires."""
        studies = [normalise_uid(ident.get("StudyInstanceUID", ""))]
        if not studies[0]:
            keys = {"PatientID": str(ident.get("PatientID", "")), "StudyInstanceUID": ""}
            studies = list(await self._find_all(config, sources, 2, _ident("STUDY", **keys)))
        instances: list[Instance] = []
        wanted_series = normalise_uid(ident.get("SeriesInstanceUID", ""))
        sops = ident.get("SOPInstanceUID", "")
        for study in studies:
            series_ids = [wanted_series]
            if not wanted_series:
                found = await self._find_all(
                    config,
                    sources,
                    3,
                    _ident("SERIES", StudyInstanceUID=study, SeriesInstanceUID=""),
                )
                series_ids = list(found)
            for series in series_ids:
                images = await self._find_all(
                    config, sources, 4,
                    _ident("IMAGE", StudyInstanceUID=study, SeriesInstanceUID=series,
                           SOPInstanceUID=sops, SOPClassUID=""),
                )  # fmt: skip
                for uid, (match, holders) in images.items():
                    sop_class = str(match.get("SOPClassUID", ""))
                    instances.append(Instance(uid, sop_class, study, series, holders))
        return instances

    async def fetch(
        self, source: Source, instances: list[Instance], timeout: float
    ) -> list[Dataset]:
        """C-GET of ``instances`` from ``source`` into memory, one request per series."""
        got: list[Dataset] = []
        by_series: dict[tuple[str, str], list[Instance]] = {}
        for item in instances:
            by_series.setdefault((item.study_uid, item.series_uid), []).append(item)
        loop = asyncio.get_running_loop()
        for (study, series), items in by_series.items():
            ident = _ident("IMAGE", StudyInstanceUID=study, SeriesInstanceUID=series,
                           SOPInstanceUID=[i.sop_uid for i in items])  # fmt: skip

            def keep(dataset: Dataset) -> int:
                got.append(dataset)
                return 0x0000

            await loop.run_in_executor(
                self.engine.threads, dimse.get, dimse.Remote.of(source.node),
                self.engine.calling_ae, model_uid(_STUDY_ROOT, "get"), ident,
                {i.sop_class for i in items}, timeout, keep, lambda _p: None,
            )  # fmt: skip
        return got

    async def fetch_all(self, spec: QuerySpec) -> list[Dataset]:
        """For the SCP's C-MOVE/C-GET: every instance the identifier names, fetched (PROXY)."""
        config, sources = await self.engine.resolve(spec.config_id)
        started = datetime.now(UTC)
        clock = time.perf_counter()
        instances = await self.locate(config, sources, spec.identifier)
        out: list[Dataset] = []
        for source, items in _by_preferred(instances):
            try:
                out.extend(await self.fetch(source, items, source.timeout(config)))
            except dimse.SourceError:
                continue
        summary = pb.QuerySummary(
            matches_before_dedup=len(instances), matches_after_dedup=len(out),
            outcome=pb.OPERATION_OUTCOME_SUCCEEDED if len(out) == len(instances)
            else pb.OPERATION_OUTCOME_PARTIAL,
            elapsed=seconds_to_duration(time.perf_counter() - clock),
        )  # fmt: skip
        await self.engine.audit(spec, summary, started)
        return out

    async def retrieve(self, request: pb.RetrieveRequest) -> AsyncIterator[pb.RetrieveResponse]:
        """The Retrieve RPC: directives and progress per source, then the result."""
        config, sources = await self.engine.resolve(request.config_id)
        started, clock = datetime.now(UTC), time.perf_counter()
        strategy = request.strategy or pb.RETRIEVE_STRATEGY_HYBRID
        method = request.method or pb.RETRIEVE_METHOD_C_MOVE
        result = pb.RetrieveResult(strategy_used=strategy)
        ident = _ident(
            LEVEL_NAMES[request.level], StudyInstanceUID=request.study_instance_uid,
            SeriesInstanceUID=request.series_instance_uid,
            SOPInstanceUID=list(request.sop_instance_uids),
        )  # fmt: skip
        destination = await self.engine.destination(request.destination_ae_title)
        tally = Tally()
        direct_get = (method, strategy) == (pb.RETRIEVE_METHOD_C_GET, pb.RETRIEVE_STRATEGY_DIRECT)
        if destination is None and not direct_get:
            result.dimse_status, result.error = UNKNOWN_DESTINATION, "unknown destination AE title"
        else:
            try:
                instances = await self.locate(config, sources, ident)
            except dimse.SourceError as exc:
                instances, result.dimse_status, result.error = [], LOOKUP_FAILED, str(exc)
            for source, items in _by_preferred(instances):
                async for response in self._one_source(
                    config, source, items, destination, method, strategy, tally
                ):
                    yield response
            if not result.dimse_status:
                result.dimse_status = tally.status()
        result.completed, result.failed = len(tally.completed), len(tally.failed)
        result.failed_sop_instance_uids.extend(tally.failed)
        ok = result.dimse_status == SUCCESS
        result.outcome = (
            pb.OPERATION_OUTCOME_SUCCEEDED if ok
            else pb.OPERATION_OUTCOME_PARTIAL if result.dimse_status == SOME_FAILED
            else pb.OPERATION_OUTCOME_FAILED
        )  # fmt: skip
        get = method == pb.RETRIEVE_METHOD_C_GET
        operation = pb.SPANNING_OPERATION_C_GET if get else pb.SPANNING_OPERATION_C_MOVE
        spec = QuerySpec(request.config_id, request.level, _STUDY_ROOT, ident, 0, "", operation)
        summary = pb.QuerySummary(
            outcome=result.outcome, matches_after_dedup=result.completed,
            elapsed=seconds_to_duration(time.perf_counter() - clock),
        )  # fmt: skip
        await self.engine.audit(spec, summary, started)
        yield pb.RetrieveResponse(result=result)

    async def _one_source(
        self,
        config: pb.SpannerConfig,
        source: Source,
        items: list[Instance],
        destination: pb.DicomNode | None,
        method: int,
        strategy: int,
        tally: Tally,
    ) -> AsyncIterator[pb.RetrieveResponse]:
        uids = [i.sop_uid for i in items]
        timeout = source.timeout(config)
        left = items
        if strategy in (pb.RETRIEVE_STRATEGY_DIRECT, pb.RETRIEVE_STRATEGY_HYBRID):
            yield pb.RetrieveResponse(
                directive=pb.RetrieveDirective(node=source.node, sop_instance_uids=uids)
            )
            if method == pb.RETRIEVE_METHOD_C_GET or destination is None:
                return  # the client gets them from the source itself
            moved = await self._move(source, items, destination.ae_title, timeout)
            tally.completed.extend(u for u in uids if u in moved)
            left = [i for i in items if i.sop_uid not in moved]
            if strategy == pb.RETRIEVE_STRATEGY_DIRECT:
                tally.failed.extend(i.sop_uid for i in left)
                left = []
        if left and destination is not None:
            try:
                fetched = await self.fetch(source, left, timeout)
                loop = asyncio.get_running_loop()
                stored = await loop.run_in_executor(
                    self.engine.threads, dimse.store, dimse.Remote.of(destination),
                    self.engine.calling_ae, fetched, timeout,
                )  # fmt: skip
            except (dimse.SourceError, OSError):
                stored = {}
            done = {normalise_uid(u) for u, status in stored.items() if status in (0, 0xB000)}
            tally.completed.extend(i.sop_uid for i in left if i.sop_uid in done)
            tally.failed.extend(i.sop_uid for i in left if i.sop_uid not in done)
        yield pb.RetrieveResponse(
            progress=pb.RetrieveProgress(
                node_id=source.node_id, completed=len(tally.completed), failed=len(tally.failed)
            )
        )

    async def _move(
        self, source: Source, items: list[Instance], destination: str, timeout: float
    ) -> set[str]:
        """Direct C-MOVE per series; the UIDs the source reported as moved."""
        moved: set[str] = set()
        by_series: dict[tuple[str, str], list[Instance]] = {}
        for item in items:
            by_series.setdefault((item.study_uid, item.series_uid), []).append(item)
        loop = asyncio.get_running_loop()
        for (study, series), group in by_series.items():
            ident = _ident("IMAGE", StudyInstanceUID=study, SeriesInstanceUID=series,
                           SOPInstanceUID=[i.sop_uid for i in group])  # fmt: skip
            try:
                final = await loop.run_in_executor(
                    self.engine.threads, dimse.move, dimse.Remote.of(source.node),
                    self.engine.calling_ae, model_uid(_STUDY_ROOT, "move"), ident,
                    destination, timeout, lambda _p: None,
                )  # fmt: skip
            except (dimse.SourceError, OSError):
                continue
            if final.status in (SUCCESS, SOME_FAILED) and final.completed:
                failed = set(final.failed_uids)
                moved.update(i.sop_uid for i in group if i.sop_uid not in failed)
        return moved


def _by_preferred(instances: list[Instance]) -> list[tuple[Source, list[Instance]]]:
    """Instances grouped by the preferred source holding them."""
    groups: dict[str, tuple[Source, list[Instance]]] = {}
    for item in instances:
        if item.sources:
            first = item.sources[0]
            groups.setdefault(first.node_id, (first, []))[1].append(item)
    return list(groups.values())
