"""The pages that map requirements and attacks to tests name tests that exist.

docs/explanation/ehds-mapping.md and docs/explanation/threat-model.md cite tests as
`tests/<path>.py` or `tests/<path>.py::test_name`; a renamed or removed test would
leave a claim without its proof, so every citation is checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = ("docs/explanation/ehds-mapping.md", "docs/explanation/threat-model.md")
CITATION = re.compile(r"`(tests/[\w/.-]+\.py)(?:::(\w+))?(?:\[[^\]`]*\])?`")


def citations(page: str) -> list[tuple[str, str | None]]:
    text = (REPO / page).read_text(encoding="utf-8")
    return [(m.group(1), m.group(2)) for m in CITATION.finditer(text)]


@pytest.mark.parametrize("page", [p for p in PAGES if (REPO / p).exists()])
def test_every_cited_test_exists(page: str) -> None:
    cited = citations(page)
    assert cited, f"{page} cites no test"
    missing = []
    for path, name in cited:
        file = REPO / path
        if not file.is_file():
            missing.append(f"{path} (no such file)")
        elif name and not re.search(
            rf"^\s*(async\s+)?def {re.escape(name)}\(", file.read_text(encoding="utf-8"), re.M
        ):
            missing.append(f"{path}::{name} (no such test)")
    assert not missing, f"{page} cites tests that do not exist: {missing}"


def test_the_ehds_page_is_checked() -> None:
    assert (REPO / PAGES[0]).exists()
    assert len(citations(PAGES[0])) >= 30
