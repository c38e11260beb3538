"""Reading EMR tables: strict CSV and Parquet readers whose errors quote no cell."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tre.ingest import InputRejected
from tre.ingest.emr import read_csv, read_parquet, write_table

PATH = Path("emr/patients.csv")


def test_cells_are_read_as_text_exactly() -> None:
    data = b'\xef\xbb\xbfpatient_id,code,text\nMRN0000001,0012,"two\nlines, ""quoted"""\n'
    frame = read_csv(PATH, data)
    assert frame.to_dict("records") == [
        {"patient_id": "MRN0000001", "code": "0012", "text": 'two\nlines, "quoted"'}
    ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            "patient_id,name\nMRN1,Léonard\n".encode("latin-1"),
            r"is not UTF-8 text \(invalid byte at offset 22\)",
        ),
        (b'patient_id,name\nMRN1,"Leonard\n', r"is not well-formed CSV \(an unterminated quote\)"),
        (
            b"patient_id,name\nMRN1\nMRN2,b,c\n",
            r"has 2 row\(s\) whose number of fields differs from the header's 2 "
            r"\(first at line 2\)",
        ),
        (b"patient_id,a,a\nMRN1,1,2\n", "has duplicated column name"),
        (b"patient_id,,b\nMRN1,1,2\n", "has a column without a name"),
        (b"\n\n", "is empty: a table needs a header row"),
    ],
)  # fmt: skip
def test_bad_csv_is_refused_without_quoting_its_content(data: bytes, problem: str) -> None:
    with pytest.raises(InputRejected, match=problem) as raised:
        read_csv(PATH, data)
    assert raised.value.path == PATH
    assert "MRN" not in raised.value.problem
    assert "Leonard" not in raised.value.problem


def test_parquet_cells_become_text_like_csv_ones() -> None:
    table = pa.table(
        {
            "patient_id": ["MRN0000001", None],
            "admitted": [datetime(2024, 6, 29, 7, 30), None],
            "dose": [2.5, 1.0],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    frame = read_parquet(PATH, buffer.getvalue())
    assert frame.to_dict("records") == [
        {"patient_id": "MRN0000001", "admitted": "2024-06-29 07:30:00.000000", "dose": "2.5"},
        {"patient_id": "", "admitted": "", "dose": "1"},
    ]


def test_a_file_that_is_not_parquet_or_has_nested_columns_is_refused() -> None:
    with pytest.raises(InputRejected, match="is not a readable Parquet file"):
        read_parquet(PATH, b"PAR1 not really")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"patient_id": ["x"], "tags": [["a", "b"]]}), buffer)
    with pytest.raises(InputRejected, match="column 'tags' is not of a scalar type"):
        read_parquet(PATH, buffer.getvalue())


def test_written_parquet_depends_only_on_the_table(tmp_path: Path) -> None:
    table = pa.table({"pseudonym": ["PABC", "PDEF"], "n": [1.0, None]})
    write_table(table, tmp_path / "a.parquet")
    write_table(table, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
