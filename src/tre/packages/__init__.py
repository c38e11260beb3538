"""Administering the package allow-list: resolving a permit's additions with their
dependency closure, writing them to `packages.yaml`, and listing what projects installed.

The allow-list itself (its model and the allowed-or-not rule) lives in `tre.policy.packages`;
this package runs on the admin host and may use `policy` and `audit` (`installed` is
imported on its own, so resolving does not load the audit store's database layer).
"""

from .resolve import (
    IMAGE_PLATFORMS,
    IMAGE_PYTHON_VERSION,
    IndexUnreachable,
    Resolution,
    ResolvedPackage,
    ResolveError,
    Source,
    Unresolvable,
    WriteRefused,
    WriteResult,
    resolve_additions,
    write_additions,
)

__all__ = [
    "IMAGE_PLATFORMS",
    "IMAGE_PYTHON_VERSION",
    "IndexUnreachable",
    "Resolution",
    "ResolveError",
    "ResolvedPackage",
    "Source",
    "Unresolvable",
    "WriteRefused",
    "WriteResult",
    "resolve_additions",
    "write_additions",
]
