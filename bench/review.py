"""What the review service's disclosure checks cost on a 10,000-cell table, beside calling ACRO
directly on the same data, in one run; and whether both flag the same cells.

One seeded synthetic microdata set (no network): one row per person with an `area` and a
`drug` category (rows x columns = --cells) and a `cost`; per-cell counts are Poisson around
a log-normal mean (median 25), with 3 % structural zeros, so the table has a realistic mix
of small counts, zeros and, in the table of sums, cells dominated by one or two people
(2 % of cells of three or more people hold one very large cost).

Timed, each call on its own (median and p95 of --repeat calls after --warmup calls):

- ACRO directly, what a researcher would otherwise pick: `ACRO(suppress=False|True)` with
  its default rules (acro/default.yaml), then `session.crosstab(area, drug)` (frequency
  table) and `session.crosstab(area, drug, values=cost, aggfunc="sum")` (magnitude table)
  on the microdata. The session is made outside the timing; `finalise` is not timed.
- Ours, as the review service runs them when a file is added to a release request:
  `tre.review.checking.DisclosureChecks.check` (read the stored copy, every table rule,
  identifier search, differencing against no earlier release, the JSON the UI shows) on the
  CSV ACRO's `finalise` wrote for each table (`DataFrame.to_csv`, what a researcher would
  save), alone and with ACRO's results.json beside it (then dominance is ACRO's), and on
  that results.json itself. Our checks see only the finished table: no microdata, no
  contributions.

Verdicts are compared after timing: the cells our threshold and zeros rules flag on the
frequency table (count and the first 50 listed, by label) against ACRO's
MinimumThresholdCheck (which also counts zeros as below threshold) and PresenceOfZeroCheck
on the same table; our file verdict against ACRO's status; our reading of results.json
against ACRO's status of each output. Any disagreement is printed and the run exits 1.

ACRO's slow calls are not repeated for long: each method stops once its timed calls have
taken --budget seconds (n says how many ran). With --suppress, ACRO with suppress=True is
timed too, --suppress-repeat calls per table without a warm-up: it re-queries the
microdata once per flagged cell, one to two minutes per 10,000-cell table here, which
takes the run from about two minutes to four or five.

    .venv/bin/python bench/review.py [--cells 10000] [--repeat 30] [--warmup 5]
        [--budget 15] [--suppress] [--json PATH] [--report PATH] [--results DIR]

Also writes var/bench/review.json for bench/report.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(1, str(REPO))
if __name__ == "__main__":
    # Before ACRO's import-time basicConfig(INFO), which would print a line per output.
    logging.basicConfig(level=logging.WARNING)

import acro  # type: ignore[import-untyped]  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from acro.version import __version__ as acro_version  # type: ignore[import-untyped]  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.results import RESULTS_DIR, BenchResult, Comparison, cpu_model  # noqa: E402
from tre.policy import DisclosureProfile  # noqa: E402
from tre.policy.disclosure import ACRO_DEFAULT  # noqa: E402
from tre.review.checking import DisclosureChecks  # noqa: E402
from tre.review.checks.identifiers import IdentifierIndex, scan_table  # noqa: E402
from tre.review.checks.sdc import table_findings  # noqa: E402
from tre.review.checks.tables import Sheet, read_table  # noqa: E402
from tre.settings import Settings  # noqa: E402

REPORT = REPO / "docs" / "reference" / "benchmarks-review.md"
SEED = 20261123
ROW, COLUMN, VALUE = "area", "drug", "cost"
PROJECT = "bench-review"
LISTED = 50
"""Our findings list at most this many cells (their count is always given)."""
SLOW = 1.0
READ = "  of which reading the CSV (read_table)"
RULES = "  of which the table rules (table_findings)"
SCAN = "  of which the identifier search (scan_table)"
COVERED = "ours: counts CSV + results.json"
"""A method whose warm-up call takes longer than this (seconds) gets no further warm-ups."""


# -- the data ------------------------------------------------------------------------------


def shape_for(cells: int) -> tuple[int, int]:
    """Rows and columns of a table of about `cells` cells, as square as possible."""
    rows = max(2, math.isqrt(cells))
    return rows, max(2, math.ceil(cells / rows))


def make_microdata(cells: int, seed: int = SEED) -> pd.DataFrame:
    """One row per person: area, drug, cost. Seeded, so every run checks the same data."""
    rng = np.random.default_rng(seed)
    n_rows, n_cols = shape_for(cells)
    mean = rng.lognormal(math.log(25), 0.9, (n_rows, n_cols))
    mean[rng.random((n_rows, n_cols)) < 0.03] = 0  # structural zeros
    counts = rng.poisson(mean).ravel()
    cell = np.repeat(np.arange(counts.size), counts)
    cost = rng.lognormal(5, 1, cell.size)
    # One person holds most of the cost in 2 % of the cells of three or more people.
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    big = np.flatnonzero((counts >= 3) & (rng.random(counts.size) < 0.02))
    cost[starts[big]] *= 100
    width = len(str(max(n_rows, n_cols) - 1))
    areas = np.array([f"area {i:0{width}d}" for i in range(n_rows)])
    drugs = np.array([f"drug {j:0{width}d}" for j in range(n_cols)])
    order = rng.permutation(cell.size)
    return pd.DataFrame(
        {
            ROW: areas[cell // n_cols][order],
            COLUMN: drugs[cell % n_cols][order],
            VALUE: cost.round(2)[order],
        }
    )


# -- ACRO, as a researcher calls it --------------------------------------------------------


@contextlib.contextmanager
def acro_as_shipped() -> Iterator[None]:
    """ACRO ignores FutureWarning at import (its own filter); keep that under pytest's
    warnings-as-errors, and pandas' SettingWithCopyWarning from its suppression code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", pd.errors.SettingWithCopyWarning)
        yield


