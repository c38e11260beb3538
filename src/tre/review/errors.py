"""The review service's errors: each says what was refused and why, in words for people."""

from __future__ import annotations


class ReviewError(Exception):
    """A review action cannot be done; the message says why."""


class TransitionRefused(ReviewError):
    """The request's state, or the actor's part in it, does not allow the action."""


class PermitRefused(ReviewError):
    """The actor holds no current permit for the request's project."""


class NotAllowed(ReviewError):
    """The actor has no part in the request (may not see or download it)."""


class ChecksBlocked(ReviewError):
    """The automated checks block a file: it cannot be approved or released."""
