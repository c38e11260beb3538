"""The output-review service (airlock): release requests, their states, the checks' results
beside each file, one or two checkers' decisions, and the release store.

Release is the only way out of a workspace: the service keeps its own immutable copy
of every submitted file and releases only copies that enough independent checkers
approved at their current version.
"""

from .auditing import ACTION_EVENTS
from .checking import Checker, CheckResult, DisclosureChecks
from .errors import ChecksBlocked, NotAllowed, PermitRefused, ReviewError, TransitionRefused
from .filestore import FileStore, FileTooLarge, StoreError, TamperedFile
from .models import (
    Comment,
    Controls,
    Decision,
    HistoryEntry,
    ReleasedFile,
    ReleaseFile,
    ReleaseRequest,
    Review,
    Verdict,
)
from .parties import SYSTEM_ACTOR
from .service import ReviewService
from .states import (
    TERMINAL,
    TRANSITIONS,
    Action,
    Party,
    RequestState,
    Rule,
    Step,
    allowed_actions,
    can_transition,
    check_transition,
)
from .store import ConcurrentChange, RequestNotFound, ReviewStore
from .workspace import PathRefused

__all__ = [
    "ACTION_EVENTS",
    "SYSTEM_ACTOR",
    "TERMINAL",
    "TRANSITIONS",
    "Action",
    "CheckResult",
    "Checker",
    "ChecksBlocked",
    "Comment",
    "ConcurrentChange",
    "Controls",
    "Decision",
    "DisclosureChecks",
    "FileStore",
    "FileTooLarge",
    "HistoryEntry",
    "NotAllowed",
    "Party",
    "PathRefused",
    "PermitRefused",
    "ReleaseFile",
    "ReleaseRequest",
    "ReleasedFile",
    "RequestNotFound",
    "RequestState",
    "Review",
    "ReviewError",
    "ReviewService",
    "ReviewStore",
    "Rule",
    "Step",
    "StoreError",
    "TamperedFile",
    "TransitionRefused",
    "Verdict",
    "allowed_actions",
    "can_transition",
    "check_transition",
]
