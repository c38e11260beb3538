"""Alembic's entry point for the audit database: its tables, its own version table."""

from tre.audit.database import SCHEMA
from tre.audit.migrations.runner import run_env

run_env(SCHEMA)
