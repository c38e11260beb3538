"""Shared fixtures: a private copy of the demo policy that each test may break."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import DEMO_POLICY, DEMO_TODAY, Edit
from tre.policy import Policy, load_policy
from tre.settings import Settings

pytest_plugins = ("pytest_jupyter.jupyter_server", "tests.docker_images")


@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[None]:
    """pytest-jupyter's autouse event loop, switched off outside tests/extension (where its
    conftest brings the real one back): Playwright's sync API and the hub tests run their
    own loops."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> Iterator[None]:
    """pytest-jupyter's autouse server cleanup, likewise only for tests/extension."""
    yield None


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


@pytest.fixture(scope="session")
def demo_silos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo hospital's source silos (default seed, 200 patients), written once per run.

    Tests must treat this folder as read-only: it is shared by the whole session.
    """
    from tre.demo.silos import write_demo_silos

    out = tmp_path_factory.mktemp("silos-session") / "silos"
    write_demo_silos(out)
    return out


@pytest.fixture
def tre_site(tmp_path: Path, demo_silos: Path) -> Settings:
    """Settings for a fresh site: its own var/ with a new master key, the shared demo silos."""
    from tre.pseudonym import create_master_key, default_master_key_path

    var = tmp_path / "var"
    var.mkdir()
    (var / "silos").symlink_to(demo_silos, target_is_directory=True)
    settings = Settings(policy_dir=DEMO_POLICY, var_dir=var)
    create_master_key(default_master_key_path(settings.keys_dir))
    return settings


@pytest.fixture(scope="session")
def demo_policy() -> Policy:
    return load_policy(DEMO_POLICY, DEMO_TODAY)
