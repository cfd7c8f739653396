"""Each service's Alembic migrations build exactly its models' schema, on both databases."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect

from corrmesh.runtime.db import create_db_engine, migrate

# service -> (module holding MIGRATIONS_DIR and VERSION_TABLE, tables its models declare)
SERVICES = {
    "ingest": ("corrmesh.ingest.log", {"events"}),
    "correlation": (
        "corrmesh.correlation.store",
        {
            "groups",
            "group_members",
            "group_links",
            "lone_events",
            "correlation_edges",
            "group_updates",
            "consumer_offsets",
            "correlation_config",
            "correlation_links",
            "correlation_feedback",
            "dicom_rollup_members",
            "dicom_state",
        },
    ),
    "topology": (
        "corrmesh.topology.store",
        {"declared_resources", "declared_dependencies", "topology_changes"},
    ),
    "spanner": (
        "corrmesh.spanner.store",
        {"dicom_nodes", "spanner_configs", "source_mappings", "query_logs"},
    ),
}
#: Modules that declare more tables on a service's Base than its models module.
MORE_MODELS = {
    "correlation": (
        "corrmesh.correlation.links",
        "corrmesh.correlation.feedback",
        "corrmesh.correlation.dicom.store",
    )
}


def _service(name: str) -> tuple[Path, str, MetaData, set[str]]:
    module_name, tables = SERVICES[name]
    module = importlib.import_module(module_name)
    models = importlib.import_module(f"corrmesh.{name}.models")
    for more in MORE_MODELS.get(name, ()):
        importlib.import_module(more)
    return module.MIGRATIONS_DIR, module.VERSION_TABLE, models.Base.metadata, tables


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_upgrade_builds_the_models_schema_and_downgrade_removes_it(
    service: str, database_url: str
) -> None:
    migrations_dir, version_table, metadata, tables = _service(service)
    assert set(metadata.tables) == tables
    engine = create_db_engine(database_url)
    try:
        config = Config()
        config.set_main_option("script_location", str(migrations_dir))
        config.attributes["connection_engine"] = engine
        config.attributes["version_table"] = version_table
        migrate(engine, migrations_dir, version_table)
        migrate(engine, migrations_dir, version_table)  # a second run changes nothing
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "version_table": version_table}
            )
            assert compare_metadata(context, metadata) == []
            head = ScriptDirectory.from_config(config).get_current_head()
            assert context.get_current_revision() == head
        assert set(inspect(engine).get_table_names()) == tables | {version_table}

        command.downgrade(config, "base")
        assert not tables & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
