"""The documentation builds with `mkdocs build --strict`: every page is in the site, and a
broken link, anchor or link out of `docs/` fails the build rather than shipping."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CONFIG = REPO / "mkdocs.yml"
# The first relative link to another page, e.g. `](tutorials/first-look.md)`.
PAGE_LINK = re.compile(r"\]\(([^):#]+\.md)\)")

# Each strict build takes a few seconds.
pytestmark = pytest.mark.slow


def mkdocs_build(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the venv's mkdocs (the interpreter running the tests) as CI and `make docs-check` do."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # the theme's banner is not a warning
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    return subprocess.run(
        [*command, "--config-file", str(config), "--site-dir", str(site_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def copy_docs(tmp_path: Path) -> Path:
    """A private copy of `docs/` and `mkdocs.yml` to break; returns the copied config."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy2(CONFIG, tmp_path / "mkdocs.yml")
    return tmp_path / "mkdocs.yml"


def test_docs_build_strictly_with_a_page_per_markdown_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = mkdocs_build(CONFIG, site)
    assert result.returncode == 0, result.stderr + result.stdout

    sources = sorted(DOCS.rglob("*.md"))
    assert sources
    missing = []
    for source in sources:
        page = source.relative_to(DOCS).with_suffix("")
        # use_directory_urls: `how-to/grant-a-permit.md` becomes `how-to/grant-a-permit/index.html`.
        built = site / "index.html" if page == Path("index") else site / page / "index.html"
        if not built.is_file():
            missing.append(str(source.relative_to(REPO)))
    assert not missing, f"no page built for {missing}"


def test_a_broken_link_to_a_page_fails_the_build(tmp_path: Path) -> None:
    config = copy_docs(tmp_path)
    index = tmp_path / "docs" / "index.md"
    text = index.read_text(encoding="utf-8")
    link = PAGE_LINK.search(text)
    assert link, "docs/index.md links to no page to break"
    index.write_text(text.replace(link.group(0), "](no-such-page.md)", 1), encoding="utf-8")

    result = mkdocs_build(config, tmp_path / "site")

    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr


@pytest.mark.parametrize(
    ("link", "complaint"),
    [
        pytest.param("../index.md#no-such-heading", "no-such-heading", id="missing-anchor"),
        pytest.param("../../src/tre/cli.py", "src/tre/cli.py", id="outside-docs"),
        pytest.param("/reference/cli/", "/reference/cli/", id="absolute-path"),
    ],
)
def test_links_strict_mode_cannot_resolve_fail_the_build(
    tmp_path: Path, link: str, complaint: str
) -> None:
    config = copy_docs(tmp_path)
    page = tmp_path / "docs" / "tutorials" / "first-look.md"
    with page.open("a", encoding="utf-8") as out:
        out.write(f"\nSee [this]({link}).\n")

    result = mkdocs_build(config, tmp_path / "site")

    assert result.returncode != 0
    assert complaint in result.stderr
