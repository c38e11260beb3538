"""The audit trail: typed events in append-only, hash-chained logs (one per project) kept
outside workspaces, in a database and in JSON lines."""

from .events import WORKSPACE_KINDS, AuditEvent, EventKind
from .records import (
    GENESIS,
    SITE_CHAIN,
    AuditRecord,
    AuditStoreError,
    can_name_chain,
    check_chain_name,
)
from .store import AuditStore, PruneResult, audit_dir, default_db_url, open_store
from .verify import Problem, ProblemKind, VerifyReport

__all__ = [
    "GENESIS",
    "SITE_CHAIN",
    "WORKSPACE_KINDS",
    "AuditEvent",
    "AuditRecord",
    "AuditStore",
    "AuditStoreError",
    "EventKind",
    "Problem",
    "ProblemKind",
    "PruneResult",
    "VerifyReport",
    "audit_dir",
    "can_name_chain",
    "check_chain_name",
    "default_db_url",
    "open_store",
]
