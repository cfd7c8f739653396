"""Alembic environment for Spanner's tables (version table alembic_version_spanner)."""

from corrmesh.runtime.db import run_migrations_online
from corrmesh.spanner.models import Base

run_migrations_online(Base.metadata)
