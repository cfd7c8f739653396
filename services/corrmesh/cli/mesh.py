"""Starts the four services as separate processes on one machine and wires them.

Used by ``corrmesh up`` and by the end-to-end tests, so what a user runs is
what the tests exercise: each service is ``python -m corrmesh.<service>`` with
its peers' addresses in ``CORRMESH_*_ADDRESS`` variables.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from corrmesh.runtime.settings import DEFAULT_GRPC_PORTS, SERVICES

#: Start order: producers and oracles before their consumers.
START_ORDER = ("topology", "ingest", "spanner", "correlation")


#: Starts on newly picked free ports before giving up (see Mesh.start).
START_ATTEMPTS = 3
#: What a service's log says when its port was taken (gRPC, asyncio and pynetdicom alike).
PORT_TAKEN = "Address already in use"


class PortTakenError(RuntimeError):
    """A service exited at start because something else holds its port."""


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MeshProcess:
    service: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Mesh:
    """Four service processes; use as a context manager or call start()/stop()."""

    var_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    processes: dict[str, MeshProcess] = field(default_factory=dict)
    #: Ports were picked free (not the defaults): a start may pick them again.
    free_ports: bool = False
    #: The caller's settings, which win over picked ports.
    chosen_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def on_free_ports(cls, var_dir: Path, env: Mapping[str, str] | None = None) -> Mesh:
        mesh = cls(var_dir=var_dir, free_ports=True, chosen_env=dict(env or {}))
        mesh.pick_free_ports()
        return mesh

    def pick_free_ports(self) -> None:
        """New free ports for every service and Ingest's edge listeners (so meshes
        side by side never share a port); the caller's own settings stay."""
        picked = {
            "CORRMESH_INGEST_DICOM_PORT": str(free_port()),
            "CORRMESH_INGEST_WEBHOOK_PORT": str(free_port()),
        }
        self.env = {**picked, **self.chosen_env}
        self.ports = {s: free_port() for s in SERVICES}

    @classmethod
    def on_default_ports(cls, var_dir: Path, env: Mapping[str, str] | None = None) -> Mesh:
        return cls(var_dir=var_dir, ports=dict(DEFAULT_GRPC_PORTS), env=env or {})

    def address(self, service: str) -> str:
        return f"{self.host}:{self.ports[service]}"

    def service_env(self, service: str) -> dict[str, str]:
        """The environment one service process is started with."""
        env = dict(os.environ)
        env.update(self.env)
        env["CORRMESH_HOST"] = self.host
        env["CORRMESH_VAR_DIR"] = str(self.var_dir)
        env[f"CORRMESH_{service.upper()}_PORT"] = str(self.ports[service])
        for peer in SERVICES:
            env[f"CORRMESH_{peer.upper()}_ADDRESS"] = self.address(peer)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start(self, timeout: float = 60.0) -> None:
        """Starts every service and waits until each reports SERVING.

        A free port is free only when picked: an outgoing connection of any
        process may take it as its ephemeral port before the service binds it.
        So on free ports, a service that exits because its port is taken makes
        the whole mesh start again on new ones (up to :data:`START_ATTEMPTS`).
        """
        self.var_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                for service in START_ORDER:
                    self.start_service(service)
                self.wait_serving(timeout)
                return
            except PortTakenError:
                self.stop()
                if not self.free_ports or attempt == START_ATTEMPTS:
                    raise
                self.pick_free_ports()
            except BaseException:
                self.stop()
                raise

    def start_service(self, service: str) -> MeshProcess:
        log_path = self.var_dir / f"{service}.log"
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", f"corrmesh.{service}"],
            env=self.service_env(service),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: Ctrl-C reaches `corrmesh up` only, which then stops
            # the services in order instead of all at once.
            start_new_session=True,
        )
        log_file.close()
        entry = MeshProcess(service, self.ports[service], process, log_path)
        self.processes[service] = entry
        return entry

    def wait_serving(self, timeout: float = 60.0, services: tuple[str, ...] = SERVICES) -> None:
        """Blocks until each service's health check answers SERVING."""
        deadline = time.monotonic() + timeout
        pending = set(services)
        while pending:
            for service in sorted(pending):
                entry = self.processes.get(service)
                if entry is not None and entry.process.poll() is not None:
                    tail = self.log_tail(service)
                    error = PortTakenError if PORT_TAKEN in tail else RuntimeError
                    raise error(
                        f"{service} exited with {entry.process.returncode}; "
                        f"see {entry.log_path}:\n{tail}"
                    )
                if health_status(self.address(service)) == "SERVING":
                    pending.discard(service)
            if pending and time.monotonic() > deadline:
                tails = "\n".join(f"--- {s}\n{self.log_tail(s)}" for s in sorted(pending))
                raise TimeoutError(f"not serving after {timeout}s: {sorted(pending)}\n{tails}")
            if pending:
                time.sleep(0.2)

    def log_tail(self, service: str, lines: int = 30) -> str:
        entry = self.processes.get(service)
        if entry is None or not entry.log_path.exists():
            return ""
        return "\n".join(entry.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop_service(self, service: str, timeout: float = 15.0, kill: bool = False) -> int | None:
        """SIGTERM (or SIGKILL) one service and wait for it; returns its exit code."""
        entry = self.processes.pop(service, None)
        if entry is None:
            return None
        process = entry.process
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop(self, timeout: float = 15.0) -> dict[str, int | None]:
        """Stops every service, consumers first; returns their exit codes."""
        codes: dict[str, int | None] = {}
        for service in reversed(START_ORDER):
            codes[service] = self.stop_service(service, timeout)
        return codes

    def __enter__(self) -> Mesh:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def health_status(address: str, service: str = "", timeout: float = 1.0) -> str:
    """The grpc.health.v1 status name at ``address``, or "UNREACHABLE"."""
    # A blocking channel, so callers inside and outside an event loop can use it.
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