class AcroSession:
    """One ACRO session; remembers the uid of its last output of each table."""

    def __init__(self, data: pd.DataFrame, *, suppress: bool) -> None:
        for name in ("acro", "acro:records", "acro:summary"):  # INFO lines, per call
            logging.getLogger(name).setLevel(logging.WARNING)
        with acro_as_shipped():
            self.session = acro.ACRO(suppress=suppress)
        self.data = data
        self.last: dict[str, str] = {}

    def counts(self) -> None:
        with acro_as_shipped():
            self.session.crosstab(self.data[ROW], self.data[COLUMN])
        self.last["counts"] = f"output_{self.session.results.output_id - 1}"

    def sums(self) -> None:
        with acro_as_shipped():
            self.session.crosstab(
                self.data[ROW], self.data[COLUMN], values=self.data[VALUE], aggfunc="sum"
            )
        self.last["sums"] = f"output_{self.session.results.output_id - 1}"

    def record(self, table: str) -> Any:
        return self.session.results.results[self.last[table]]

    def finalise(self, folder: Path) -> dict[str, Path]:
        """Write results.json and the CSV of the last output of each table to `folder`."""
        keep = set(self.last.values())
        for uid in list(self.session.results.results):
            if uid not in keep:
                self.session.remove_output(uid)
        with acro_as_shipped():
            self.session.finalise(str(folder), "json")
        return {table: folder / f"{uid}_0.csv" for table, uid in self.last.items()}


# -- timing --------------------------------------------------------------------------------


@dataclass
class Method:
    name: str
    side: str
    """"ACRO" or "ours"."""
    table: str
    """What it checks: "counts", "sums" or "both" (results.json)."""
    call: Callable[[], object]
    warm: bool = True
    repeat: int | None = None
    """At most this many timed calls (None: --repeat)."""
    warmed: list[float] = field(default_factory=list)
    """Seconds of the untimed calls made so far."""
    times: list[float] = field(default_factory=list)

    def once(self) -> float:
        start = time.perf_counter()
        self.call()
        return time.perf_counter() - start


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """n, median and p95 in milliseconds (p95 interpolated, inclusive)."""
    if not seconds:
        return {"n": 0, "median": math.nan, "p95": math.nan}
    p95 = (
        statistics.quantiles(seconds, n=100, method="inclusive")[94]
        if len(seconds) > 1
        else seconds[0]
    )
    return {"n": len(seconds), "median": 1000 * statistics.median(seconds), "p95": 1000 * p95}


def warm_up(methods: list[Method], warmup: int) -> None:
    """Up to `warmup` untimed calls per method (counting those made already); none more
    after a call that took over SLOW seconds, where a first call's extra cost is noise."""
    for method in methods:
        while (
            method.warm
            and len(method.warmed) < warmup
            and not (method.warmed and method.warmed[-1] > SLOW)
        ):
            method.warmed.append(method.once())


