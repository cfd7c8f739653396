"""Alembic environment of the Topology service (see corrmesh.runtime.db)."""

from corrmesh.runtime.db import run_migrations_online
from corrmesh.topology.models import Base

run_migrations_online(Base.metadata)
