"""Topology's Alembic migrations produce exactly the models' schema, on both databases."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from corrmesh.runtime.db import create_db_engine, migrate
from corrmesh.topology.models import Base
from corrmesh.topology.store import MIGRATIONS_DIR, VERSION_TABLE

TABLES = {"declared_resources", "declared_dependencies", "topology_changes"}


def test_upgrade_matches_models(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        migrate(engine, MIGRATIONS_DIR, VERSION_TABLE)
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() == "0001"
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migrate_twice_is_a_no_op_and_downgrade_removes_tables(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        migrate(engine, MIGRATIONS_DIR, VERSION_TABLE)
        migrate(engine, MIGRATIONS_DIR, VERSION_TABLE)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection_engine"] = engine
        config.attributes["version_table"] = VERSION_TABLE
        command.downgrade(config, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
