"""Groups, members, edges, lone events, the update log, offsets and configuration.

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

_AWARE = sa.DateTime(timezone=True)


def _event_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("correlation_id", sa.String(), nullable=False),
        sa.Column("occurred_at", _AWARE, nullable=False),
        sa.Column("domain", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("resource_key", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("resource", sa.LargeBinary(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("group_id", sa.String(), nullable=False),
        sa.Column("created_sequence", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("domain", sa.Integer(), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("primary_event_id", sa.String(), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("aggregate_score", sa.Float(), nullable=False),
        sa.Column("first_event_at", _AWARE, nullable=False),
        sa.Column("last_event_at", _AWARE, nullable=False),
        sa.Column("created_at", _AWARE, nullable=False),
        sa.Column("updated_at", _AWARE, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_groups")),
        sa.UniqueConstraint("created_sequence", name=op.f("uq_groups_created_sequence")),
    )
    op.create_index(op.f("ix_groups_status"), "groups", ["status"])

    op.create_table(
        "group_members",
        *_event_columns(),
        sa.Column("group_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_group_members")),
    )
    op.create_index(op.f("ix_group_members_group_id"), "group_members", ["group_id"])
    op.create_index(op.f("ix_group_members_occurred_at"), "group_members", ["occurred_at"])

    op.create_table(
        "lone_events",
        *_event_columns(),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_lone_events")),
    )
    op.create_index(op.f("ix_lone_events_occurred_at"), "lone_events", ["occurred_at"])

    op.create_table(
        "correlation_edges",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("group_id", sa.String(), nullable=False),
        sa.Column("from_event_id", sa.String(), nullable=False),
        sa.Column("to_event_id", sa.String(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("strategy", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detected_at", _AWARE, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_correlation_edges")),
        sa.UniqueConstraint(
            "from_event_id", "to_event_id", name=op.f("uq_correlation_edges_from_event_id")
        ),
    )
    op.create_index(op.f("ix_correlation_edges_group_id"), "correlation_edges", ["group_id"])

    op.create_table(
        "group_updates",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("group_id", sa.String(), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("domain", sa.Integer(), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_group_updates")),
    )
    op.create_index(op.f("ix_group_updates_group_id"), "group_updates", ["group_id"])

    op.create_table(
        "consumer_offsets",
        sa.Column("consumer", sa.String(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("watermark", _AWARE, nullable=True),
        sa.Column("newest_event_at", _AWARE, nullable=True),
        sa.Column("events_in", sa.BigInteger(), nullable=False),
        sa.Column("groups_created", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _AWARE, nullable=False),
        sa.PrimaryKeyConstraint("consumer", name=op.f("pk_consumer_offsets")),
    )

    op.create_table(
        "correlation_config",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", _AWARE, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_correlation_config")),
    )


def downgrade() -> None:
    for table in (
        "correlation_config",
        "consumer_offsets",
        "group_updates",
        "correlation_edges",
        "lone_events",
        "group_members",
        "groups",
    ):
        op.drop_table(table)
