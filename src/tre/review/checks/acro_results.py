"""ACRO's `results.json`: its own verdict on each output, shown as ACRO gave it.

Invariant: ACRO's status stands (fail stays fail, review stays review); an output that
carries an exception request needs a checker's decision, so it is at least review; and
nothing in the file is trusted to be well formed.

From ACRO: the statuses, the per-check sdc summary and failing cells, the outcome table
(its suppression mask; loaded with `acro.record.load_outcome`), command, comments,
exception. Ours: mapping ACRO's cell positions to row and column labels, tolerating
malformed files, and finding the results that cover a submitted table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from acro.record import load_outcome  # type: ignore[import-untyped]
from acro.version import __version__ as acro_version  # type: ignore[import-untyped]

from .identifiers import MAX_LISTED
from .model import Cell, Finding, Verdict, worst
from .sdc import acro_verdict

MAX_RESULTS_BYTES = 16 << 20


def _problem(message: str) -> Finding:
    return Finding(check="acro-results", verdict=Verdict.fail, message=message, source="acro")


def load_results(path: Path) -> dict[str, Any] | Finding:
    """The parsed `results` mapping of an ACRO results.json, or a finding saying why not."""
    try:
        size = path.stat().st_size
        if size > MAX_RESULTS_BYTES:
            return _problem(f"results.json is {size >> 20} MiB; ACRO's results are far smaller")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return _problem(f"results.json cannot be read ({exc.strerror})")
    except UnicodeDecodeError:
        return _problem("results.json is not UTF-8 text")
    except json.JSONDecodeError as exc:
        return _problem(f"results.json is not valid JSON: {exc.msg} at line {exc.lineno}")
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        return _problem("this JSON file is not ACRO's results.json (no 'results' object)")
    return data


def _outcome(raw: object) -> pd.DataFrame | None:
    if not isinstance(raw, dict) or not raw:
        return None
    try:
        frame = load_outcome(raw)
    except (ValueError, TypeError):
        return None
    return frame if isinstance(frame, pd.DataFrame) else None


def _label_cells(positions: object, outcome: pd.DataFrame | None) -> list[Cell]:
    cells: list[Cell] = []
    if not isinstance(positions, list):
        return cells
    for pos in positions[:MAX_LISTED]:
        if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(i, int) for i in pos)):
            continue
        r, c = pos
        if outcome is not None and r < len(outcome.index) and c < len(outcome.columns):
            cells.append((str(outcome.index[r]), str(outcome.columns[c])))
        else:
            cells.append((f"row {r + 1}", f"column {c + 1}"))
    return cells


def _mask(outcome: pd.DataFrame | None) -> dict[str, dict[str, str]]:
    """ACRO's outcome table, only the cells it did not mark "ok"."""
    mask: dict[str, dict[str, str]] = {}
    if outcome is None:
        return mask
    for column in outcome.columns:
        for row, value in outcome[column].items():
            if str(value) != "ok":
                mask.setdefault(str(row), {})[str(column)] = str(value).strip("; ")
    return mask


def output_finding(uid: str, output: object) -> Finding:
    """ACRO's verdict on one output, with its failing cells labelled."""
    if not isinstance(output, dict):
        return _problem(f"output {uid}: not an object")
    status = str(output.get("status", ""))
    verdict = acro_verdict(status)
    exception = str(output.get("exception") or "").strip()
    if exception:
        verdict = worst([verdict, Verdict.review])
    outcome = _outcome(output.get("outcome"))
    files = output.get("files") if isinstance(output.get("files"), list) else []
    cells: list[Cell] = []
    failing: dict[str, int] = {}
    names: list[str] = []
    for entry in files or []:
        if not isinstance(entry, dict):
            continue
        names.append(str(entry.get("name", "")))
        sdc = entry.get("sdc") if isinstance(entry.get("sdc"), dict) else {}
        summary = sdc.get("summary") if isinstance(sdc, dict) else None
        if isinstance(summary, dict):
            failing.update({str(k): v for k, v in summary.items() if isinstance(v, int) and v})
        by_check = sdc.get("cells") if isinstance(sdc, dict) else None
        if isinstance(by_check, dict):
            for positions in by_check.values():
                cells += [c for c in _label_cells(positions, outcome) if c not in cells]
    checks = ", ".join(f"{k}: {v} cell(s)" for k, v in failing.items()) or "no failing cells"
    kind = output.get("type", "output")
    message = f"ACRO {status or 'gave no status'} for {kind} {uid} ({checks})"
    if exception:
        message += f"; exception requested: {exception}"
    comments = output.get("comments")
    return Finding(
        check=f"acro:{uid}",
        verdict=verdict,
        message=message,
        cells=cells[:MAX_LISTED],
        details={
            "uid": uid,
            "status": status,
            "type": kind,
            "properties": output.get("properties"),
            "files": names,
            "sdc": [e.get("sdc") for e in files or [] if isinstance(e, dict)],
            "suppression_mask": _mask(outcome),
            "command": output.get("command"),
            "summary": output.get("summary"),
            "comments": comments if isinstance(comments, list) else [],
            "exception": exception or None,
        },
        source="acro",
    )


def results_findings(path: Path) -> list[Finding]:
    """One finding per output of an ACRO results.json (or one saying why it is unreadable)."""
    data = load_results(path)
    if isinstance(data, Finding):
        return [data]
    results: dict[str, Any] = data["results"]
    findings = [output_finding(str(uid), output) for uid, output in results.items()]
    if not findings:
        findings.append(
            Finding(
                check="acro-results",
                verdict=Verdict.review,
                message="ACRO's results.json lists no outputs",
                source="acro",
            )
        )
    version = data.get("version")
    if version != acro_version:
        findings.append(
            Finding(
                check="acro-version",
                verdict=Verdict.passed,
                message=f"written by ACRO {version}, read with ACRO {acro_version}",
                source="acro",
            )
        )
    return findings


def covering_output(table: Path) -> dict[str, Any] | None:
    """ACRO's record of `table` when a results.json beside it lists it as an output's file."""
    results = table.with_name("results.json")
    if not results.is_file():
        return None
    data = load_results(results)
    if isinstance(data, Finding):
        return None
    for uid, output in data["results"].items():
        if not isinstance(output, dict) or not isinstance(output.get("files"), list):
            continue
        for entry in output["files"]:
            if isinstance(entry, dict) and entry.get("name") == table.name:
                return {
                    "uid": str(uid),
                    "status": str(output.get("status", "")),
                    "sdc": entry.get("sdc"),
                }
    return None
