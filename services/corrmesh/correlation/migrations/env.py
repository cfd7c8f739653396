"""Alembic environment of Correlation (version table ``alembic_version_correlation``)."""

from corrmesh.correlation.models import Base
from corrmesh.runtime.db import run_migrations_online

run_migrations_online(Base.metadata)
