"""DICOM batch and patient groups: their listed members, alert state and id key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dicom_rollup_members",
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
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("camera_id", sa.Text(), nullable=False),
        sa.Column("controller_id", sa.Text(), nullable=False),
        sa.Column("detection_type", sa.Text(), nullable=False),
        sa.Column("resolves", sa.Boolean(), nullable=False),
        sa.Column("group_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "group_id", name=op.f("pk_dicom_rollup_members")),
    )
    op.create_index(
        op.f("ix_dicom_rollup_members_occurred_at"), "dicom_rollup_members", ["occurred_at"]
    )
    op.create_index(
        "ix_dicom_rollup_members_group_sequence",
        "dicom_rollup_members",
        ["group_id", "sequence"],
    )
    op.create_table(
        "dicom_state",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name=op.f("pk_dicom_state")),
    )


def downgrade() -> None:
    op.drop_table("dicom_state")
    op.drop_table("dicom_rollup_members")
