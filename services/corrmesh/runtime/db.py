"""Database engines and Alembic migrations, shared by every service.

Each service owns its database (a SQLite file under var/ by default, PostgreSQL
through ``CORRMESH_<SERVICE>_DATABASE_URL``), its SQLAlchemy models and its own
Alembic version folder (``<service>/migrations``). Servers migrate to head on
start, so a fresh checkout needs no separate step.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    """MetaData with stable constraint names, so migrations are portable."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def _normalise_url(url: str) -> str:
    # A bare postgresql:// URL means psycopg 3, the driver we ship.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and full fsync so a commit is durable."""
    url = _normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=False,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transaction survives power loss, not only a crash;
            # an event is acknowledged only after this commit.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def session_factory(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def migrate(engine: Engine, migrations_dir: Path, version_table: str) -> None:
    """Upgrades the database behind ``engine`` to the newest revision.

    ``version_table`` keeps services apart when they share one PostgreSQL
    database (as CI does): each service tracks its own revisions.
    """
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["connection_engine"] = engine
    config.attributes["version_table"] = version_table
    command.upgrade(config, "head")


def run_migrations_online(target_metadata: MetaData) -> None:
    """Body of each service's Alembic ``env.py``.

    Uses the engine handed over by :func:`migrate`, or, when Alembic is run
    from the command line, ``-x url=...``.
    """
    from alembic import context

    config = context.config
    engine: Engine | None = config.attributes.get("connection_engine")
    if engine is None:
        url = context.get_x_argument(as_dictionary=True).get("url")
        if not url:
            raise SystemExit("run alembic with -x url=<database url>")
        engine = create_db_engine(url)
    version_table = config.attributes.get("version_table", "alembic_version")
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        context.run_migrations()
