"""Constants and types the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_POLICY = REPO / "policies" / "demo"
DEMO_TODAY = date(2026, 11, 23)
"""The date the demo policy is written for (its permits carry fixed legal dates)."""

Edit = Callable[[str, str, str], None]
"""edit(file, old, new): replace exactly one occurrence of old in a file of the copied site."""
