"""Automated disclosure checks: each rule passes a safe file and flags an unsafe one with the
right cells; bad input gives a finding, never an exception."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tre.policy.disclosure import ACRO_DEFAULT, OPENSAFELY
from tre.review.checks import (
    FileChecks,
    FileKind,
    IdentifierIndex,
    Verdict,
    check_file,
    kind_of,
)

PSEUDONYM = "P3K7M2Q9XZ4T8V1N5R6W0"
NONE = IdentifierIndex.of()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def check(path: Path, *, profile=ACRO_DEFAULT, identifiers=NONE, earlier=()) -> FileChecks:
    result = check_file(
        path, kind=kind_of(path.name), profile=profile, identifiers=identifiers, earlier=earlier
    )
    json.dumps(result.model_dump(mode="json"))  # what the service stores
    return result


def finding(result: FileChecks, name: str):
    matches = [f for f in result.findings if f.check == name]
    assert matches, f"no {name} finding in {[f.check for f in result.findings]}"
    return matches[0]


def test_kinds() -> None:
    assert kind_of("out/Table.CSV") is FileKind.table
    assert kind_of("a.tsv") is FileKind.table
    assert kind_of("a.xlsx") is FileKind.table
    assert kind_of("plot.svg") is FileKind.figure
    assert kind_of("plot.pdf") is FileKind.figure
    assert kind_of("plot.jpg") is FileKind.figure
    assert kind_of("results.json") is FileKind.acro_results
    assert kind_of("other.json") is FileKind.other
    assert kind_of("notes.md") is FileKind.text
    assert kind_of("model.pkl") is FileKind.other


SAFE = "sex,grade,n\nF,II,40\nF,III,25\nM,II,35\nM,III,30\n"


def test_safe_count_table_passes(tmp_path: Path) -> None:
    result = check(write(tmp_path, "safe.csv", SAFE))
    assert result.verdict is Verdict.passed, result.summary
    assert finding(result, "minimum-threshold").source == "acro"
    assert finding(result, "dominance").verdict is Verdict.passed


def test_low_count_fails_with_its_cell(tmp_path: Path) -> None:
    result = check(write(tmp_path, "low.csv", SAFE.replace("M,III,30", "M,III,4")))
    assert result.verdict is Verdict.fail
    low = finding(result, "minimum-threshold")
    assert low.verdict is Verdict.fail
    assert low.cells == [("M / III", "n")]


def test_zeros_fail_only_when_the_profile_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "zero.csv", SAFE.replace("M,III,30", "M,III,0"))
    zeros = finding(check(path), "zeros")
    assert zeros.verdict is Verdict.fail
    assert zeros.cells == [("M / III", "n")]
    lenient = ACRO_DEFAULT.model_copy(update={"zeros_are_disclosive": False})
    result = check(path, profile=lenient)
    assert finding(result, "zeros").verdict is Verdict.passed
    # A zero is judged by the zeros rule, not as a count below the threshold.
    assert finding(result, "minimum-threshold").verdict is Verdict.passed


def test_missing_values_need_review_when_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "missing.csv", "group,n,mean_age\nA,40,51.2\nB,30,\n")
    assert not [f for f in check(path).findings if f.check == "missing-values"]
    strict = ACRO_DEFAULT.model_copy(update={"check_missing_values": True})
    missing = finding(check(path, profile=strict), "missing-values")
    assert missing.verdict is Verdict.review
    assert missing.cells == [("B", "mean_age")]


def test_redacted_cells_are_not_low_counts(tmp_path: Path) -> None:
    path = write(tmp_path, "redacted.csv", SAFE.replace("M,III,30", "M,III,[REDACTED]"))
    assert check(path).verdict is Verdict.passed


def test_dominance_cannot_be_checked_on_a_finished_magnitude_table(tmp_path: Path) -> None:
    path = write(tmp_path, "means.csv", "group,n,mean_income\nA,40,31000.5\nB,30,29000.25\n")
    dominance = finding(check(path), "dominance")
    assert dominance.verdict is Verdict.review
    assert "contributor" in dominance.message


def test_opensafely_flags_unrounded_and_unredacted_counts(tmp_path: Path) -> None:
    ok = write(tmp_path, "ok.csv", "region,n\nNorth,15\nSouth,[REDACTED]\nEast,20\n")
    assert check(ok, profile=OPENSAFELY).verdict is Verdict.passed
    bad = write(tmp_path, "bad.csv", "region,n\nNorth,17\nSouth,6\nEast,20\n")
    result = check(bad, profile=OPENSAFELY)
    assert finding(result, "rounding").cells == [("North", "n"), ("South", "n")]
    assert finding(result, "redaction").cells == [("South", "n")]
    assert finding(result, "rounding").details["examples"]["North / n"]["rounded"] == 15
    # Under ACRO's defaults rounding and redaction are not rules.
    assert not [f for f in check(bad).findings if f.check in ("rounding", "redaction")]


def test_xlsx_is_read_and_hidden_sheets_fail(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in [("site", "n"), ("A", 40), ("B", 3)]:
        sheet.append(row)
    path = tmp_path / "t.xlsx"
    book.save(path)
    assert finding(check(path), "minimum-threshold").cells == [("B", "n")]
    hidden = book.create_sheet("raw")
    hidden.append(("pseudonym",))
    hidden.sheet_state = "hidden"
    book.save(path)
    readable = finding(check(path), "readable")
    assert readable.verdict is Verdict.fail
    assert "hidden" in readable.message


def test_formula_payload_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "f.csv", 'group,n\n"=HYPERLINK(""http://x"")",40\nB,-3\n')
    formulas = finding(check(path), "formulas")
    assert formulas.verdict is Verdict.fail
    assert len(formulas.cells) == 1


# -- ACRO's own results.json -------------------------------------------------------------


@pytest.fixture
def acro_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A results.json written by ACRO itself from a small DataFrame."""
    import acro

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], 300),
            "grade": rng.choice(["I", "II", "III"], 300, p=[0.02, 0.49, 0.49]),
            "los": rng.integers(1, 30, 300).astype(float),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ACRO's pandas calls warn; not ours to fix
        session = acro.ACRO(suppress=False)
        session.crosstab(frame.sex, frame.grade)  # output_0: grade I is too small: fail
        session.crosstab(frame.sex, frame.sex)  # output_1: F/M counts, zeros off-diagonal
        safe = frame[frame.grade != "I"]
        session.crosstab(safe.sex, safe.grade)  # output_2: pass
        session.add_exception("output_0", "grade I is published elsewhere")
        session.finalise(str(tmp_path / "acro-out"), "json")
    return tmp_path / "acro-out" / "results.json"


