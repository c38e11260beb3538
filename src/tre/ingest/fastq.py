"""Ingest of raw reads (FASTQ, gzip-compressed), called by the BAM dataset's ingest.

Invariant: an output `<pseudonym>[_<unit>]_R<n>.fastq.gz` holds one admitted patient's
reads with names rewritten by `ReadNamer` (so R1 and R2 stay paired), no comments after
the name and a bare `+` line, gzip-compressed with no file name and mtime 0.

The file name links the file: it must start with a lab sample id of the linkage table,
followed by '.', '_' or '-' (`GL23-1429_S1_L001_R1_001.fastq.gz`). `R1`/`R2` (or a final
`_1`/`_2`) gives the read number; what else follows the id (sample sheet number, lane,
chunk) is one sequencing unit: a patient's first unit is `<pseudonym>_R1.fastq.gz`, the
next `<pseudonym>_2_R1.fastq.gz`, in the sorted order of the source names.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

from .context import IngestContext
from .errors import InputRejected
from .genomics_common import (
    FileReport,
    Linkage,
    OutputNames,
    ReadNamer,
    assert_no_identifiers,
    keyed_read_name,
    move_into_version,
    note_source,
)

FASTQ_PATTERNS = ("*.fastq.gz", "*.fq.gz")
_EXTENSION = re.compile(r"\.(fastq|fq)\.gz$")
_READ_NUMBER = re.compile(r"(?:^|(?<=[._-]))R([12])(?=[._-]|$)|(?<=[._-])([12])$")
_BATCH = 4096


def read_number(rest: str) -> tuple[str | None, str]:
    """The read number (`"1"`, `"2"` or None) and the unit key (the rest without it)."""
    match = _READ_NUMBER.search(rest)
    if match is None:
        return None, rest
    number = match.group(1) or match.group(2)
    return number, rest[: match.start()] + "#" + rest[match.end() :]


def ingest_fastq(
    ctx: IngestContext,
    path: Path,
    *,
    linkage: Linkage,
    names: OutputNames,
    report: FileReport,
    scratch: Path,
) -> None:
    """Link one FASTQ file by its name and write it with neutral read names."""
    sample = linkage.sample_in_file_name(path.name)
    if sample is None:
        raise InputRejected(
            path, "the file name does not start with a lab sample id of the linkage table"
        )
    patient = linkage.patient_of(sample, path, "the file name")
    pseudonym = ctx.admit(patient, source=path, where="the file name")
    if pseudonym is None:
        return  # opted out: the file is not even read
    note_source(ctx, path)
    number, unit = read_number(_EXTENSION.sub("", path.name[len(sample) :]))
    output = scratch / "out.fastq.gz"
    namer = ReadNamer(keyed_read_name(ctx))
    comments = rewrite_fastq(path, output, namer)
    assert_no_identifiers([output], linkage.identifiers([sample]), path, scratch)
    if namer.renamed:
        report.changed["fastq: read names"] += namer.renamed
    if comments:
        report.removed["fastq: read name comments"] += comments
    index = names.unit(pseudonym, f"{sample}\0{unit}")
    stem = pseudonym if index == 1 else f"{pseudonym}_{index}"
    name = names.claim(stem, f"_R{number}.fastq.gz" if number else ".fastq.gz")
    move_into_version(ctx, output, name)


def rewrite_fastq(source: Path, output: Path, namer: ReadNamer) -> int:
    """Copy the records with new names; return how many name comments were dropped."""
    comments = 0
    try:
        with (
            gzip.open(source, "rb") as reads,
            output.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out,
        ):
            batch: list[bytes] = []
            for number, title in enumerate(reads, 1):
                sequence, plus, quality = next(reads, b""), next(reads, b""), next(reads, b"")
                if not title.startswith(b"@") or not plus.startswith(b"+"):
                    raise InputRejected(source, f"record {number} is not a FASTQ record")
                sequence, quality = sequence.rstrip(b"\r\n"), quality.rstrip(b"\r\n")
                if len(sequence) != len(quality) or not sequence:
                    raise InputRejected(
                        source,
                        f"record {number} is cut short (sequence and quality lengths differ)",
                    )
                parts = title[1:].split(None, 1)
                if not parts:
                    raise InputRejected(source, f"record {number} has no read name")
                if len(parts) > 1:
                    comments += 1
                name = parts[0]
                new = namer(name.decode("ascii", "replace")).encode("ascii", "replace")
                batch.append(b"@" + new + b"\n" + sequence + b"\n+\n" + quality + b"\n")
                if len(batch) == _BATCH:
                    out.write(b"".join(batch))
                    batch.clear()
            out.write(b"".join(batch))
    except (OSError, EOFError, zlib.error) as exc:
        raise InputRejected(source, "is not a complete gzip-compressed FASTQ file") from exc
    return comments
