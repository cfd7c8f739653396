"""Spanner's first schema: nodes, configurations, source mappings, query logs.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "dicom_nodes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("ae_title", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("dicomweb_base_url", sa.String(2048), nullable=False),
        sa.Column("tls_enabled", sa.Boolean(), nullable=False),
        sa.Column("tls_ca_cert_path", sa.String(4096), nullable=False),
        sa.Column("tls_cert_path", sa.String(4096), nullable=False),
        sa.Column("tls_key_path", sa.String(4096), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _timestamp("create_time"),
        _timestamp("update_time"),
        sa.PrimaryKeyConstraint("id", name="pk_dicom_nodes"),
    )
    op.create_index("ix_dicom_nodes_create_time_id", "dicom_nodes", ["create_time", "id"])

    op.create_table(
        "spanner_configs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("max_concurrent_sources", sa.Integer(), nullable=False),
        sa.Column("query_timeout_ns", sa.BigInteger(), nullable=False),
        sa.Column("failure_strategy", sa.String(32), nullable=False),
        sa.Column("minimum_success_threshold", sa.Integer(), nullable=False),
        sa.Column("deduplication_strategy", sa.String(32), nullable=False),
        sa.Column("supports_dimse_scp", sa.Boolean(), nullable=False),
        sa.Column("supports_qido", sa.Boolean(), nullable=False),
        sa.Column("supports_wado", sa.Boolean(), nullable=False),
        sa.Column("supports_cmove", sa.Boolean(), nullable=False),
        sa.Column("supports_cget", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("cache_ttl_ns", sa.BigInteger(), nullable=False),
        _timestamp("create_time"),
        _timestamp("update_time"),
        sa.PrimaryKeyConstraint("id", name="pk_spanner_configs"),
        sa.UniqueConstraint("name", name="uq_spanner_configs_name"),
    )
    op.create_index("ix_spanner_configs_create_time_id", "spanner_configs", ["create_time", "id"])

    op.create_table(
        "source_mappings",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("config_id", sa.String(36), nullable=False),
        sa.Column("node_id", sa.String(36), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("timeout_ns", sa.BigInteger(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        _timestamp("create_time"),
        _timestamp("update_time"),
        sa.PrimaryKeyConstraint("id", name="pk_source_mappings"),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["spanner_configs.id"],
            name="fk_source_mappings_config_id_spanner_configs",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["dicom_nodes.id"],
            name="fk_source_mappings_node_id_dicom_nodes",
            ondelete="RESTRICT",
        ),
        sa.UniqueConstraint("config_id", "node_id", name="uq_source_mappings_config_id"),
    )
    op.create_index("ix_source_mappings_node_id", "source_mappings", ["node_id"])

    op.create_table(
        "query_logs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("config_id", sa.String(36), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("query_keys", sa.JSON(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("matches_before_dedup", sa.Integer(), nullable=False),
        sa.Column("matches_after_dedup", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        _timestamp("started_at"),
        sa.Column("elapsed_ns", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        _timestamp("create_time"),
        sa.PrimaryKeyConstraint("id", name="pk_query_logs"),
    )
    op.create_index("ix_query_logs_started_at_id", "query_logs", ["started_at", "id"])
    op.create_index(
        "ix_query_logs_config_id_started_at_id",
        "query_logs",
        ["config_id", "started_at", "id"],
    )


def downgrade() -> None:
    op.drop_table("query_logs")
    op.drop_table("source_mappings")
    op.drop_table("spanner_configs")
    op.drop_table("dicom_nodes")
