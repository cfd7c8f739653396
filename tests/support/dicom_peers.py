"""Real DICOM peers on loopback: Orthanc (with DICOMweb), dcmtk's dcmqrscp and storescp.

Installed from Debian's packages when missing (as root); without them the
test is skipped, except under ``CI=true``, where it fails. Every peer runs in
its own process group on free high ports with ``TCP_NODELAY=1`` (Debian's
DCMTK leaves Nagle on otherwise, costing ~40 ms per round trip), and is ended
by the fixture that started it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pydicom import Dataset, dcmread

from corrmesh.cli.mesh import free_port
from tests.support.databases import in_ci

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
PACKAGES = ("orthanc", "orthanc-dicomweb", "dcmtk")
_REQUIRED = (ORTHANC, DICOMWEB_PLUGIN, "/usr/bin/dcmqrscp", "/usr/bin/storescp")


def _installed() -> bool:
    return all(Path(path).exists() for path in _REQUIRED)


def require_dicom_peers() -> None:
    """Installs Orthanc, its DICOMweb plugin and dcmtk if needed; skips (fails in CI) if not."""
    if _installed():
        return
    problem = "apt-get is not available"
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", *PACKAGES], capture_output=True, env=env, check=False
        )
        problem = done.stderr.decode(errors="replace")[-500:]
        # The package may start a system Orthanc on 4242/8042; these tests run their own.
        if Path("/etc/init.d/orthanc").exists():
            subprocess.run(["/etc/init.d/orthanc", "stop"], capture_output=True, check=False)
    if _installed():
        return
    message = f"DICOM peers ({', '.join(PACKAGES)}) could not be installed: {problem}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    """Waits until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def wait_for_port_closed(port: int, timeout: float = 10.0) -> None:
    """Waits until nothing accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} still accepts connections after {timeout} s")


@dataclass
class Process:
    """One peer process in its own process group, restartable."""

    argv: list[str]
    log_path: Path
    ports: list[int]
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "TCP_NODELAY": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.cwd, start_new_session=True,
            )  # fmt: skip
        for port in self.ports:
            wait_for_port(port)

    def stop(self) -> None:
        """Ends the process group (dcmqrscp forks a child per association)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
        # A dcmqrscp child still ending holds the inherited listening socket: a
        # restart would otherwise see the port open before its own bind.
        for port in self.ports:
            wait_for_port_closed(port)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The peer down (connections refused) inside the block, up again after."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The peer hung inside the block: SIGSTOP, so connections are accepted by
        the kernel but never answered, as with a PACS that stopped responding."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.process.pid, signal.SIGCONT)


@dataclass
class Peer:
    """A PACS: its AE title, DIMSE port, optional DICOMweb root, and its process."""

    name: str
    ae_title: str
    port: int
    process: Process
    http_port: int = 0

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web" if self.http_port else ""


@dataclass
class Sink:
    """storescp as a C-MOVE destination; ``received()`` reads what landed."""

    ae_title: str
    port: int
    directory: Path
    process: Process

    def received(self) -> set[str]:
        """SOP Instance UIDs of every file stored so far."""
        uids = set()
        for path in self.directory.iterdir():
            if path.is_file():
                uids.add(str(dcmread(path, stop_before_pixels=True).SOPInstanceUID).strip())
        return uids

    def clear(self) -> None:
        for path in self.directory.iterdir():
            if path.is_file():
                path.unlink()


@dataclass
class Peers:
    """Two Orthancs (A: Latin1, B: UTF-8) with DICOMweb, one dcmqrscp, one storescp sink."""

    orthanc_a: Peer
    orthanc_b: Peer
    dcmqrscp: Peer
    sink: Sink
    #: The AE title and port the spanner's SCP uses, known to every peer as a move destination.
    spanner_ae: str
    spanner_port: int
    loaded: dict[str, list[Dataset]] = field(default_factory=dict)

    @property
    def all(self) -> list[Peer]:
        return [self.orthanc_a, self.orthanc_b, self.dcmqrscp]


