"""EMR ingest speed, side by side in one process and one run: pseudonyms per second for a
column of hospital ids, and clinical notes redacted per second.

Pseudonyms: the standard library's `hmac.new` per id (digest only, the baseline a data
team would write), `Pseudonymiser.pseudonymise_many`, the EMR path as ingest uses it
(`emr.admit_column`: a pandas column in, pseudonyms out, with the patient-index and
opt-out checks, each distinct id once) and the naive per-row `Series.map(ctx.admit)`.
Two columns of 1,000,000 rows: every id distinct (the worst case), and 50,000 patients
with 20 rows each (a medication table). Methods run in interleaved rounds; the table
shows the median round.

Notes: the demo hospital's notes (Dutch, French, English), redacted with deny-lists of
its 200 patients, their GPs and the note authors, dates shifted.

Writes its results to var/bench/ingest-emr.json for bench/report.py.

    .venv/bin/python bench/ingest_emr.py [--ids 1000000] [--rounds 3] [--results DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from functools import partial
from pathlib import Path

try:
    import tre  # noqa: F401
except ModuleNotFoundError:  # run from a source tree that was never installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import RESULTS_DIR, BenchResult, Comparison
from tre.demo.emr import make_history
from tre.demo.notes import make_notes
from tre.demo.people import make_people
from tre.ingest import IngestContext, ProjectKeys
from tre.ingest.emr import admit_column
from tre.ingest.free_text import DenyList, Entity, Redactor, RedactorConfig
from tre.ingest.patients import PatientIndex
from tre.policy import load_policy
from tre.pseudonym import DateShifter, MasterKey, Pseudonymiser, UidMapper, derive_project_key
from tre.pseudonym.keys import KeyPurpose

REPO = Path(__file__).resolve().parents[1]
TODAY = date(2026, 11, 23)
SEED = 20261123


def make_context(ids: list[str], workdir: Path) -> IngestContext:
    project = derive_project_key(MasterKey(os.urandom(32)), "bench")
    policy = load_policy(REPO / "policies" / "demo", TODAY)
    dataset = policy.dataset("clinical-records")
    assert dataset is not None
    version = dataset.version("1")
    assert version is not None
    keys = ProjectKeys(
        Pseudonymiser(project), DateShifter(project), UidMapper(project), project.key_id
    )
    return IngestContext(
        project="bench",
        dataset=dataset,
        version=version,
        source_dir=workdir,
        out_dir=workdir / "out",
        quarantine_dir=workdir / "quarantine",
        keys=keys,
        patients=PatientIndex(frozenset(ids)),
    )


def hmac_new_per_id(key: bytes, ids: list[str]) -> list[bytes]:
    sha256 = hashlib.sha256
    return [hmac.new(key, i.encode(), sha256).digest() for i in ids]


def per_row(ctx: IngestContext, ids: pd.Series) -> pd.Series:
    """What one would write first: the context's `admit` on every row."""
    where = ctx.source_dir
    return ids.map(lambda i: ctx.admit(i, source=where, where="row"))


