"""QIDO-RS and WADO-RS endpoints of the spanner, on Starlette.

QIDO: ``/studies``, ``/series``, ``/instances`` and their nested forms; query
parameters are matching keys (keyword or 8-hex-digit tag), ``includefield``
(a key or ``all``) asks for more attributes, ``limit``/``offset`` page, and a
``Warning: 299`` header says when the result is partial or was cut. The
configuration is ``?config=<id>``, else the first enabled one supporting QIDO.
WADO: ``/studies/{study}[/series/{series}[/instances/{sop}]]`` as
multipart/related application/dicom, and ``.../metadata`` as DICOM JSON.
"""

from __future__ import annotations

import uuid
from io import BytesIO
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from corrmesh.spanner.datasets import UTF8
from corrmesh.spanner.dedup import Folded
from corrmesh.spanner.engine import ConfigUnavailableError, QuerySpec, SpannerEngine
from corrmesh.spanner.retrieve import Retriever
from corrmesh.spanner.store import NotFoundError
from corrmesh.v1 import spanner_pb2 as pb

DICOM_JSON = "application/dicom+json"
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching", "config"}
#: What every QIDO answer carries at its level (PS3.18 required return attributes, in part).
_DEFAULTS: dict[int, list[str]] = {
    pb.QUERY_LEVEL_STUDY: ["StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
                           "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                           "StudyID", "StudyDescription", "ModalitiesInStudy"],
    pb.QUERY_LEVEL_SERIES: ["StudyInstanceUID", "SeriesInstanceUID", "Modality",
                            "SeriesNumber", "SeriesDescription"],
    pb.QUERY_LEVEL_IMAGE: ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                           "SOPClassUID", "InstanceNumber"],
}  # fmt: skip
_LEVELS: dict[int, str] = {
    pb.QUERY_LEVEL_STUDY: "STUDY",
    pb.QUERY_LEVEL_SERIES: "SERIES",
    pb.QUERY_LEVEL_IMAGE: "IMAGE",
}


class BadQuery(Exception):  # noqa: N818 - an HTTP 400, named for what the client sent
    pass


def qido_identifier(level: int, params: list[tuple[str, str]], path: dict[str, str]) -> Dataset:
    """The C-FIND identifier a QIDO request means."""
    ds = Dataset()
    ds.SpecificCharacterSet = UTF8
    ds.QueryRetrieveLevel = _LEVELS[level]
    fields = list(_DEFAULTS[level])
    for key, value in params:
        if key == "includefield":
            fields.extend(v for v in value.split(",") if v and v != "all")
    for keyword in fields:
        _set(ds, keyword, "")
    for key, value in [*params, *path.items()]:
        if key not in _CONTROL:
            _set(ds, key, value.split(",") if "," in value else value)
    return ds


def _set(ds: Dataset, key: str, value: str | list[str]) -> None:
    try:
        tag = int(key, 16) if len(key) == 8 and key.isalnum() and not key.isalpha() else None
    except ValueError:
        tag = None
    tag = tag if tag is not None else tag_for_keyword(key)
    if tag is None:
        raise BadQuery(f"unknown attribute {key!r}")
    ds.add_new(tag, dictionary_VR(tag), value)


