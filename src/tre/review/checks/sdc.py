"""Statistical disclosure rules on a finished table, with ACRO's own rule functions.

Invariant: where ACRO has the rule, its function decides and its status stands (fail for
low counts and zeros, review for missing values); where ACRO lacks it, the rule is ours
and `Finding.source` says "tre".

From ACRO (`acro.sdcchecks.SDCChecks`, `acro.table_utils.round_table`):
  * `check_min_threshold`: cells whose count is below `safe_threshold` fail;
  * `check_presence_of_zero`: zero cells fail when `zeros_are_disclosive`;
  * `check_missing`: missing values are review when `check_missing_values`;
  * `get_status_summary_from_mask`: ACRO's status and wording for a mask;
  * `round_table`: what a count rounded to `round_to` would be.
Ours: reading the finished table into counts (ACRO only checks tables it builds from row
data); keeping zeros out of the threshold mask (ACRO's mask counts an empty cell as below
threshold, which would make `zeros_are_disclosive: false` mean nothing); the OpenSAFELY
redact-then-round rules; formula payloads; and the note that dominance (N-k, p%) cannot be
checked without the contributions behind each cell, unless ACRO's results came with it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from acro.sdcchecks import (  # type: ignore[import-untyped]
    SDCChecks,
    SDCEvidence,
    get_status_summary_from_mask,
)
from acro.table_utils import round_table  # type: ignore[import-untyped]

from tre.policy import DisclosureProfile

from .identifiers import MAX_LISTED
from .model import Cell, Finding, Verdict
from .tables import FORMULA, MISSING, Sheet

_ACRO_STATUS = {"pass": Verdict.passed, "review": Verdict.review, "fail": Verdict.fail}


def acro_verdict(status: object) -> Verdict:
    """ACRO's status as our verdict; anything ACRO did not mean as pass needs review."""
    return _ACRO_STATUS.get(str(status).strip().lower(), Verdict.review)


def risk_appetite(profile: DisclosureProfile) -> dict[str, Any]:
    """The profile as ACRO's `risk_appetite` (same names as ACRO's default.yaml)."""
    return {
        "safe_threshold": profile.safe_threshold,
        "safe_dof_threshold": profile.safe_dof_threshold,
        "safe_nk_n": profile.safe_nk_n,
        "safe_nk_k": profile.safe_nk_k,
        "safe_pratio_p": profile.safe_pratio_p,
        "check_missing_values": profile.check_missing_values,
        "survival_safe_threshold": profile.survival_safe_threshold,
        "zeros_are_disclosive": profile.zeros_are_disclosive,
    }


@functools.lru_cache(maxsize=8)
def _acro_checks(appetite: tuple[tuple[str, Any], ...]) -> Any:
    return SDCChecks(dict(appetite))  # loads ACRO's ontology JSON files once per profile


class _FinishedTable:
    """The part of ACRO's `TableModelDetails` its table checks use, for a finished table."""

    model_type = "table"
    command = "finished table"

    def __init__(self, shape: pd.DataFrame) -> None:
        self._shape = shape

    def get_allfalse_table(self) -> pd.DataFrame:
        return pd.DataFrame(False, index=self._shape.index, columns=self._shape.columns)


def _cells(mask: pd.DataFrame, rows: Sequence[str]) -> tuple[list[Cell], int]:
    positions = np.argwhere(mask.to_numpy(dtype=bool))
    cells = [(rows[r], str(mask.columns[c])) for r, c in positions[:MAX_LISTED]]
    return cells, len(positions)


