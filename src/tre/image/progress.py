"""Progress reporting shared by the image builders.

Invariant: a builder reports through one `Progress` callback, `(label, done,
total)`, with one stable label per task, as the other long-running commands of
`tre` do; a missing callback costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""progress(label, done, total): `done` of `total` steps of the task `label` are finished."""


def no_progress(label: str, done: int, total: int) -> None:
    """The callback used when the caller gives none."""
