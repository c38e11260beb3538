"""Ingest: hospital source files in, immutable pseudonymised dataset versions out.

Runs on the ingest host only, which holds the pseudonym key; nothing on the hub
side imports this package.
"""

from .context import IngestContext, ProjectKeys, Report
from .errors import IngestError, InputRejected, UnknownPatient
from .manifest import MANIFEST_NAME, IngestRecord, VersionManifest
from .runner import IngestResult, granted_versions, ingest_version, project_keys

__all__ = [
    "MANIFEST_NAME",
    "IngestContext",
    "IngestError",
    "IngestRecord",
    "IngestResult",
    "InputRejected",
    "ProjectKeys",
    "Report",
    "UnknownPatient",
    "VersionManifest",
    "granted_versions",
    "ingest_version",
    "project_keys",
]