def test_acro_results_verdicts_are_acros(acro_results: Path) -> None:
    raw = json.loads(acro_results.read_text())["results"]
    result = check(acro_results)
    by_uid = {f.details["uid"]: f for f in result.findings if f.check.startswith("acro:")}
    for uid, output in raw.items():
        expected = {"pass": Verdict.passed, "fail": Verdict.fail}.get(
            output["status"], Verdict.review
        )
        if output["exception"] and expected is Verdict.passed:
            expected = Verdict.review
        assert by_uid[uid].verdict is expected, uid
        assert by_uid[uid].source == "acro"
    assert raw["output_0"]["status"] == "fail"
    failing = by_uid["output_0"]
    assert failing.verdict is Verdict.fail
    assert set(failing.cells) == {("F", "I"), ("M", "I")}
    assert failing.details["suppression_mask"]["F"]["I"].startswith("MinimumThresholdCheck")
    assert failing.details["exception"] == "grade I is published elsewhere"
    assert raw["output_2"]["status"] == "pass"
    assert by_uid["output_2"].verdict is Verdict.passed
    assert result.verdict is Verdict.fail


def test_acro_results_cover_the_table_they_made(acro_results: Path) -> None:
    table = acro_results.with_name("output_2_0.csv")
    dominance = finding(check(table), "dominance")
    assert dominance.source == "acro"
    assert dominance.details["uid"] == "output_2"


