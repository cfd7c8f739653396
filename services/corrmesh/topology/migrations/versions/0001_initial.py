"""Declared resources and dependencies, and the topology change log.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only autoincrements an INTEGER PRIMARY KEY; elsewhere it is 64-bit.
SEQUENCE_INTEGER = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "declared_resources",
        sa.Column("id", SEQUENCE_INTEGER, autoincrement=True, nullable=False),
        sa.Column("resource_key", sa.String(length=1100), nullable=False),
        sa.Column("cluster", sa.String(length=253), nullable=False),
        sa.Column("kind", sa.String(length=253), nullable=False),
        sa.Column("namespace", sa.String(length=253), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("uid", sa.String(length=253), nullable=False),
        sa.Column("api_version", sa.String(length=253), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_declared_resources")),
        sa.UniqueConstraint("resource_key", name=op.f("uq_declared_resources_resource_key")),
    )
    op.create_table(
        "declared_dependencies",
        sa.Column("id", SEQUENCE_INTEGER, autoincrement=True, nullable=False),
        sa.Column("dependent_id", SEQUENCE_INTEGER, nullable=False),
        sa.Column("dependency_id", SEQUENCE_INTEGER, nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dependent_id"],
            ["declared_resources.id"],
            name=op.f("fk_declared_dependencies_dependent_id_declared_resources"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dependency_id"],
            ["declared_resources.id"],
            name=op.f("fk_declared_dependencies_dependency_id_declared_resources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_declared_dependencies")),
        sa.UniqueConstraint(
            "dependent_id",
            "dependency_id",
            name=op.f("uq_declared_dependencies_dependent_id"),
        ),
    )
    op.create_index(
        op.f("ix_declared_dependencies_dependent_id"),
        "declared_dependencies",
        ["dependent_id"],
    )
    op.create_index(
        op.f("ix_declared_dependencies_dependency_id"),
        "declared_dependencies",
        ["dependency_id"],
    )
    op.create_table(
        "topology_changes",
        sa.Column("sequence", SEQUENCE_INTEGER, autoincrement=True, nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(length=253), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("change", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_topology_changes")),
    )


def downgrade() -> None:
    op.drop_table("topology_changes")
    op.drop_index(op.f("ix_declared_dependencies_dependency_id"), "declared_dependencies")
    op.drop_index(op.f("ix_declared_dependencies_dependent_id"), "declared_dependencies")
    op.drop_table("declared_dependencies")
    op.drop_table("declared_resources")
