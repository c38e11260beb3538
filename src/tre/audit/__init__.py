"""The audit trail: typed events in an append-only, hash-chained log kept outside workspaces."""

from .chain import AuditChainError, AuditLog, Entry
from .events import AuditEvent, EventKind

__all__ = ["AuditChainError", "AuditEvent", "AuditLog", "Entry", "EventKind"]