def test_acros_threshold_failure_is_not_called_a_dominance_failure(acro_results: Path) -> None:
    """output_0 fails ACRO's threshold rule only: its dominance rules found nothing."""
    raw = json.loads(acro_results.read_text())["results"]["output_0"]
    summaries = [f["sdc"]["summary"] for f in raw["files"]]
    assert raw["status"] == "fail" and any(s["MinimumThresholdCheck"] for s in summaries)
    assert not any(s.get("NKCheck") or s.get("PPercentCheck") for s in summaries)
    result = check(acro_results.with_name("output_0_0.csv"))
    dominance = finding(result, "dominance")
    assert dominance.source == "acro"
    assert dominance.verdict is Verdict.passed, dominance.message
    assert finding(result, "minimum-threshold").verdict is Verdict.fail


def test_exception_alone_needs_review(tmp_path: Path) -> None:
    results = {
        "version": "1.0.2",
        "results": {
            "output_0": {
                "uid": "output_0",
                "status": "pass",
                "type": "table",
                "files": [],
                "outcome": {},
                "exception": "please release",
            }
        },
    }
    path = write(tmp_path, "results.json", json.dumps(results))
    assert finding(check(path), "acro:output_0").verdict is Verdict.review


# -- identifiers ----------------------------------------------------------------------------


def test_pseudonyms_block(tmp_path: Path) -> None:
    index = IdentifierIndex.of([PSEUDONYM])
    path = write(tmp_path, "rows.csv", f"pseudonym,n\n{PSEUDONYM},40\nother,50\n")
    result = check(path, identifiers=index)
    assert result.verdict is Verdict.block
    assert finding(result, "project-pseudonyms").cells == [(f"{PSEUDONYM}", "pseudonym")]
    text = write(tmp_path, "notes.txt", f"outlier was {PSEUDONYM}\n")
    assert check(text, identifiers=index).verdict is Verdict.block
    assert check(write(tmp_path, "clean.txt", "nothing here\n"), identifiers=index).verdict is (
        Verdict.review
    )


def test_dob_column_blocks(tmp_path: Path) -> None:
    path = write(tmp_path, "dob.csv", "group,date_of_birth,n\nA,1961-04-12,40\nB,,50\n")
    dob = finding(check(path), "date-of-birth")
    assert dob.verdict is Verdict.block
    assert [column for _, column in dob.cells] == ["date_of_birth"]
    assert dob.cells[0][0].startswith("A")
    years = write(tmp_path, "years.csv", "birth_year,n\n1960,40\n1961,50\n")
    assert check(years).verdict is Verdict.passed
    text = write(tmp_path, "t.md", "The patient, born 12/04/1961, was seen.\n")
    assert finding(check(text), "date-of-birth").verdict is Verdict.block


def test_long_free_text_blocks(tmp_path: Path) -> None:
    note = "Seen in clinic with her daughter; " * 10
    path = write(tmp_path, "free.csv", f'group,n,comment\nA,40,short\nB,50,"{note}"\n')
    free = finding(check(path), "free-text")
    assert free.verdict is Verdict.block
    assert [column for _, column in free.cells] == ["comment"]
    assert free.cells[0][0].startswith("B")


def test_hospital_identifiers_block(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "group,n\nMRN0012345,40\nB,50\n")
    assert finding(check(path), "hospital-identifiers").cells == [("MRN0012345", "group")]
    nhs = write(tmp_path, "nhs.txt", "NHS number 943 476 5919 in the log\n")
    assert finding(check(nhs), "hospital-identifiers").verdict is Verdict.block
    not_nhs = write(tmp_path, "n.txt", "a number 943 476 5918 that fails the checksum\n")
    assert not [f for f in check(not_nhs).findings if f.check == "hospital-identifiers"]


def test_digits_glued_to_letters_are_not_a_national_number(tmp_path: Path) -> None:
    """matplotlib's SVG ids are a letter and hex digits: all digits now and then, and one
    in eleven of those passes the NHS checksum. That once blocked a plain bar chart."""
    svg = write(
        tmp_path,
        "plot.svg",
        '<svg xmlns="http://www.w3.org/2000/svg"><clipPath id="p9434765919"/>'
        '<use href="#p9434765919"/><text>NHS 9434765919</text></svg>\n',
    )
    found = finding(check(svg), "hospital-identifiers")
    assert found.verdict is Verdict.block
    assert found.message.startswith("1 value"), found.message  # the text, not the id
    glued = write(tmp_path, "ids.svg", '<svg><clipPath id="p9434765919"/></svg>\n')
    assert not [f for f in check(glued).findings if f.check == "hospital-identifiers"]


