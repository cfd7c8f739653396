"""Alembic environment of Ingest (version table ``alembic_version_ingest``)."""

from corrmesh.ingest.models import Base
from corrmesh.runtime.db import run_migrations_online

run_migrations_online(Base.metadata)