def build_app(engine: SpannerEngine, retriever: Retriever) -> Starlette:
    """The ASGI application."""

    async def config_for(request: Request) -> str:
        chosen = request.query_params.get("config", "")
        if chosen:
            return chosen
        usable = [c for c in await engine.configs() if c.enabled and c.supports_qido]
        if not usable:
            raise ConfigUnavailableError("no enabled configuration supports QIDO-RS")
        return usable[0].config_id

    async def search(request: Request, level: int) -> Response:
        try:
            limit = int(request.query_params.get("limit", "0") or 0)
            offset = int(request.query_params.get("offset", "0") or 0)
            if limit < 0 or offset < 0:
                raise ValueError
        except ValueError:
            return _problem(400, "limit and offset must be non-negative integers")
        try:
            ident = qido_identifier(
                level, list(request.query_params.multi_items()), dict(request.path_params)
            )
            config_id = await config_for(request)
            spec = QuerySpec(config_id, level, pb.INFORMATION_MODEL_STUDY_ROOT, ident,
                             0, request.client.host if request.client else "",
                             pb.SPANNING_OPERATION_QIDO)  # fmt: skip
            matches: list[Folded] = []
            summary = pb.QuerySummary()
            async for item in engine.query(spec):
                if isinstance(item, Folded):
                    matches.append(item)
                elif isinstance(item, pb.QuerySummary):
                    summary = item
        except BadQuery as exc:
            return _problem(400, str(exc))
        except NotFoundError as exc:
            return _problem(404, f"{exc.resource_type} {exc.resource_id!r} not found")
        except ConfigUnavailableError as exc:
            return _problem(503, str(exc))
        if summary.outcome == pb.OPERATION_OUTCOME_FAILED:
            return _problem(502, "the spanning query failed at its sources")
        page = matches[offset : offset + limit if limit else None]
        headers = {}
        warnings = []
        if summary.partial:
            warnings.append('299 corrmesh "Some sources did not answer; the result is partial"')
        if limit and offset + limit < len(matches):
            warnings.append('299 corrmesh "The number of results exceeded the limit"')
        if warnings:
            headers["Warning"] = ", ".join(warnings)
        if not page:
            return Response(status_code=204, headers=headers)
        body = [m.dataset.to_json_dict() for m in page]
        return JSONResponse(body, media_type=DICOM_JSON, headers=headers)

    async def wado(request: Request) -> Response:
        params = dict(request.path_params)
        level = (
            pb.QUERY_LEVEL_IMAGE if "SOPInstanceUID" in params
            else pb.QUERY_LEVEL_SERIES if "SeriesInstanceUID" in params
            else pb.QUERY_LEVEL_STUDY
        )  # fmt: skip
        ident = Dataset()
        ident.QueryRetrieveLevel = _LEVELS[level]
        for key, value in params.items():
            setattr(ident, key, value)
        try:
            config_id = await config_for(request)
            spec = QuerySpec(config_id, level, pb.INFORMATION_MODEL_STUDY_ROOT, ident,
                             0, "", pb.SPANNING_OPERATION_WADO)  # fmt: skip
            instances = await retriever.fetch_all(spec)
        except NotFoundError as exc:
            return _problem(404, f"{exc.resource_type} {exc.resource_id!r} not found")
        except ConfigUnavailableError as exc:
            return _problem(503, str(exc))
        if not instances:
            return _problem(404, "no source holds the requested instances")
        if request.url.path.endswith("/metadata"):
            return JSONResponse([_metadata(d) for d in instances], media_type=DICOM_JSON)
        return _multipart(instances)

    def route(path: str, level: int) -> Route:
        async def endpoint(request: Request) -> Response:
            return await search(request, level)

        return Route(path, endpoint)

    routes = [
        route("/studies", pb.QUERY_LEVEL_STUDY),
        route("/series", pb.QUERY_LEVEL_SERIES),
        route("/instances", pb.QUERY_LEVEL_IMAGE),
        route("/studies/{StudyInstanceUID}/series", pb.QUERY_LEVEL_SERIES),
        route("/studies/{StudyInstanceUID}/instances", pb.QUERY_LEVEL_IMAGE),
        route("/studies/{StudyInstanceUID}/series/{SeriesInstanceUID}/instances",
              pb.QUERY_LEVEL_IMAGE),
    ]  # fmt: skip
    for base in (
        "/studies/{StudyInstanceUID}",
        "/studies/{StudyInstanceUID}/series/{SeriesInstanceUID}",
        "/studies/{StudyInstanceUID}/series/{SeriesInstanceUID}/instances/{SOPInstanceUID}",
    ):
        routes += [Route(base, wado), Route(base + "/metadata", wado)]
    return Starlette(routes=routes)


def _metadata(dataset: Dataset) -> dict[str, Any]:
    dataset.decode()
    without_pixels = Dataset({e.tag: e for e in dataset if e.tag != 0x7FE00010})
    return without_pixels.to_json_dict()


def _multipart(instances: list[Dataset]) -> Response:
    boundary = uuid.uuid4().hex
    parts = []
    for dataset in instances:
        buffer = BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        parts.append(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + buffer.getvalue()
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    media = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return Response(body, headers={"Content-Type": media})


def _problem(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
