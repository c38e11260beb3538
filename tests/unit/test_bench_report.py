"""The benchmark report (bench/report.py) from small synthetic result files: its tables hold
the medians and ratios of the samples, every benchmark gets a real PNG linked from the page,
and a missing or malformed result file is refused with its name. No timings are asserted:
timings live in bench/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import main, render, write_report
from bench.results import BenchResult, Comparison, Figure, ResultError, load_result

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MACHINE = {
    "cpu": "Test CPU",
    "cores": 2,
    "memory_gib": 8.0,
    "kernel": "6.1.0-test",
    "docker": "20.10.24",
    "python": "3.11.7",
    "load_average": [0.5, 0.4, 0.3],
}


def spawn_result() -> BenchResult:
    return BenchResult(
        name="spawn",
        title="Spawn to ready",
        script="bench/spawn.py",
        versions={"JupyterHub": "5.4.2", "dockerspawner": "14.0.0"},
        comparisons=[
            Comparison(
                name="spawn-to-ready",
                unit="s",
                better="lower",
                ours="jupyter-tre",
                ours_samples=[3.0, 1.0, 2.0],
                theirs="stock JupyterHub",
                theirs_samples=[4.0, 8.0, 2.0, 6.0],
            )
        ],
        machine=MACHINE,
    )


def load_result_() -> BenchResult:
    return BenchResult(
        name="load",
        title="20 researchers | 3 projects",
        script="bench/load.py",
        versions={"locust": "2.47.0"},
        comparisons=[
            Comparison("execute", "s", "lower", "jupyter-tre", [0.2, 0.1, 0.3, 0.4, 0.5]),
            Comparison("ids per second", "ids/s", "higher", "ours", [3000.0], "hmac", [1500.0]),
        ],
        figures=[Figure("errors", 0, "requests", "zero")],
        notes="Other helpers ran Docker tests at the same time.",
        machine=MACHINE,
    )


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    spawn_result().write(folder)
    load_result_().write(folder)
    return folder


def table_rows(page: str, heading: str) -> list[list[str]]:
    """The first table after `heading`, as cells (header and separator left out)."""
    section = page.split(f"## {heading}\n", 1)[1]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    table = []
    for line in lines[2:]:
        table.append([c.strip() for c in line.strip("|").split(" | ")])
        if not section.split(line, 1)[1].startswith("\n|"):
            break
    return table


def test_the_page_holds_medians_ratios_and_a_png_per_benchmark(
    results_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "docs" / "benchmarks.md"
    out.parent.mkdir()
    img = tmp_path / "docs" / "img"

    write_report(results_dir, ("spawn", "load"), out, img, "0.1.0 (git abc1234)")

    page = out.read_text(encoding="utf-8")
    [spawn] = table_rows(page, "Spawn to ready")
    assert spawn == [
        "spawn-to-ready",
        "s",
        "jupyter-tre (n=3)",
        "2",
        "stock JupyterHub (n=4)",
        "5",
        "0.40",
        "lower",
    ]
    execute, rate = table_rows(page, "20 researchers | 3 projects")
    assert execute[3:] == ["0.3", "-", "-", "-", "lower"]
    assert rate[3:] == ["3,000", "hmac (n=1)", "1,500", "2.00", "higher"]
    assert "| errors | 0 | requests | zero |" in page
    assert "Other helpers ran Docker tests at the same time." in page
    assert "| Test CPU | 2 | 8.0 GiB | 6.1.0-test | 20.10.24 | 3.11.7 |" in page
    assert "| spawn | JupyterHub | 5.4.2 |" in page
    assert "jupyter-tre 0.1.0 (git abc1234)." in page
    for name in ("spawn", "load"):
        png = img / f"bench-{name}.png"
        assert png.read_bytes().startswith(PNG_SIGNATURE)
        assert png.stat().st_size > 5000
        assert f"](img/bench-{name}.png)" in page


def test_a_missing_result_file_is_named(results_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ResultError, match=r"audit\.json: no such result file"):
        write_report(results_dir, ("spawn", "audit"), tmp_path / "b.md", tmp_path / "img", "x")
    assert not (tmp_path / "b.md").exists()


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda raw: "{not json", "not a readable JSON result file"),
        (lambda raw: {**raw, "schema": 99}, "schema 99, expected 1"),
        (lambda raw: {k: v for k, v in raw.items() if k != "title"}, "missing field 'title'"),
        (
            lambda raw: {**raw, "comparisons": [{**raw["comparisons"][0], "ours_samples": []}]},
            r"comparisons\[0\]\.ours_samples: no samples",
        ),
        (
            lambda raw: {
                **raw,
                "comparisons": [{**raw["comparisons"][0], "theirs_samples": [1, "x"]}],
            },
            r"comparisons\[0\]\.theirs_samples\[1\]: expected int or float",
        ),
        (
            lambda raw: {**raw, "comparisons": [{**raw["comparisons"][0], "better": "up"}]},
            "expected 'lower' or 'higher'",
        ),
    ],
)
def test_a_bad_result_file_is_named_with_what_is_wrong(
    results_dir: Path, damage: object, words: str
) -> None:
    path = results_dir / "spawn.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    changed = damage(raw)  # type: ignore[operator]
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed))

    with pytest.raises(ResultError, match=words) as info:
        load_result(path)
    assert str(path) in str(info.value)


def test_the_command_exits_with_the_files_name(
    results_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--results", str(results_dir), "--out", str(tmp_path / "b.md"), "--only", "nope"])
    assert "nope.json: no such result file" in str(info.value.code)


def test_nothing_to_report_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ResultError, match="no result files"):
        render([], tmp_path, "img", "x")