def table_findings(
    sheet: Sheet, profile: DisclosureProfile, *, acro_covered: dict[str, Any] | None = None
) -> list[Finding]:
    """The disclosure rules of `profile` on one sheet."""
    findings = [_formulas(sheet)]
    frame = sheet.frame
    counts = pd.DataFrame({c: sheet.numeric[c] for c in sheet.counts}, index=frame.index)
    counts.index = range(len(frame))
    checks = _acro_checks(tuple(sorted(risk_appetite(profile).items())))
    model = _FinishedTable(counts)
    evidence = SDCEvidence()

    if sheet.counts:
        # Redacted or missing cells are not low counts: ACRO reads NaN as "below threshold".
        evidence.interim_tables["count_table"] = counts.fillna(profile.safe_threshold)
        _, _, mask = checks.check_min_threshold("table", evidence, model)
        mask = mask & (counts != 0)
        status, summary = get_status_summary_from_mask(mask)
        cells, n = _cells(mask, sheet.rows)
        findings.append(
            Finding(
                check="minimum-threshold",
                verdict=acro_verdict(status),
                message=(
                    f"{n} count(s) below the minimum of {profile.safe_threshold}"
                    if n
                    else f"every count is at least {profile.safe_threshold} (or redacted)"
                ),
                cells=cells,
                details={"acro_summary": summary.strip(), "acro_status": status, "cells_found": n},
                source="acro",
            )
        )
        evidence.interim_tables["count_table"] = counts.fillna(-1)
        status, summary, mask = checks.check_presence_of_zero("table", evidence, model)
        cells, n = _cells(mask, sheet.rows)
        findings.append(
            Finding(
                check="zeros",
                verdict=acro_verdict(status),
                message=(
                    f"{n} zero count(s); zeros can reveal that no one in a group has a "
                    "characteristic (the profile treats zeros as disclosive)"
                    if n
                    else summary.strip()
                ),
                cells=cells,
                details={"acro_summary": summary.strip(), "cells_found": n},
                source="acro",
            )
        )
        findings += _opensafely(sheet, counts, profile)
    else:
        findings.append(
            Finding(
                check="minimum-threshold",
                verdict=Verdict.review,
                message=(
                    "no column holds whole-number counts, so the minimum count cannot be "
                    "checked automatically; check the number of people behind each value"
                ),
            )
        )

    if profile.check_missing_values and sheet.values:
        missing = pd.DataFrame(
            {c: frame[c].str.match(MISSING) for c in sheet.values}, index=range(len(frame))
        )
        evidence.interim_tables["missing"] = missing
        status, summary, mask = checks.check_missing("table", evidence, model)
        cells, n = _cells(mask, sheet.rows)
        findings.append(
            Finding(
                check="missing-values",
                verdict=acro_verdict(status),
                message=f"{n} missing value(s)" if n else "no missing values",
                cells=cells,
                details={"acro_summary": summary.strip(), "cells_found": n},
                source="acro",
            )
        )
    findings.append(_dominance(sheet, profile, acro_covered))
    if sheet.statistics and profile.min_individuals_per_statistic:
        findings.append(
            Finding(
                check="statistics",
                verdict=Verdict.review,
                message=(
                    f"column(s) {', '.join(sheet.statistics)} hold statistics; check each "
                    f"describes at least {profile.min_individuals_per_statistic} people"
                ),
                details={"columns": sheet.statistics},
            )
        )
    return findings


def _opensafely(sheet: Sheet, counts: pd.DataFrame, profile: DisclosureProfile) -> list[Finding]:
    findings: list[Finding] = []
    if profile.redact_at_or_below is not None:
        low = (counts > 0) & (counts <= profile.redact_at_or_below)
        cells, n = _cells(low, sheet.rows)
        findings.append(
            Finding(
                check="redaction",
                verdict=Verdict.fail if n else Verdict.passed,
                message=(
                    f"{n} count(s) of {profile.redact_at_or_below} or less are shown; redact "
                    "them (and enough others that they cannot be worked out from totals)"
                    if n
                    else f"no unredacted count of {profile.redact_at_or_below} or less"
                ),
                cells=cells,
                details={"cells_found": n},
            )
        )
    if profile.round_to is not None:
        rounded = round_table(counts, profile.round_to)
        unrounded = counts.notna() & (rounded != counts)
        cells, n = _cells(unrounded, sheet.rows)
        examples = {
            f"{r} / {c}": {
                "shown": float(counts.iloc[sheet.rows.index(r)][c]),
                "rounded": float(rounded.iloc[sheet.rows.index(r)][c]),
            }
            for r, c in cells[:5]
        }
        findings.append(
            Finding(
                check="rounding",
                verdict=Verdict.fail if n else Verdict.passed,
                message=(
                    f"{n} count(s) are not rounded to a multiple of {profile.round_to}"
                    if n
                    else f"every count is a multiple of {profile.round_to}"
                ),
                cells=cells,
                details={"cells_found": n, "examples": examples, "acro": "table_utils.round_table"},
            )
        )
    return findings


