"""Database URLs for tests: embedded SQLite and the real PostgreSQL on this machine.

Each PostgreSQL test gets a schema of its own (dropped afterwards), so tests
never see each other's tables and can run in any order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

POSTGRES_URL = os.environ.get(
    "CORRMESH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


_postgres_seen = False


def postgres_available() -> bool:
    """True when the server answers; once it has, later calls skip the round trip."""
    global _postgres_seen
    if _postgres_seen:
        return True
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        _postgres_seen = True
        return True
    except Exception:
        return False


def _start_local_postgres() -> None:
    """Starts this machine's PostgreSQL cluster if it is installed but stopped."""
    clusters = Path("/etc/postgresql")
    if not clusters.is_dir() or shutil.which("pg_ctlcluster") is None:
        return
    for version in sorted(p.name for p in clusters.iterdir()):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            timeout=60,
            check=False,
        )


def require_postgres() -> None:
    """Skips without PostgreSQL locally; in CI a missing server is a failure."""
    if postgres_available():
        return
    _start_local_postgres()
    if postgres_available():
        return
    if in_ci():
        pytest.fail(f"PostgreSQL is required in CI and did not answer at {POSTGRES_URL}")
    pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped on exit."""
    require_postgres()
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'create schema "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'drop schema "{schema}" cascade'))
        admin.dispose()


@contextmanager
def database_url_for(kind: str, tmp_path: Path, name: str = "test") -> Iterator[str]:
    """``kind`` is "sqlite" or "postgresql"."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / (name + '.db')}"
    elif kind == "postgresql":
        with postgres_schema_url() as url:
            yield url
    else:
        raise ValueError(kind)