def time_rounds(methods: list[Method], repeat: int, budget: float) -> None:
    """Round after round, each method that still has calls to make makes one (the order flips
    every round, so load on the machine hits all alike); a method stops after `repeat` calls
    or once its calls have taken `budget` seconds."""

    def wants(m: Method) -> bool:
        cap = repeat if m.repeat is None else min(m.repeat, repeat)
        return len(m.times) < cap and (not m.times or sum(m.times) < budget)

    turn = 0
    while active := [m for m in methods if wants(m)]:
        for method in active if turn % 2 == 0 else active[::-1]:
            method.times.append(method.once())
        turn += 1


# -- our checks, as the service runs them --------------------------------------------------


def our_checker(root: Path) -> DisclosureChecks:
    """The service's checker for a site under `root` (its project has no datasets yet, so its
    identifier index is empty; lookups are set lookups, the scan costs the same)."""
    return DisclosureChecks(Settings(policy_dir=root / "policy", var_dir=root / "var"))


def our_check(
    checker: DisclosureChecks, path: Path, kind: str, profile: DisclosureProfile
) -> dict[str, Any]:
    """What the service stores beside the file: the checks' result as JSON."""
    result = checker.check(path, kind=kind, profile=profile, project=PROJECT, earlier=[])
    return {"verdict": str(result.verdict.value), **result.detail}


def finding(result: dict[str, Any], check: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [f for f in result["findings"] if f["check"] == check]
    if len(found) != 1:
        raise RuntimeError(f"expected one {check!r} finding, got {len(found)}: {result}")
    return found[0]


# -- do the verdicts agree? ----------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    rule: str
    ours: str
    acro: str
    status: str
    """agree; disagree (counted); not comparable (different inputs); mislabelled (the
    verdict stands but the finding names the wrong rule; see the report)."""


def _positions(record: Any, check: str) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in record.sdc["cells"].get(check, [])}


def _labels(record: Any, positions: list[tuple[int, int]]) -> list[tuple[str, str]]:
    outcome = record.outcome
    return [(str(outcome.index[r]), str(outcome.columns[c])) for r, c in positions]


def _dominance_status(ours: str, acro_rule: str, acro_overall: str) -> str:
    if ours == acro_rule:
        return "agree"
    return "mislabelled" if ours == acro_overall else "disagree"


def agreements(
    counts: Any, sums: Any, ours: dict[str, dict[str, Any]], *, covered: bool
) -> list[Agreement]:
    """Our findings beside ACRO's records (`counts`, `sums`: ACRO's Record of each table)."""
    out: list[Agreement] = []
    plain = ours["counts"]
    below = _positions(counts, "MinimumThresholdCheck")
    zeros = _positions(counts, "PresenceOfZeroCheck")
    low = sorted(below - zeros)  # ACRO counts an empty cell as below threshold; we do not
    threshold, zero = finding(plain, "minimum-threshold"), finding(plain, "zeros")
    n_ours = int(threshold["details"]["cells_found"])
    out.append(
        Agreement(
            "counts: cells below threshold (not zero)",
            str(n_ours),
            f"{len(low)} ({len(below)} MinimumThresholdCheck - {len(below & zeros)} zero)",
            "agree" if n_ours == len(low) else "disagree",
        )
    )
    listed = [tuple(c) for c in threshold["cells"]]
    first = _labels(counts, low[:LISTED])
    out.append(
        Agreement(
            f"counts: first {LISTED} such cells, by label",
            f"{len(listed)} listed",
            f"{len(first)} listed",
            "agree" if listed == first else "disagree",
        )
    )
    n_zero = int(zero["details"]["cells_found"])
    out.append(
        Agreement(
            "counts: zero cells",
            str(n_zero),
            f"{len(zeros)} PresenceOfZeroCheck",
            "agree" if n_zero == len(zeros) else "disagree",
        )
    )
    out.append(
        Agreement(
            "counts: file verdict / ACRO status",
            plain["verdict"],
            counts.status,
            "agree" if plain["verdict"] == counts.status else "disagree",
        )
    )
    n_sums = len(_positions(sums, "MinimumThresholdCheck"))
    out.append(
        Agreement(
            "sums: threshold rule",
            f"{finding(ours['sums'], 'minimum-threshold')['verdict']} (a table of sums has "
            "no counts)",
            f"{sums.status}, {n_sums} cells (counts from the microdata)",
            "not comparable",
        )
    )
    if not covered:
        return out
    for table, record in (("counts", counts), ("sums", sums)):
        got = finding(ours["results"], f"acro:{record.uid}")["verdict"]
        out.append(
            Agreement(
                f"results.json: {record.uid} ({table})",
                got,
                record.status,
                "agree" if got == record.status else "disagree",
            )
        )
    dominated = _positions(sums, "NKCheck") | _positions(sums, "PPercentCheck")
    for table, record, rule in (
        ("counts", counts, "pass"),  # ACRO runs no dominance rule on a frequency table
        ("sums", sums, "fail" if dominated else "pass"),
    ):
        got = finding(ours[f"{table}+results"], "dominance")["verdict"]
        ran = "no N-k/p% rule" if table == "counts" else f"N-k/p%: {len(dominated)} cells"
        out.append(
            Agreement(
                f"{table} beside results.json: dominance",
                got,
                f"{rule} ({ran}; status {record.status})",
                _dominance_status(got, rule, record.status),
            )
        )
    return out


