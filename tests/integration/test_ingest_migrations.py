"""Ingest's Alembic migrations build exactly the tables its models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from corrmesh.ingest.log import MIGRATIONS_DIR, VERSION_TABLE
from corrmesh.ingest.models import Base
from corrmesh.runtime.db import create_db_engine, migrate


def test_migrations_match_models(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        migrate(engine, MIGRATIONS_DIR, VERSION_TABLE)
        migrate(engine, MIGRATIONS_DIR, VERSION_TABLE)  # a second run changes nothing
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            assert compare_metadata(context, Base.metadata) == []
            tables = set(inspect(connection).get_table_names())
            version = context.get_current_revision()
    finally:
        engine.dispose()
    assert tables == {"events", VERSION_TABLE}
    assert version == "0001"
