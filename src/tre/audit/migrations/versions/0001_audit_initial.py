"""The audit database as the releases before alembic created it.

Those databases are stamped at this revision instead of running it (see
tre.audit.migrations.runner), so these tables must stay exactly what their
`metadata.create_all` made: names, types, keys, indexes and `audit_schema`'s row.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prev", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("server", sa.String(length=256), nullable=True),
        sa.Column("permit", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("project", "seq"),
    )
    op.create_index("ix_audit_records_at", "audit_records", ["at"])
    op.create_index("ix_audit_records_actor", "audit_records", ["actor"])
    fence = op.create_table(
        "audit_schema",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.bulk_insert(fence, [{"version": 1}])


def downgrade() -> None:
    raise RuntimeError("the audit log is never downgraded: restore a backup instead")