def _orthanc(
    root: Path, name: str, ae: str, encoding: str, destinations: dict[str, tuple[str, int]]
) -> Peer:
    folder = root / name
    (folder / "db").mkdir(parents=True)
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": name,
        "DicomAet": ae,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomAlwaysAllowStore": True,
        "DefaultEncoding": encoding,
        "DicomModalities": {k: [aet, "127.0.0.1", p] for k, (aet, p) in destinations.items()},
        "StableAge": 1,
        "SaveJobs": False,
    }  # fmt: skip
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    process = Process([ORTHANC, str(config_path)], folder / "orthanc.log", [dicom_port, http_port])
    return Peer(name, ae, dicom_port, process, http_port)


def _dcmqrscp(root: Path, ae: str, destinations: dict[str, tuple[str, int]]) -> Peer:
    folder = root / "dcmqrscp"
    (folder / "db").mkdir(parents=True)
    port = free_port()
    hosts = "\n".join(f"{key} = ({aet}, 127.0.0.1, {p})" for key, (aet, p) in destinations.items())
    config = (
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 32\n"
        f"HostTable BEGIN\n{hosts}\nHostTable END\n"
        "VendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\n{ae} {folder / 'db'} RW (200, 256mb) ANY\nAETable END\n"
    )
    config_path = folder / "dcmqrscp.cfg"
    config_path.write_text(config)
    argv = ["dcmqrscp", "-c", str(config_path), "-dhl", "+U8", str(port)]
    return Peer("dcmqrscp", ae, port, Process(argv, folder / "dcmqrscp.log", [port]))


def _sink(root: Path, ae: str, port: int) -> Sink:
    folder = root / "sink"
    (folder / "in").mkdir(parents=True)
    argv = ["storescp", "-aet", ae, "-od", str(folder / "in"), "-dhl", "+xa", str(port)]
    return Sink(ae, port, folder / "in", Process(argv, folder / "storescp.log", [port]))


@contextmanager
def running_peers(root: Path, spanner_ae: str = "CORRMESH") -> Iterator[Peers]:
    """Starts the three PACS and the sink; every process is ended on exit."""
    require_dicom_peers()
    sink_port, spanner_port = free_port(), free_port()
    destinations = {"sink": ("STORESCP", sink_port), "spanner": (spanner_ae, spanner_port)}
    peers = Peers(
        orthanc_a=_orthanc(root, "orthanc-a", "ORTHANCA", "Latin1", destinations),
        orthanc_b=_orthanc(root, "orthanc-b", "ORTHANCB", "Utf8", destinations),
        dcmqrscp=_dcmqrscp(root, "DCMQRSCP", destinations),
        sink=_sink(root, "STORESCP", sink_port),
        spanner_ae=spanner_ae,
        spanner_port=spanner_port,
    )
    processes = [p.process for p in peers.all] + [peers.sink.process]
    try:
        for process in processes:
            process.start()
        for orthanc in (peers.orthanc_a, peers.orthanc_b):
            _wait_http(f"http://127.0.0.1:{orthanc.http_port}/system")
        yield peers
    finally:
        for process in processes:
            process.stop()


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer")
        time.sleep(0.1)


def load_orthanc(peer: Peer, datasets: Iterable[Dataset]) -> None:
    """Uploads datasets through Orthanc's REST API."""
    from io import BytesIO

    with httpx.Client(base_url=f"http://127.0.0.1:{peer.http_port}", timeout=30.0) as client:
        for dataset in datasets:
            buffer = BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
            response = client.post("/instances", content=buffer.getvalue())
            response.raise_for_status()


def load_dimse(peer: Peer, datasets: Iterable[Dataset]) -> None:
    """Stores datasets with C-STORE (how dcmqrscp's database gets filled)."""
    from pynetdicom import AE

    items = list(datasets)
    ae = AE(ae_title="LOADER")
    for syntax in {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in items}:
        ae.add_requested_context(syntax[0], syntax[1])
    assoc = ae.associate("127.0.0.1", peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise RuntimeError(f"cannot associate with {peer.ae_title}")
    try:
        for dataset in items:
            status = assoc.send_c_store(dataset)
            if getattr(status, "Status", None) != 0:
                raise RuntimeError(f"C-STORE to {peer.ae_title} failed: {status}")
    finally:
        assoc.release()
