"""Correlation-id links and operator feedback.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "correlation_links",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("parent_correlation_id", sa.String(), nullable=False),
        sa.Column("child_correlation_id", sa.String(), nullable=False),
        sa.Column("relationship_type", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", _AWARE, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_correlation_links")),
        # Its leading column also serves lookups by parent.
        sa.UniqueConstraint(
            "parent_correlation_id",
            "child_correlation_id",
            "relationship_type",
            name=op.f("uq_correlation_links_parent_correlation_id"),
        ),
    )
    op.create_index(
        op.f("ix_correlation_links_child_correlation_id"),
        "correlation_links",
        ["child_correlation_id"],
    )

    op.create_table(
        "correlation_feedback",
        sa.Column("feedback_id", sa.String(), nullable=False),
        sa.Column("group_id", sa.String(), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("domain", sa.Integer(), nullable=False),
        sa.Column("strategies", sa.JSON(), nullable=False),
        sa.Column("created_at", _AWARE, nullable=False),
        sa.PrimaryKeyConstraint("feedback_id", name=op.f("pk_correlation_feedback")),
    )
    op.create_index(op.f("ix_correlation_feedback_group_id"), "correlation_feedback", ["group_id"])


def downgrade() -> None:
    op.drop_table("correlation_feedback")
    op.drop_table("correlation_links")
