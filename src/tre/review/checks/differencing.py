"""Differencing across a project's releases: the same table again with a few small changes
lets anyone subtract the two and see a group smaller than the threshold.

Invariant: a table is compared only with earlier released tables that share its count
columns and at least half its rows; it is flagged (review) when every difference is
smaller than the profile's `safe_threshold` and few cells differ. Hand-written: ACRO only
recommends "a manual review against other outputs for differencing"
(PresenceOfLinkedTableCheck) and never sees earlier releases.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tre.policy import DisclosureProfile

from .identifiers import MAX_LISTED
from .model import Cell, Finding, Verdict
from .tables import Sheet, read_table


def _counts(sheet: Sheet) -> pd.DataFrame:
    frame = pd.DataFrame({c: sheet.numeric[c] for c in sheet.counts})
    frame.index = pd.Index(sheet.rows)
    return frame


def _aligned(
    now: pd.DataFrame, before: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]] | None:
    if list(now.columns) != list(before.columns) or now.empty:
        return None
    if list(now.index) == list(before.index):
        return now, before, [], []
    if not (now.index.is_unique and before.index.is_unique):
        return None
    common = [r for r in now.index if r in before.index]
    if len(common) * 2 < max(len(now.index), len(before.index)):
        return None
    added = [str(r) for r in now.index if r not in before.index]
    removed = [str(r) for r in before.index if r not in now.index]
    return now.loc[common], before.loc[common], added, removed


def compare(
    sheet: Sheet, before: Sheet, profile: DisclosureProfile
) -> tuple[list[Cell], list[dict[str, Any]], list[str], list[str]] | None:
    """The cells that differ by small amounts, or None if the tables are not a pair."""
    aligned = _aligned(_counts(sheet), _counts(before))
    if aligned is None:
        return None
    now, old, added, removed = aligned
    difference = now - old
    changed = difference.notna() & (difference != 0)
    n = int(changed.to_numpy().sum())
    if n == 0 and not (added or removed):
        return None  # the same table again: nothing new can be learnt by subtracting
    small = bool(((difference.abs() < profile.safe_threshold) | ~changed).to_numpy().all())
    if not small or n * 2 > changed.size:
        return None
    cells: list[Cell] = []
    rows: list[dict[str, Any]] = []
    for i, j in zip(*changed.to_numpy().nonzero(), strict=True):
        row, column = str(now.index[i]), str(now.columns[j])
        cells.append((row, column))
        rows.append(
            {
                "row": row,
                "column": column,
                "earlier": float(old.iat[i, j]),
                "now": float(now.iat[i, j]),
                "difference": float(difference.iat[i, j]),
            }
        )
    return cells, rows, added, removed


def differencing_findings(
    sheets: list[Sheet], earlier: Sequence[Path], profile: DisclosureProfile
) -> list[Finding]:
    findings: list[Finding] = []
    compared = 0
    for path in earlier:
        old = read_table(path)
        if isinstance(old, Finding):
            continue
        for sheet in sheets:
            for before in old:
                if not sheet.counts:
                    continue
                compared += 1
                pair = compare(sheet, before, profile)
                if pair is None:
                    continue
                cells, rows, added, removed = pair
                shown = "; ".join(
                    f"{r['row']} / {r['column']}: {r['earlier']:g} → {r['now']:g} "
                    f"({r['difference']:+g})"
                    for r in rows[:6]
                )
                extra = ""
                if added or removed:
                    extra = (
                        f"; rows only now: {', '.join(added) or 'none'}, "
                        f"rows only then: {', '.join(removed) or 'none'}"
                    )
                findings.append(
                    Finding(
                        check="differencing",
                        verdict=Verdict.review,
                        message=(
                            f"same table as the earlier release {path.name} with {len(rows)} "
                            f"cell(s) differing by less than {profile.safe_threshold}: "
                            f"{shown}{extra}. Subtracting the two may reveal a small group"
                        ),
                        cells=cells[:MAX_LISTED],
                        details={
                            "earlier": path.name,
                            "differences": rows[:MAX_LISTED],
                            "rows_added": added,
                            "rows_removed": removed,
                        },
                    )
                )
    if not findings:
        findings.append(
            Finding(
                check="differencing",
                verdict=Verdict.passed,
                message=(
                    f"compared with {len(earlier)} earlier released table(s): none is the same "
                    "table with small differences"
                ),
                details={"earlier": [p.name for p in earlier], "pairs_compared": compared},
            )
        )
    return findings
