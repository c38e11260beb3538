"""The review benchmark's verdict check (bench/review.py) at a tiny size: it agrees with
ACRO when our checks use ACRO's rules, and it notices when they do not. No timings are
asserted: timings live in bench/."""

from __future__ import annotations

from pathlib import Path

from bench.review import BenchRun, run_bench
from tre.policy import DisclosureProfile
from tre.policy.disclosure import ACRO_DEFAULT

THRESHOLD_RULE = "counts: cells below threshold (not zero)"


def tiny_run(tmp_path: Path, profile: DisclosureProfile = ACRO_DEFAULT) -> BenchRun:
    return run_bench(
        tmp_path, cells=100, repeat=1, warmup=0, budget=0, suppress=False, profile=profile
    )


def statuses(run: BenchRun) -> dict[str, str]:
    return {a.rule: a.status for a in run.agreements}


def test_agrees_with_acro_on_its_own_rules(tmp_path: Path) -> None:
    run = tiny_run(tmp_path)

    assert run.cells == 100
    assert run.table_facts["below_threshold"] > 0  # the rule has cells to agree on
    assert run.table_facts["zero"] > 0
    assert run.disagreements == 0, run.agreements
    assert statuses(run)[THRESHOLD_RULE] == "agree"
    assert statuses(run)["counts: zero cells"] == "agree"
    assert all(len(m.times) == 1 for m in run.methods)


def test_notices_when_our_threshold_differs(tmp_path: Path) -> None:
    stricter = DisclosureProfile(id="stricter", title="Threshold 20", safe_threshold=20)

    run = tiny_run(tmp_path, stricter)

    assert statuses(run)[THRESHOLD_RULE] == "disagree"
    assert run.disagreements > 0
