"""HTTP to one cluster's API server through the official ``kubernetes`` client.

The client's ``ApiClient`` does what a kubeconfig or in-cluster config asks
(server, CA, client certificates, bearer or exec tokens); requests go out raw
(``_preload_content`` off, no model deserialisation, which is slow on large
lists; orjson decodes lists and watch events at twice the standard library's
speed) and every request has a client-side ``_request_timeout``: the server's
``timeoutSeconds`` alone cannot stop a dead connection from hanging a sync.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
import urllib3
from kubernetes import client as kube_client
from kubernetes import config as kube_config

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0

Query = Sequence[tuple[str, str | int]]


class KubeError(Exception):
    """A request to the API server failed."""


class KubeUnreachableError(KubeError):
    """The API server did not answer (refused, timed out, broken stream)."""


class KubeApiError(KubeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.reason = reason
        self.message = message


def _api_error(status: int, body: bytes) -> KubeApiError:
    """A KubeApiError from a response, using the Status object when there is one."""
    reason, message = "", ""
    try:
        document = json.loads(body)
        if isinstance(document, dict):
            reason = str(document.get("reason", ""))
            message = str(document.get("message", ""))
    except ValueError:
        message = body[:200].decode("utf-8", "replace")
    return KubeApiError(status, reason, message)


class ClusterClient:
    """GETs and watch streams against one API server, JSON in and out."""

    def __init__(self, api_client: kube_client.ApiClient) -> None:
        self.api_client = api_client

    @classmethod
    def from_kubeconfig(cls, path: str, context: str | None = None) -> ClusterClient:
        """A client for ``context`` (default: current) of the kubeconfig at ``path``."""
        api_client = kube_config.new_client_from_config(
            config_file=path, context=context or None, persist_config=False
        )
        return cls(api_client)

    @classmethod
    def in_cluster(cls) -> ClusterClient:
        """A client from the pod's service account (token, CA, KUBERNETES_SERVICE_*)."""
        configuration = kube_client.Configuration()
        kube_config.load_incluster_config(client_configuration=configuration)
        return cls(kube_client.ApiClient(configuration))

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    def close(self) -> None:
        self.api_client.close()

    def _request(
        self, path: str, query: Query, accept: str, read_timeout: float
    ) -> urllib3.BaseHTTPResponse:
        method, url, headers, body, post = self.api_client.param_serialize(
            method="GET",
            resource_path=path,
            query_params=list(query),
            header_params={"Accept": accept},
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api_client.call_api(
                method,
                url,
                header_params=headers,
                body=body,
                post_params=post,
                _request_timeout=(CONNECT_TIMEOUT_SECONDS, read_timeout),
            )
        except (urllib3.exceptions.HTTPError, OSError, kube_client.ApiException) as exc:
            raise KubeUnreachableError(f"{self.host}: {exc}") from exc
        raw: urllib3.BaseHTTPResponse = response.response
        if raw.status >= 400:
            try:
                data = raw.read()
            except (urllib3.exceptions.HTTPError, OSError):
                data = b""
            raw.release_conn()
            raise _api_error(raw.status, data)
        return raw

    def get_json(
        self,
        path: str,
        query: Query = (),
        accept: str = "application/json",
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> dict[str, Any]:
        """The JSON document at ``path``; raises KubeApiError or KubeUnreachableError."""
        raw = self._request(path, query, accept, read_timeout)
        try:
            data = raw.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeUnreachableError(f"{self.host}{path}: {exc}") from exc
        finally:
            raw.release_conn()
        try:
            document = orjson.loads(data)
        except ValueError as exc:
            raise KubeError(f"{path}: the response is not JSON") from exc
        if not isinstance(document, dict):
            raise KubeError(f"{path}: the response is not a JSON object")
        return document

    def open_watch(self, path: str, query: Query, accept: str, read_timeout: float) -> WatchStream:
        """Starts a watch of ``path``; raises KubeApiError or KubeUnreachableError.
        ``read_timeout`` bounds the silence between two chunks of the stream."""
        return WatchStream(self._request(path, query, accept, read_timeout), self.host + path)


def split_lines(segments: Iterable[bytes]) -> Iterator[bytes]:
    """The non-empty newline-separated lines of a byte stream, as bytes (json
    decodes them directly). Linear in the input: the client library's own
    splitter copies the rest of its buffer after each line, which is quadratic
    in the events a burst packs into one chunk."""
    parts: list[bytes] = []  # of a line not yet ended, however many chunks it spans
    for segment in segments:
        if b"\n" not in segment:
            parts.append(segment)
            continue
        if parts:
            parts.append(segment)
            segment = b"".join(parts)
            parts = []
        lines = segment.split(b"\n")
        rest = lines.pop()
        if rest:
            parts.append(rest)
        for line in lines:
            if line:
                yield line
    # A line the stream ends without finishing is not an event.


class WatchStream:
    """One open watch: its events as decoded JSON, and a way to end it from
    another thread (a reflector being stopped)."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, where: str) -> None:
        self.raw = raw
        self.where = where
        self.closed = False

    def events(self) -> Iterator[dict[str, Any]]:
        """Watch events until the server ends the stream; a silent or broken
        stream raises KubeUnreachableError."""
        try:
            for line in split_lines(self.raw.stream(amt=None, decode_content=False)):
                try:
                    event = orjson.loads(line)
                except ValueError as exc:
                    raise KubeError(f"{self.where}: a watch event is not JSON") from exc
                if isinstance(event, dict):
                    yield event
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self.closed:
                return
            raise KubeUnreachableError(f"{self.where}: watch stream broke: {exc}") from exc
        finally:
            if not self.closed:
                self.closed = True
                self.raw.release_conn()

    def close(self) -> None:
        """Ends the stream from any thread; a reader blocked on it returns."""
        if self.closed:
            return
        self.closed = True
        try:
            self.raw.shutdown()
            self.raw.close()
        except (urllib3.exceptions.HTTPError, OSError, RuntimeError):
            pass  # already released or gone