# -- the run -------------------------------------------------------------------------------


@dataclass
class BenchRun:
    cells: int
    shape: tuple[int, int]
    people: int
    methods: list[Method]
    agreements: list[Agreement]
    table_facts: dict[str, Any]
    seconds: float

    @property
    def disagreements(self) -> int:
        return sum(a.status == "disagree" for a in self.agreements)

    def stats(self) -> dict[str, dict[str, float]]:
        return {m.name: summary_ms(m.times) for m in self.methods}


def run_bench(
    workdir: Path,
    *,
    cells: int = 10_000,
    repeat: int = 30,
    warmup: int = 5,
    budget: float = 15.0,
    suppress: bool = False,
    suppress_repeat: int = 1,
    profile: DisclosureProfile = ACRO_DEFAULT,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchRun:
    """Time ACRO and our checks on one synthetic table in `workdir`, then compare verdicts.

    `profile`: the disclosure profile our checks use (ACRO's defaults unless a test wants
    them to disagree).
    """
    began = time.perf_counter()
    data = make_microdata(cells)
    progress(f"microdata: {len(data):,} people, {shape_for(cells)} table")
    plain = AcroSession(data, suppress=False)
    acro_counts = Method("ACRO crosstab, counts", "ACRO", "counts", plain.counts)
    acro_sums = Method("ACRO crosstab, sums", "ACRO", "sums", plain.sums)
    # ACRO's first (untimed) calls make the outputs our checks read: finalise writes them.
    acro_counts.warmed.append(acro_counts.once())
    acro_sums.warmed.append(acro_sums.once())
    out = workdir / "acro-outputs"
    files = plain.finalise(out)
    alone = workdir / "submitted"
    alone.mkdir()
    for path in files.values():
        shutil.copy(path, alone / path.name)
    results = out / "results.json"
    checker = our_checker(workdir / "site")
    sheet = read_table(alone / files["counts"].name)
    if not isinstance(sheet, list):
        raise RuntimeError(f"our reader refused ACRO's CSV: {sheet.message}")
    counts_sheet: Sheet = sheet[0]
    index = IdentifierIndex.of()

    def check(path: Path, kind: str = "table") -> Callable[[], object]:
        return lambda: our_check(checker, path, kind, profile)

    methods = [
        acro_counts,
        acro_sums,
        Method("ours: counts CSV", "ours", "counts", check(alone / files["counts"].name)),
        # Where our time goes on the counts CSV (the rest: formulas, differencing, JSON).
        Method(READ, "ours", "counts", lambda: read_table(alone / files["counts"].name)),
        Method(RULES, "ours", "counts", lambda: table_findings(counts_sheet, profile)),
        Method(
            SCAN, "ours", "counts", lambda: scan_table(counts_sheet.frame, counts_sheet.rows, index)
        ),
        Method("ours: sums CSV", "ours", "sums", check(alone / files["sums"].name)),
        Method("ours: results.json", "ours", "both", check(results, "acro_results")),
        Method(COVERED, "ours", "counts", check(files["counts"])),
    ]
    if suppress:
        suppressing = AcroSession(data, suppress=True)
        methods += [
            Method(
                "ACRO crosstab, counts, suppress",
                "ACRO",
                "counts",
                suppressing.counts,
                warm=False,
                repeat=suppress_repeat,
            ),
            Method(
                "ACRO crosstab, sums, suppress",
                "ACRO",
                "sums",
                suppressing.sums,
                warm=False,
                repeat=suppress_repeat,
            ),
        ]
    progress("warming up")
    warm_up(methods, warmup)
    progress("timing")
    time_rounds(methods, repeat, budget)
    ours = {
        "counts": our_check(checker, alone / files["counts"].name, "table", profile),
        "sums": our_check(checker, alone / files["sums"].name, "table", profile),
        "results": our_check(checker, results, "acro_results", profile),
        "counts+results": our_check(checker, files["counts"], "table", profile),
        "sums+results": our_check(checker, files["sums"], "table", profile),
    }
    # The outputs checked are those of the warm-up calls; the timed calls made the same.
    counts_record = plain.session.results.results[files["counts"].name.rsplit("_", 1)[0]]
    sums_record = plain.session.results.results[files["sums"].name.rsplit("_", 1)[0]]
    found = agreements(counts_record, sums_record, ours, covered=True)
    table = counts_record.output[0]
    facts = {
        "cells": int(table.size),
        "zero": int((table == 0).sum().sum()),
        "below_threshold": int(((table > 0) & (table < ACRO_DEFAULT.safe_threshold)).sum().sum()),
        "dominated": len(
            _positions(sums_record, "NKCheck") | _positions(sums_record, "PPercentCheck")
        ),
        "csv_bytes": {t: p.stat().st_size for t, p in files.items()},
        "results_json_bytes": results.stat().st_size,
    }
    return BenchRun(
        cells=int(table.size),
        shape=shape_for(cells),
        people=len(data),
        methods=methods,
        agreements=found,
        table_facts=facts,
        seconds=time.perf_counter() - began,
    )


# -- reporting -----------------------------------------------------------------------------


def references(run: BenchRun) -> dict[str, float]:
    """ACRO's median per table (ms), without and with suppression; results.json: both."""
    stats = run.stats()
    ref = {
        "counts": stats["ACRO crosstab, counts"]["median"],
        "sums": stats["ACRO crosstab, sums"]["median"],
    }
    ref["both"] = ref["counts"] + ref["sums"]
    if "ACRO crosstab, counts, suppress" in stats:
        ref["counts suppress"] = stats["ACRO crosstab, counts, suppress"]["median"]
        ref["sums suppress"] = stats["ACRO crosstab, sums, suppress"]["median"]
        ref["both suppress"] = ref["counts suppress"] + ref["sums suppress"]
    return ref


def headers(run: BenchRun) -> list[str]:
    return HEADERS if "counts suppress" in references(run) else HEADERS[:-1]


def result_rows(run: BenchRun) -> list[list[str]]:
    """method, input, n, median ms, p95 ms, x ACRO, x ACRO with suppression."""
    ref = references(run)
    rows = []
    for m in run.methods:
        s = summary_ms(m.times)
        what = {"counts": "counts", "sums": "sums", "both": "both tables"}[m.table]
        source = "microdata" if m.side == "ACRO" else what + (" table" if m.table != "both" else "")
        key = f"{m.table} suppress"
        if m.side == "ACRO" and m.name.endswith("suppress"):
            ratio, ratio_s = f"{s['median'] / ref[m.table]:.1f}", "1"
        elif m.side == "ACRO":
            ratio, ratio_s = "1", ""
        else:
            ratio = f"{s['median'] / ref[m.table]:.4f}"
            ratio_s = f"{s['median'] / ref[key]:.5f}" if key in ref else ""
        row = [m.name, source, str(s["n"]), f"{s['median']:,.1f}", f"{s['p95']:,.1f}", ratio]
        rows.append([*row, ratio_s] if "counts suppress" in ref else row)
    return rows


HEADERS = ["method", "input", "n", "median ms", "p95 ms", "x ACRO", "x ACRO suppress"]


def print_results(run: BenchRun, console: Console) -> None:
    table = Table(title=f"Disclosure checks on a {run.cells:,}-cell table ({run.people:,} people)")
    for i, head in enumerate(headers(run)):
        table.add_column(head, justify="left" if i < 2 else "right")
    for row in result_rows(run):
        table.add_row(*row)
    console.print(table)
    agree = Table(title="Do the verdicts agree?")
    for head in ("rule", "ours", "ACRO", "status"):
        agree.add_column(head)
    styles = {"agree": "green", "disagree": "bold red", "mislabelled": "yellow"}
    for a in run.agreements:
        agree.add_row(a.rule, a.ours, a.acro, f"[{styles.get(a.status, 'dim')}]{a.status}[/]")
    console.print(agree)
    console.print(f"disagreements: {run.disagreements}")


def markdown_table(headers: list[str], rows: list[list[str]], right_from: int) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    # Markdown drops leading spaces: indent the "of which" rows with em spaces.
    for row in rows:
        first = "\u2003" + row[0][2:] if row[0].startswith("  ") else row[0]
        lines.append("| " + " | ".join([first, *row[1:]]) + " |")
    return "\n".join(lines)


def machine_facts() -> dict[str, Any]:
    return {
        "date": date.today().isoformat(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "acro": acro_version,
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }


def meaning(run: BenchRun) -> str:
    stats, ref = run.stats(), references(run)
    ours_counts = stats["ours: counts CSV"]["median"]
    ours_sums = stats["ours: sums CSV"]["median"]
    read, rules, scan = (stats[name]["median"] for name in (READ, RULES, SCAN))
    results = stats["ours: results.json"]["median"]
    covered = stats[COVERED]["median"]
    text = (
        f"On the frequency table our checks take {ours_counts:,.0f} ms at the median, "
        f"{ours_counts / ref['counts']:.3f}x what `acro.crosstab` takes to build and check the "
        f"same table from the microdata ({ref['counts']:,.0f} ms, "
        f"{ref['counts'] / ours_counts:.0f}x ours). Of our {ours_counts:,.0f} ms, reading "
        f"and classifying the CSV takes {read:,.0f}, the table rules (threshold and zeros "
        f"through ACRO's own functions) {rules:,.0f} and the identifier search {scan:,.0f}; "
        "the rest is the formula check, differencing and the result as JSON. "
        + (
            "Both flag the same cells (see above). "
            if not run.disagreements
            else f"They disagree on {run.disagreements} rule(s) (see above). "
        )
        + f"On the table of sums we take {ours_sums:,.0f} ms "
        f"({ours_sums / ref['sums']:.4f}x ACRO's {ref['sums']:,.0f} ms), but this is not the "
        "same work: ACRO computes, per cell, the largest contributions behind each sum "
        "(N-k and p% dominance) and the counts behind it (threshold), with a Python function "
        "per cell (pandas' pure-Python groupby path, `nlargest` per cell, in a profile); "
        "a finished table of sums carries neither, so our checks can only say `review` for "
        "both rules. The fast number there is for less work, not the same work done faster. "
        f"Reading ACRO's results.json instead ({results:,.0f} ms for both tables) gives ACRO's "
        f"own verdicts at {results / ref['both']:.4f}x the cost of ACRO's two calls (in a "
        "profile, most of it is the identifier search over the whole JSON text, which spells "
        "out ACRO's outcome for every cell); the counts CSV with "
        f"that results.json beside it takes {covered:,.0f} ms against {ours_counts:,.0f} ms "
        "alone (finding the output that covers it parses the JSON but loads no outcome "
        "table). "
    )
    if "counts suppress" in ref:
        text += (
            f"With suppression ACRO re-queries the microdata once per flagged cell: "
            f"{ref['counts suppress'] / 1000:,.0f} s for the frequency table and "
            f"{ref['sums suppress'] / 1000:,.0f} s for the table of sums "
            f"({ref['counts suppress'] / ref['counts']:.0f}x and "
            f"{ref['sums suppress'] / ref['sums']:.0f}x without), work our checks never do: "
            "they judge the table submitted, they do not change it. "
        )
    text += (
        "What the ratio does not say: the two run at different times and places (ACRO in "
        "the researcher's session, once per table they make; our checks in the review "
        "service, once per file added to a request), so the ratio is a cost comparison, not "
        "a speed-up anyone waits for; and ACRO's times grow with the number of cells (its "
        "dominance evidence is computed cell by cell), ours with the size of the CSV."
    )
    return text


def write_report(path: Path, run: BenchRun, facts: dict[str, Any], args: Any) -> None:
    tf = run.table_facts
    machine = (
        f"Run on {facts['date']}: {facts['cpus']} CPUs ({facts['cpu']}), Linux "
        f"{facts['kernel']}, load average {' '.join(str(x) for x in facts['load_average'])}; "
        f"Python {facts['python']}, ACRO {facts['acro']}, pandas {facts['pandas']}, numpy "
        f"{facts['numpy']}. The whole run took {run.seconds:,.0f} s."
    )
    agree_rows = [[a.rule, a.ours, a.acro, a.status] for a in run.agreements]
    suppressed = [t for m in run.methods if m.name.endswith("suppress") for t in m.times]
    suppressing, slowest = sum(suppressed), max(suppressed, default=0.0)
    text = [
        "# Review benchmark: disclosure checks beside ACRO",
        "",
        f"Measured by `bench/review.py --cells {args.cells} --repeat {args.repeat} --warmup "
        f"{args.warmup} --budget {args.budget:g}"
        + (" --suppress" if args.suppress else "")
        + "` in one run; numbers are from a shared machine (see the load), the ratios "
        "matter more than the absolute times.",
        "",
        machine,
        "",
        "## What is measured",
        "",
        f"One seeded synthetic microdata set ({run.people:,} people, one row each: `area`, "
        f"`drug`, `cost`) whose crosstab is a {run.shape[0]} x {run.shape[1]} table: "
        f"{tf['zero']:,} zero cells, {tf['below_threshold']:,} cells of 1 to "
        f"{ACRO_DEFAULT.safe_threshold - 1} people, and in the table of sums "
        f"{tf['dominated']:,} cells that fail ACRO's N-k or p% dominance rule. "
        "Each method is called on its own and timed from call to return; methods take "
        "turns round by round (the order flips every round) after their warm-up calls, and "
        f"stop after {args.repeat} calls or once their calls have taken {args.budget:g} s "
        "(`n` says how many ran).",
        "",
        "- **ACRO directly**, what a researcher would otherwise pick: a session "
        "`acro.ACRO(suppress=False)` (and `suppress=True`) with ACRO's default rules "
        "(its `default.yaml`: threshold 10, N-k 2/0.9, p% 0.1, zeros disclosive), made "
        "outside the timing; timed: `session.crosstab(df.area, df.drug)` (counts) and "
        "`session.crosstab(df.area, df.drug, values=df.cost, aggfunc='sum')` (sums) on the "
        "microdata. ACRO builds the table and its evidence tables (counts, sums, largest "
        "contributions per cell) and runs its checks; with suppression it then re-queries "
        "the microdata once per flagged cell and tabulates again. "
        + (
            f"A call with suppression takes {slowest:,.0f} s or less here, so it is made "
            + ("once" if args.suppress_repeat == 1 else f"{args.suppress_repeat} times")
            + " per table, without a warm-up (the same code ran warm without suppression "
            "first); without `--suppress` this run would have taken about "
            + f"{run.seconds - suppressing:,.0f} s."
            if args.suppress
            else "Suppression was not timed in this run (add `--suppress`)."
        ),
        "- **Ours**, as the review service runs them when a file is added to a release "
        "request: `DisclosureChecks.check` (the service's seam: the checks package's "
        "`check_file` on the stored copy plus the result as JSON) with the `acro-default` "
        "profile (the same rules), differencing against no earlier release, and the "
        "project's identifier index (empty here; lookups are set lookups, the scan costs the "
        "same). Its input is the CSV ACRO's `finalise` wrote for each table (`DataFrame."
        f"to_csv`, what a researcher would save; {tf['csv_bytes']['counts']:,} and "
        f"{tf['csv_bytes']['sums']:,} bytes), alone, and with ACRO's results.json "
        f"({tf['results_json_bytes']:,} bytes) beside it, when our dominance finding takes "
        "ACRO's status; and that results.json itself. **The inputs differ**: ACRO sees the "
        "microdata, our checks see only the finished table. The service also hashes the "
        "copy before checking it; that is not timed here.",
        "",
        "## Results",
        "",
        "`x ACRO`: our median over ACRO's median for the same table without suppression "
        "(for results.json, over ACRO's two calls together); `x ACRO suppress`: the same "
        "with suppression; for ACRO's suppressing rows, `x ACRO` is how many times its call "
        "without suppression.",
        "",
        markdown_table(headers(run), result_rows(run), right_from=2),
        "",
        "## Do the verdicts agree?",
        "",
        "Compared after timing, on the outputs of ACRO's warm-up calls (the timed calls make "
        "the same tables). ACRO's MinimumThresholdCheck counts a zero cell as below the "
        "threshold too; ours leaves zeros to the zeros rule, so our threshold cells are "
        "ACRO's minus its zero cells. A disagreement makes the bench exit 1.",
        "",
        markdown_table(["rule", "ours", "ACRO", "status"], agree_rows, right_from=99),
        "",
        f"Disagreements: {run.disagreements}."
        + (
            " `mislabelled`: the verdict is ACRO's, but the finding is named `dominance` "
            "and says ACRO checked N-k and p%, while its verdict is ACRO's status of the "
            "whole output (here decided by the threshold and zeros rules; ACRO runs no "
            "dominance rule on a frequency table); the file's verdict is unaffected."
            if any(a.status == "mislabelled" for a in run.agreements)
            else ""
        ),
        "",
        "## What this means",
        "",
        meaning(run),
        "",
    ]
    path.write_text("\n".join(text), encoding="utf-8")


def write_results(run: BenchRun, facts: dict[str, Any], args: Any) -> None:
    """Each of our checks beside ACRO on the same table (results.json: beside both tables)."""
    acro = {m.table: m for m in run.methods if m.side == "ACRO" and not m.name.endswith("suppress")}
    both = [a + b for a, b in zip(acro["counts"].times, acro["sums"].times, strict=False)]
    comparisons = [
        Comparison(
            name=m.name.removeprefix("ours: "),
            unit="ms",
            better="lower",
            ours=m.name,
            ours_samples=[1000 * s for s in m.times],
            theirs="ACRO crosstab, counts + sums" if m.table == "both" else acro[m.table].name,
            theirs_samples=[1000 * s for s in (both if m.table == "both" else acro[m.table].times)],
        )
        for m in run.methods
        if m.side == "ours" and m.name.startswith("ours:")
    ]
    BenchResult(
        name="review",
        title="Disclosure checks beside ACRO",
        script="bench/review.py",
        versions={"ACRO": str(facts["acro"]), "pandas": pd.__version__, "numpy": np.__version__},
        comparisons=comparisons,
        notes=(
            f"A {run.cells:,}-cell table ({run.people:,} people), each call timed on its own "
            f"(at most {args.repeat} calls after {args.warmup} warm-up calls, {args.budget:g} s "
            "per method). ACRO is timed on the microdata it needs; ours on the finished table "
            "a researcher saves, as the review service checks it when a file is added to a "
            f"release request. Verdicts: {run.disagreements} disagreement(s) with ACRO. "
            "Details: [Review benchmark](benchmarks-review.md)."
        ),
    ).write(args.results)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000, help="cells of the table")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per method, at most")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per method first")
    parser.add_argument(
        "--budget", type=float, default=15.0, help="seconds of timed calls per method, at most"
    )
    parser.add_argument(
        "--suppress",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also time ACRO with suppress=True (1-2 minutes per call at 10,000 cells)",
    )
    parser.add_argument("--suppress-repeat", type=int, default=1, help="calls with suppression")
    parser.add_argument("--json", type=Path, help="write every time and verdict here")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="result files folder")
    parser.add_argument("--report", type=Path, help=f"write the markdown report (e.g. {REPORT})")
    args = parser.parse_args()
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        run = run_bench(
            Path(tmp),
            cells=args.cells,
            repeat=args.repeat,
            warmup=args.warmup,
            budget=args.budget,
            suppress=args.suppress,
            suppress_repeat=args.suppress_repeat,
            progress=lambda text: console.print(f"[dim]{text}[/]"),
        )
    print_results(run, console)
    console.print(f"whole run: {run.seconds:,.0f} s")
    facts = machine_facts()
    write_results(run, facts, args)
    if args.report:
        write_report(args.report, run, facts, args)
        console.print(f"report written to {args.report}")
    if args.json:
        record = {
            "machine": facts,
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "table": {"shape": run.shape, "people": run.people, **run.table_facts},
            "seconds": run.seconds,
            "methods": {
                m.name: {
                    "side": m.side,
                    "table": m.table,
                    "seconds": m.times,
                    **summary_ms(m.times),
                }
                for m in run.methods
            },
            "agreements": [a.__dict__ for a in run.agreements],
            "disagreements": run.disagreements,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if run.disagreements:
        console.print(f"[bold red]{run.disagreements} disagreement(s) with ACRO[/]")
        sys.exit(1)


if __name__ == "__main__":
    main()
