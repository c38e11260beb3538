"""docs/reference/benchmarks.md from the benchmarks' result files (var/bench/<name>.json).

Invariant: every number on the page is computed here from the raw samples in the result
files (medians, ratios ours / theirs), each benchmark gets one PNG under
docs/reference/img/ drawn with matplotlib's Agg backend (no display, no network), and a
missing or malformed result file stops the report with an error naming that file.

    .venv/bin/python bench/report.py [--results var/bench] [--out PATH] [--img-dir DIR]
        [--only NAME ...]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

try:
    from bench.results import RESULTS_DIR, BenchResult, Comparison, ResultError, load_result
except ModuleNotFoundError:  # run as `python bench/report.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.results import RESULTS_DIR, BenchResult, Comparison, ResultError, load_result

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "reference" / "benchmarks.md"
IMG_DIR = PAGE.parent / "img"

BENCHES = (
    "pseudonyms",
    "ingest-dicom",
    "ingest-emr",
    "ingest-genomics",
    "spawn",
    "audit",
    "review",
    "load",
)
"""The result files `make bench` writes, in the order of the page."""

OURS_COLOUR, THEIRS_COLOUR = "#1f77b4", "#ff7f0e"


def number(value: float | None) -> str:
    """A figure for a table: thousands separated when large, three significant digits else."""
    if value is None:
        return "-"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size == 0 or size >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2e}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def ratio_text(c: Comparison) -> str:
    if c.ratio is None:
        return "-"
    return f"{c.ratio:.2f}" if c.ratio >= 0.1 else f"{c.ratio:.2g}"


def comparison_table(result: BenchResult) -> str:
    rows = [
        "| measurement | unit | ours | median ours | theirs | median theirs "
        "| ratio ours / theirs | better |",
        "|---|---|---|--:|---|--:|--:|---|",
    ]
    for c in result.comparisons:
        rows.append(
            "| "
            + " | ".join(
                [
                    cell(c.name),
                    cell(c.unit),
                    f"{cell(c.ours)} (n={len(c.ours_samples)})",
                    number(c.ours_median),
                    f"{cell(c.theirs)} (n={len(c.theirs_samples)})" if c.theirs else "-",
                    number(c.theirs_median),
                    ratio_text(c),
                    c.better,
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def figures_table(result: BenchResult) -> str:
    rows = ["| figure | value | unit | goal |", "|---|--:|---|---|"]
    rows += [
        f"| {cell(f.name)} | {number(f.value)} | {cell(f.unit)} | {cell(f.goal) or '-'} |"
        for f in result.figures
    ]
    return "\n".join(rows)


# -- plots ---------------------------------------------------------------------------------------


def plot(result: BenchResult, path: Path) -> Path:
    """One PNG for a benchmark: a panel per comparison, ours beside theirs (box and samples)."""
    panels = result.comparisons
    if not panels:
        raise ResultError(f"{result.name}: no comparisons to plot")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.4 * rows), squeeze=False)
    jitter = random.Random(0)
    for ax, c in zip(axes.flat, panels, strict=False):
        series = [(c.ours, c.ours_samples, OURS_COLOUR)]
        if c.theirs:
            series.append((c.theirs, c.theirs_samples, THEIRS_COLOUR))
        ax.boxplot(
            [s for _, s, _ in series],
            widths=0.5,
            showfliers=False,
            medianprops={"color": "black"},
        )
        for i, (_, samples, colour) in enumerate(series, start=1):
            xs = [i + jitter.uniform(-0.15, 0.15) for _ in samples]
            ax.scatter(xs, samples, s=8, alpha=0.6, color=colour, zorder=3)
        ax.set_xticks(
            range(1, len(series) + 1),
            [textwrap.fill(label, 22) for label, _, _ in series],
            fontsize=7,
        )
        ratio = f"\nours / theirs {ratio_text(c)}" if c.ratio is not None else ""
        ax.set_title(textwrap.fill(c.name, 40) + ratio, fontsize=9)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: number(y)))
        better = "lower" if c.better == "lower" else "higher"
        ax.set_ylabel(f"{c.unit} ({better} is better)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(result.title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path


# -- the page ------------------------------------------------------------------------------------


def left_out(results: list[BenchResult]) -> list[str]:
    missing = [name for name in BENCHES if name not in {r.name for r in results}]
    if not missing:
        return []
    names = ", ".join(f"`{name}`" for name in missing)
    return [f"Not in this report (run with `--only`): {names}.", ""]


def machine_section(results: list[BenchResult]) -> list[str]:
    first = results[0].machine
    text = [
        "## Machine",
        "",
        "| CPU | cores | memory | kernel | Docker | Python |",
        "|---|--:|--:|---|---|---|",
        "| {} | {} | {} GiB | {} | {} | {} |".format(
            *(
                cell(str(first.get(k, "?")))
                for k in ("cpu", "cores", "memory_gib", "kernel", "docker", "python")
            )
        ),
        "",
    ]
    keys = ("cpu", "cores", "memory_gib", "kernel", "docker")
    others = [r.name for r in results[1:] if any(r.machine.get(k) != first.get(k) for k in keys)]
    if others:
        text += [f"Measured on a different machine: {', '.join(others)} (see each section).", ""]
    return text


def versions_section(results: list[BenchResult], ours: str) -> list[str]:
    text = ["## Versions", "", f"jupyter-tre {ours}.", "", "| benchmark | software | version |"]
    text.append("|---|---|---|")
    for r in results:
        for name, version in r.versions.items():
            text.append(f"| {cell(r.name)} | {cell(name)} | {cell(version)} |")
    return [*text, ""]


def bench_section(result: BenchResult, image: str) -> list[str]:
    load = result.machine.get("load_average")
    load_text = f", load average {' '.join(str(x) for x in load)} at the end" if load else ""
    text = [
        f"## {result.title}",
        "",
        f"`{result.script}`, measured {result.when}{load_text}.",
        "",
        comparison_table(result),
        "",
    ]
    if result.figures:
        text += [figures_table(result), ""]
    if result.notes:
        text += [result.notes.strip(), ""]
    return [*text, f"![{result.title}]({image})", ""]


def render(results: list[BenchResult], img_dir: Path, img_link: str, ours: str) -> str:
    """The page's Markdown; writes one PNG per result into `img_dir` (linked as `img_link/`)."""
    if not results:
        raise ResultError("no result files to report")
    text = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/report.py`) from the result files the benchmarks "
        "leave in `var/bench/`. Each benchmark runs ours beside the tool a site or a "
        "researcher would otherwise use, on the same machine in the same run; the ratio is "
        "ours / theirs of the medians, so below 1 is better where lower is better (times) "
        "and above 1 is better where higher is better (rates). Ratios matter more than the "
        "absolute numbers, which come from a shared machine.",
        "",
        *left_out(results),
        *machine_section(results),
        *versions_section(results, ours),
    ]
    for result in results:
        image = plot(result, img_dir / f"bench-{result.name}.png")
        text += bench_section(result, f"{img_link}/{image.name}")
    return "\n".join(text).rstrip() + "\n"


def load_results(directory: Path, names: tuple[str, ...]) -> list[BenchResult]:
    return [load_result(directory / f"{name}.json") for name in names]


def write_report(
    directory: Path, names: tuple[str, ...], out: Path, img_dir: Path, ours: str
) -> Path:
    results = load_results(directory, names)
    link = Path(os.path.relpath(img_dir.resolve(), out.resolve().parent)).as_posix()
    text = render(results, img_dir, link, ours)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    from bench.results import git_revision, ours_version

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="result files folder")
    parser.add_argument("--out", type=Path, default=PAGE, help="the Markdown page to write")
    parser.add_argument("--img-dir", type=Path, default=IMG_DIR, help="where the PNGs go")
    parser.add_argument(
        "--only", nargs="+", default=list(BENCHES), help="these benchmarks (default: all)"
    )
    args = parser.parse_args(argv)
    try:
        out = write_report(
            args.results,
            tuple(args.only),
            args.out,
            args.img_dir,
            f"{ours_version()} (git {git_revision()})",
        )
    except ResultError as err:
        sys.exit(f"bench/report.py: {err}")
    print(f"report written to {out}")


if __name__ == "__main__":
    main()