DOMINANCE_RULES = ("NKCheck", "PPercentCheck", "nk-rule", "p-ratio")
"""ACRO's names, in an output's `sdc.summary`, of the rules on contributors' shares (ACRO
1.0 names its checks by class; the older keys are read too)."""


def _acro_rule_counts(covered: dict[str, Any], rules: tuple[str, ...]) -> dict[str, int] | None:
    """Cells failing each of `rules` over every file of an ACRO output; None: not stated."""
    counts = dict.fromkeys(rules, 0)
    stated = False
    found = covered.get("sdc")
    for sdc in found if isinstance(found, list) else [found]:
        summary = sdc.get("summary") if isinstance(sdc, dict) else None
        if not isinstance(summary, dict):
            continue
        for rule in rules:
            value = summary.get(rule)
            if isinstance(value, int) and not isinstance(value, bool):
                counts[rule] += value
                stated = True
    return counts if stated else None


def _dominance(
    sheet: Sheet, profile: DisclosureProfile, acro_covered: dict[str, Any] | None
) -> Finding:
    rules = (
        f"N-k (the {profile.safe_nk_n} largest contributors may not exceed "
        f"{profile.safe_nk_k:.0%} of a cell) and p% (p = {profile.safe_pratio_p:.0%})"
    )
    if acro_covered is not None:
        # ACRO's status is the whole output's (threshold and zeros too): the dominance
        # verdict comes from its per-rule counts alone.
        counts = _acro_rule_counts(acro_covered, DOMINANCE_RULES)
        if counts is None and not sheet.statistics:
            verdict, said = Verdict.passed, "a table of counts only: no dominance rule applies"
        elif counts is None:
            verdict, said = Verdict.review, "its results.json gives no dominance counts"
        elif any(counts.values()):
            verdict = Verdict.fail
            said = "; ".join(f"{rule}: {n} cell(s)" for rule, n in counts.items() if n)
        else:
            verdict, said = Verdict.passed, "no cell fails them"
        return Finding(
            check="dominance",
            verdict=verdict,
            message=f"ACRO checked {rules} when it made this table: {said}",
            details=acro_covered,
            source="acro",
        )
    if not sheet.statistics:
        return Finding(
            check="dominance",
            verdict=Verdict.passed,
            message="a table of counts only: dominance does not apply (as in ACRO)",
        )
    return Finding(
        check="dominance",
        verdict=Verdict.review,
        message=(
            f"{rules} need each contributor's value, which a finished table does not carry; "
            f"column(s) {', '.join(sheet.statistics)} hold magnitudes: check dominance by "
            "hand, or produce the table with ACRO and submit its results.json"
        ),
        details={"columns": sheet.statistics},
    )


def _formulas(sheet: Sheet) -> Finding:
    frame = sheet.frame
    # "-3" is a number, not a formula: FORMULA needs a letter or bracket after the sign.
    mask = frame.apply(lambda column: column.str.match(FORMULA)).fillna(False)
    mask.index = range(len(frame))
    cells, n = _cells(mask, sheet.rows)
    header = [c for c in frame.columns if re.match(FORMULA, str(c))]
    cells += [("(header)", str(c)) for c in header]
    n += len(header)
    return Finding(
        check="formulas",
        verdict=Verdict.fail if n else Verdict.passed,
        message=(
            f"{n} cell(s) start like a spreadsheet formula (=, +, -, @); a spreadsheet would "
            "run them when the file is opened"
            if n
            else "no spreadsheet formulas"
        ),
        cells=cells,
        details={"cells_found": n},
    )
