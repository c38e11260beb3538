"""The allow-listed package mirror: devpi-server (with devpi-constrained) caches the upstream
index, one constrained index per project holds only that project's allow-list, and a front
that workspaces reach serves each project's index to its own workspaces and audits every
file it sends."""

from .devpi import DevpiAdmin, DevpiProcess, MirrorError, MirrorPaths, ensure_initialised
from .front import FrontContext, Identifier, make_app
from .indexes import SyncResult, constraints_from_policy, index_name, sync_indexes
from .service import MirrorService, serve, service_from_settings

__all__ = [
    "DevpiAdmin",
    "DevpiProcess",
    "FrontContext",
    "Identifier",
    "MirrorError",
    "MirrorPaths",
    "MirrorService",
    "SyncResult",
    "constraints_from_policy",
    "ensure_initialised",
    "index_name",
    "make_app",
    "serve",
    "service_from_settings",
    "sync_indexes",
]
