"""The one error the demo generator raises on purpose.

A `DemoDataError` always says what is wrong and how to fix it (a missing file names
the file and the package that ships it); nothing half-written is left behind.
"""

from __future__ import annotations


class DemoDataError(RuntimeError):
    """The demo silos cannot be written; the message says why and how to fix it."""
