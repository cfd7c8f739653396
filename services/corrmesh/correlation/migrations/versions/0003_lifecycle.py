"""Lifecycle and strategies: event details, resolution, group links, late count.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENT_TABLES = ("group_members", "lone_events")
_EVENT_TEXT = ("description", "event_type", "camera_id", "controller_id", "detection_type")


def upgrade() -> None:
    for table in _EVENT_TABLES:
        with op.batch_alter_table(table) as batch:
            for name in _EVENT_TEXT:
                batch.add_column(sa.Column(name, sa.Text(), nullable=False, server_default=""))
            batch.add_column(
                sa.Column("resolves", sa.Boolean(), nullable=False, server_default=sa.false())
            )
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("fingerprints", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("metadata_json", sa.Text(), nullable=False, server_default="{}"))
    with op.batch_alter_table("consumer_offsets") as batch:
        batch.add_column(
            sa.Column("late_events", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "group_links",
        sa.Column("group_id", sa.String(), nullable=False),
        sa.Column("other_group_id", sa.String(), nullable=False),
        sa.Column("relationship_type", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "other_group_id", name=op.f("pk_group_links")),
    )


def downgrade() -> None:
    op.drop_table("group_links")
    with op.batch_alter_table("consumer_offsets") as batch:
        batch.drop_column("late_events")
    with op.batch_alter_table("groups") as batch:
        for name in ("metadata_json", "fingerprints", "resolved_at"):
            batch.drop_column(name)
    for table in _EVENT_TABLES:
        with op.batch_alter_table(table) as batch:
            for name in ("resolves", *reversed(_EVENT_TEXT)):
                batch.drop_column(name)