def pseudonym_rows(n_ids: int, rounds: int, workdir: Path) -> list[dict[str, object]]:
    distinct = [f"MRN{n:08d}" for n in range(n_ids)]
    patients = distinct[: max(1, n_ids // 20)]
    columns = {
        "every id distinct": distinct,
        f"{len(patients):,} patients x {n_ids // len(patients)} rows": [
            patients[i % len(patients)] for i in range(n_ids)
        ],
    }
    rows: list[dict[str, object]] = []
    for scenario, ids in columns.items():
        series = pd.Series(ids)
        ctx = make_context(distinct, workdir)
        pseudonymiser = ctx.keys.pseudonymiser
        subkey = derive_project_key(MasterKey(os.urandom(32)), "bench").subkey(KeyPurpose.pseudonym)
        # Every path must compute the same pseudonyms before it may be timed.
        sample = ids[:: max(1, len(ids) // 2000)]
        expected = [pseudonymiser.pseudonym(i) for i in sample]
        assert pseudonymiser.pseudonymise_many(sample) == expected
        assert admit_column(ctx, workdir, "patient_id", pd.Series(sample)).to_list() == expected
        assert per_row(ctx, pd.Series(sample)).to_list() == expected

        methods: dict[str, Callable[[], object]] = {
            "hmac.new per id (stdlib, digest only)": partial(hmac_new_per_id, subkey, ids),
            "Pseudonymiser.pseudonymise_many": partial(pseudonymiser.pseudonymise_many, ids),
            "EMR path: emr.admit_column (pandas column)": partial(
                admit_column, ctx, workdir, "patient_id", series
            ),
            "naive: Series.map(ctx.admit) per row": partial(per_row, ctx, series),
        }
        rates: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(rounds):
            for name, run in methods.items():
                start = time.perf_counter()
                run()
                rates[name].append(len(ids) / (time.perf_counter() - start))
        baseline = statistics.median(rates["hmac.new per id (stdlib, digest only)"])
        many = statistics.median(rates["Pseudonymiser.pseudonymise_many"])
        for name, values in rates.items():
            median = statistics.median(values)
            rows.append(
                {
                    "benchmark": "pseudonyms",
                    "scenario": f"{len(ids):,} rows, {scenario}",
                    "method": name,
                    "per_second": median,
                    "x_hmac_new": median / baseline,
                    "x_pseudonymise_many": median / many,
                    "samples": values,
                }
            )
    return rows


def notes_rows(rounds: int) -> list[dict[str, object]]:
    people = make_people(SEED, 200)
    history = make_history(SEED, people)
    notes = make_notes(SEED, people, history)
    deny = DenyList()
    for p in people.patients:
        deny.add_person(p.first_name, p.last_name)
        deny.add_person_name(p.gp.name)
        deny.add_address(p.address)
        deny.add_number(p.phone, Entity.PHONE)
        deny.add_number(p.gp.phone, Entity.PHONE)
        deny.add_number(p.national_number, Entity.ID)
        deny.add_text(p.email, Entity.EMAIL)
    for n in notes:
        deny.add_person_name(n.author)
    births = {p.patient_id: {p.birth_date} for p in people.patients}
    start = time.perf_counter()
    redactor = Redactor(deny, RedactorConfig(id_patterns=(r"MRN\d{7}", r"(?:ADM|NT|DX)\d{7}")))
    redactor.redact("warm-up 01/01/2024")
    setup = time.perf_counter() - start

    def shift(day: date) -> date:
        return day + timedelta(days=17)

    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for n in notes:
            redactor.redact(n.text, birth_dates=births[n.patient_id], shift=shift)
        rates.append(len(notes) / (time.perf_counter() - start))
    chars = sum(len(n.text) for n in notes) / len(notes)
    return [
        {
            "benchmark": "notes",
            "scenario": f"{len(notes):,} demo notes, {chars:.0f} characters on average; "
            f"redactor built in {setup:.2f} s",
            "method": "Redactor.redact (presidio NoOpNlpEngine + deny-lists)",
            "per_second": statistics.median(rates),
            "x_hmac_new": None,
            "x_pseudonymise_many": None,
            "samples": rates,
        }
    ]


def run(ids: int = 1_000_000, rounds: int = 3) -> list[dict[str, object]]:
    """Every measurement as a row: benchmark, scenario, method, per_second and ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = pseudonym_rows(ids, rounds, Path(tmp))
    return rows + notes_rows(rounds)


PAIRS = (
    ("Pseudonymiser.pseudonymise_many", "hmac.new per id (stdlib, digest only)"),
    ("EMR path: emr.admit_column (pandas column)", "naive: Series.map(ctx.admit) per row"),
)


def write_results(rows: list[dict[str, object]], args: argparse.Namespace) -> None:
    by = {(str(r["scenario"]), str(r["method"])): list(r["samples"]) for r in rows}  # type: ignore[call-overload]
    scenarios = dict.fromkeys(str(r["scenario"]) for r in rows if r["benchmark"] == "pseudonyms")
    comparisons = [
        Comparison(
            name=f"{scenario}: {ours.split(':')[0]}",
            unit="ids/s",
            better="higher",
            ours=ours,
            ours_samples=by[scenario, ours],
            theirs=theirs,
            theirs_samples=by[scenario, theirs],
        )
        for scenario in scenarios
        for ours, theirs in PAIRS
    ]
    comparisons += [
        Comparison(
            name=f"free-text notes: {r['scenario']}",
            unit="notes/s",
            better="higher",
            ours=str(r["method"]),
            ours_samples=list(r["samples"]),  # type: ignore[call-overload]
        )
        for r in rows
        if r["benchmark"] == "notes"
    ]
    BenchResult(
        name="ingest-emr",
        title="EMR pseudonyms and free-text notes",
        script="bench/ingest_emr.py",
        versions={"Python": platform.python_version(), "pandas": pd.__version__},
        comparisons=comparisons,
        notes=(
            f"{args.ids:,} rows per id column, median of {args.rounds} interleaved rounds, one "
            "process. Goal (Ingest issue): at least 1 M pseudonyms per second. Details: "
            "[Ingest benchmarks](benchmarks-ingest.md)."
        ),
    ).write(args.results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="rows per id column")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="result files folder")
    args = parser.parse_args()
    rows = run(args.ids, args.rounds)
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, one process, "
        f"median of {args.rounds} rounds"
    )
    width = max(len(str(r["method"])) for r in rows)
    scenario = None
    for row in rows:
        if row["scenario"] != scenario:
            scenario = row["scenario"]
            unit = "ids/s" if row["benchmark"] == "pseudonyms" else "notes/s"
            print(f"\n{scenario}")
            print(f"  {'method':<{width}}  {unit:>12}  {'x hmac.new':>10}  {'x many':>7}")
        ratios = "".join(
            f"  {value:>{w}.2f}" if isinstance(value, float) else f"  {'':>{w}}"
            for value, w in ((row["x_hmac_new"], 10), (row["x_pseudonymise_many"], 7))
        )
        print(f"  {row['method']!s:<{width}}  {row['per_second']:>12,.0f}{ratios}")
    write_results(rows, args)


if __name__ == "__main__":
    main()