# -- differencing ----------------------------------------------------------------------------

EARLIER = "region,male,female,total\nNorth,40,45,85\nSouth,30,35,65\nEast,50,55,105\n"


def test_differencing_flags_a_moved_category(tmp_path: Path) -> None:
    before = write(tmp_path, "released.csv", EARLIER)
    moved = EARLIER.replace("North,40,45,85", "North,37,45,82").replace(
        "South,30,35,65", "South,33,35,68"
    )
    result = check(write(tmp_path, "now.csv", moved), earlier=[before])
    diff = finding(result, "differencing")
    assert diff.verdict is Verdict.review
    assert set(diff.cells) == {
        ("North", "male"),
        ("North", "total"),
        ("South", "male"),
        ("South", "total"),
    }
    assert "40 → 37 (-3)" in diff.message


def test_differencing_passes_an_unrelated_table(tmp_path: Path) -> None:
    before = write(tmp_path, "released.csv", EARLIER)
    other = write(tmp_path, "other.csv", "grade,n\nII,40\nIII,60\n")
    assert finding(check(other, earlier=[before]), "differencing").verdict is Verdict.passed
    bigger = EARLIER.replace("40,45,85", "140,145,285").replace("30,35,65", "130,135,265")
    changed = write(tmp_path, "changed.csv", bigger)
    assert finding(check(changed, earlier=[before]), "differencing").verdict is Verdict.passed
    same = write(tmp_path, "same.csv", EARLIER)
    assert finding(check(same, earlier=[before]), "differencing").verdict is Verdict.passed


# -- figures ----------------------------------------------------------------------------------


def _figure(path: Path, label: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(["A", "B"], [40, 50])
    ax.set_title(label)
    fig.savefig(path)
    plt.close(fig)
    return path


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_figures_need_manual_review(tmp_path: Path, suffix: str) -> None:
    result = check(_figure(tmp_path / f"plot.{suffix}", "Admissions by site"))
    assert result.verdict is Verdict.review
    facts = finding(result, "manual-review").details
    assert facts["format"] == suffix


@pytest.mark.parametrize("suffix", ["svg", "pdf"])
def test_figure_text_with_a_pseudonym_blocks(tmp_path: Path, suffix: str) -> None:
    path = _figure(tmp_path / f"plot.{suffix}", f"outlier {PSEUDONYM}")
    result = check(path, identifiers=IdentifierIndex.of([PSEUDONYM]))
    assert result.verdict is Verdict.block, result.summary


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("empty.csv", b"", "empty"),
        ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(128, 256)), "binary"),
        ("latin.csv", "région,n\nNord,40\n".encode("latin-1"), "UTF-8"),
        ("ragged.csv", b"a,b\n1,2,3\n", "number of fields"),
        ("quote.csv", b'a,b\n"unterminated,2\n', "CSV"),
        ("bad.xlsx", b"PK\x03\x04 not really a zip", "XLSX"),
        ("results.json", b"{not json", "JSON"),
        ("results.json", b'{"something": "else"}', "ACRO"),
        ("plot.png", b"not a png", "image"),
        ("plot.pdf", b"not a pdf", "PDF"),
        ("plot.svg", b"<html></html>", "SVG"),
    ],
)
def test_malformed_files_give_a_finding(
    tmp_path: Path, name: str, content: bytes, words: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = check(path)
    assert result.verdict is Verdict.fail, result.summary
    assert any(words in f.message for f in result.findings), result.findings


def test_huge_table_is_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as handle:
        handle.truncate(40 << 20)
    result = check(path)
    assert result.verdict is Verdict.fail
    assert "MiB" in finding(result, "readable").message


def test_missing_file_blocks_rather_than_raises(tmp_path: Path) -> None:
    result = check(tmp_path / "gone.csv")
    assert result.verdict in (Verdict.fail, Verdict.block)


def test_ten_thousand_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"area": [f"area {i}" for i in range(10_000)], "n": rng.integers(10, 99, 10_000)}
    )
    frame.loc[1234, "n"] = 3
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    low = finding(check(path), "minimum-threshold")
    assert low.cells == [("area 1234", "n")]
