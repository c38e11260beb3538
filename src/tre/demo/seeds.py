"""Independent, reproducible random streams derived from the one demo seed.

Each part of the generator draws from its own named stream, so adding draws in one
part never shifts another; nothing uses the global random state.
"""

from __future__ import annotations

import hashlib
from random import Random

import numpy as np


def stream_seed(seed: int, stream: str) -> int:
    """A 64-bit seed for the named stream."""
    digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def rng(seed: int, stream: str) -> Random:
    """A `random.Random` for the named stream (demo data, never secrets)."""
    return Random(stream_seed(seed, stream))  # noqa: S311 - reproducibility is the point


def numpy_rng(seed: int, stream: str) -> np.random.Generator:
    """A numpy generator for the named stream."""
    return np.random.default_rng(stream_seed(seed, stream))
