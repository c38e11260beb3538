"""`tre demo data` as an administrator runs it: same seed, same bytes; errors named."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

TRE = Path(sys.executable).parent / "tre"


def tre(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TRE), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", "NO_COLOR": "1"},
    )


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    for out in (first, second):
        result = tre("demo", "data", "--out", str(out), "--seed", "7", "--patients", "40")
        assert result.returncode == 0, result.stderr
        assert f"Demo silos in {out}" in result.stdout
    assert digests(first) == digests(second)
    assert len(digests(first)) > 50


def test_refuses_to_overwrite_a_folder_that_is_not_demo_silos(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work", encoding="utf-8")
    result = tre("demo", "data", "--out", str(precious), "--patients", "20")
    assert result.returncode == 1
    assert str(precious) in result.stderr
    assert (precious / "thesis.tex").read_text(encoding="utf-8") == "years of work"


def test_too_few_patients_is_refused_by_name() -> None:
    result = tre("demo", "data", "--patients", "3")
    assert result.returncode == 2
    assert "--patients" in result.stderr
