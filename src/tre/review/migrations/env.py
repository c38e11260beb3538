"""Alembic's entry point for the review database: its tables, its own version table."""

from tre.audit.migrations.runner import run_env
from tre.review.store import SCHEMA

run_env(SCHEMA)
