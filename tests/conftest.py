"""Shared fixtures: a private copy of the demo policy that each test may break."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import DEMO_POLICY, Edit


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of the demo policy folder under this test's own tmp_path."""
    target = tmp_path / "demo"
    shutil.copytree(DEMO_POLICY, target)
    return target


@pytest.fixture
def edit(site: Path) -> Edit:
    """Replace exactly one occurrence of `old` by `new` in a file of the copied site."""

    def _edit(file: str, old: str, new: str) -> None:
        path = site / file
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {file}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    return _edit
