"""What VCF, BAM and FASTQ ingest share: the linkage table, the read-name rule, tools and checks.

Invariant: a genomics output file is published only after the whole decompressed file has
been searched for the linkage identifiers (lab sample ids and hospital ids) of the
samples it came from, and none was found; a file that fails anything is not published.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO

from .context import IngestContext
from .errors import IngestError, InputRejected

LINKAGE_TABLE = "samples.csv"
SAMPLE_COLUMN = "lab_sample_id"
PATIENT_COLUMN = "patient_id"
MIN_NEEDLE_LENGTH = 6
"""Shorter identifiers are not searched for in outputs: they would match data by chance."""

BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_FILE_NAME_SEPARATORS = "._-"
_PATH_LIKE = re.compile(r"(?:^|[\s\"'=(\[,;:/~.])/[^\s/\"',;]+/")
_WINDOWS_PATH = re.compile(r"(?:^|[\s\"'=])[A-Za-z]:\\")


# -- the linkage table ---------------------------------------------------------------


@dataclass(frozen=True)
class Linkage:
    """`samples.csv` of the silo folder: lab sample id -> hospital patient id."""

    path: Path
    patients: dict[str, str]

    @classmethod
    def load(cls, ctx: IngestContext) -> Linkage:
        """Read and note the table; a table that cannot link anything ends the run."""
        path = ctx.source_dir / LINKAGE_TABLE
        if not path.is_file():
            raise IngestError(
                f"{path}: linkage table is missing; it must map '{SAMPLE_COLUMN}' to "
                f"'{PATIENT_COLUMN}' for every sample"
            )
        try:
            text = ctx.read_source(path).decode("utf-8-sig")
        except (InputRejected, UnicodeDecodeError) as exc:
            raise IngestError(f"{path}: linkage table is not readable UTF-8 text") from exc
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = reader.fieldnames or []
        for column in (SAMPLE_COLUMN, PATIENT_COLUMN):
            if column not in columns:
                raise IngestError(
                    f"{path}: linkage table has no '{column}' column "
                    f"(columns: {', '.join(columns) or 'none'})"
                )
        patients: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            sample = (row.get(SAMPLE_COLUMN) or "").strip()
            patient = (row.get(PATIENT_COLUMN) or "").strip()
            if not sample or not patient:
                raise IngestError(
                    f"{path}: line {line}: empty '{SAMPLE_COLUMN}' or '{PATIENT_COLUMN}'"
                )
            if patients.setdefault(sample, patient) != patient:
                raise IngestError(
                    f"{path}: line {line}: the lab sample id is linked to two different patients"
                )
        return cls(path, patients)

    def patient_of(self, sample: str, source: Path, where: str) -> str:
        """The hospital id of a lab sample id; a sample the table lacks rejects the file."""
        patient = self.patients.get(sample.strip())
        if patient is None:
            raise InputRejected(
                source, f"{where} names a sample that is not in the linkage table {LINKAGE_TABLE}"
            )
        return patient

    def sample_in_file_name(self, name: str) -> str | None:
        """The longest lab sample id the file name starts with, followed by '.', '_' or '-'."""
        best: str | None = None
        for sample in self.patients:
            follows = name[len(sample) : len(sample) + 1]
            if (
                name.startswith(sample)
                and (follows == "" or follows in _FILE_NAME_SEPARATORS)
                and (best is None or len(sample) > len(best))
            ):
                best = sample
        return best

    def identifiers(self, samples: Iterable[str]) -> set[str]:
        """The lab sample ids and hospital ids an output made from `samples` must not contain."""
        found: set[str] = set()
        for sample in samples:
            found.add(sample)
            if sample in self.patients:
                found.add(self.patients[sample])
        return found


# -- read names ------------------------------------------------------------------------

_KEPT_NAME = re.compile(r"[0-9:._/]*")
_READ_SUFFIX = re.compile(r"(?:[:._/][0-9]+){1,4}$")
_READ_SUFFIX_ONLY = re.compile(r"(?:[:._/][0-9]+){1,4}")
_ENDS_NUMERIC = re.compile(r"[:._/][0-9]+$")
MAX_READ_PREFIXES = 4096


class ReadNamer:
    """Rewrites read names whose prefix may carry an instrument, run or sample id.

    The rule (the same for BAM and FASTQ, deterministic, one pass, bounded memory):

    - a name made only of digits and ':', '.', '_', '/' is kept as it is;
    - otherwise the name splits into a prefix and a suffix of at most four trailing
      numeric fields, each led by ':', '.', '_' or '/' (Illumina's `:lane:tile:x:y`, the
      SRA/ENA spot number `.1234`, a mate mark `/1`); the suffix is kept and the prefix
      becomes `r<k>`, k being the order in which the prefix first appears in the file
      (`ERR229775.22049853` -> `r1.22049853`, `A00123:8:HXXX:1:1101:1000:2000` ->
      `r1:1:1101:1000:2000`), which keeps names unique and mates paired, and keeps the
      tile coordinates optical-duplicate marking needs;
    - after 4096 distinct prefixes (names with no run structure), a new prefix's names
      become `k` + a keyed digest of the whole name (HMAC under the project key), so
      memory stays bounded and mates still get equal names.
    """

    __slots__ = ("_keyed", "_last", "_prefixes", "renamed")

    def __init__(self, keyed: Callable[[str], str]) -> None:
        self._keyed = keyed
        self._prefixes: dict[str, str] = {}
        self._last = ("\0", "")  # (prefix, neutral) of the previous read, if reusable
        self.renamed = 0

    def __call__(self, name: str) -> str:
        # Reads come in runs sharing a prefix: try the previous one first (half the cost).
        last, neutral = self._last
        if name.startswith(last) and _READ_SUFFIX_ONLY.fullmatch(name, len(last)):
            self.renamed += 1
            return neutral + name[len(last) :]
        if _KEPT_NAME.fullmatch(name):
            return name
        self.renamed += 1
        match = _READ_SUFFIX.search(name)
        cut = match.start() if match else len(name)
        prefix = name[:cut]
        known = self._prefixes.get(prefix)
        if known is None:
            if len(self._prefixes) >= MAX_READ_PREFIXES:
                return self._keyed(name)
            known = self._prefixes[prefix] = f"r{len(self._prefixes) + 1}"
        # A prefix that ends in a numeric field could split differently for another name.
        if not _ENDS_NUMERIC.search(prefix):
            self._last = (prefix, known)
        return known + name[cut:]


def keyed_read_name(ctx: IngestContext) -> Callable[[str], str]:
    """`k` + 32 hex digits keyed under the project (the project's keyed UID mapping)."""
    remap = ctx.keys.uids.remap

    def keyed(name: str) -> str:
        return "k" + format(int(remap("read-name:" + name).rpartition(".")[2]), "032x")

    return keyed


# -- output names ------------------------------------------------------------------------


@dataclass
class OutputNames:
    """Unique output names within one version; later claimants get `_2`, `_3`, ..."""

    taken: set[str] = field(default_factory=set)
    units: dict[tuple[str, str], int] = field(default_factory=dict)

    def claim(self, stem: str, suffix: str) -> str:
        name, n = stem + suffix, 2
        while name in self.taken:
            name, n = f"{stem}_{n}{suffix}", n + 1
        self.taken.add(name)
        return name

    def unit(self, owner: str, key: str) -> int:
        """1 for an owner's first unit (e.g. a sequencing lane), 2 for the next, ..."""
        known = sum(1 for o, _ in self.units if o == owner)
        return self.units.setdefault((owner, key), known + 1)


# -- per-file bookkeeping ---------------------------------------------------------------


@dataclass
class FileReport:
    """Counters of one file, added to the run's report only if the file is published."""

    removed: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)


@contextmanager
def one_file(ctx: IngestContext) -> Iterator[FileReport]:
    """Count a file's changes and admitted patients only if it is not rejected."""
    patients, excluded = set(ctx.report.patients), set(ctx.report.excluded)
    report = FileReport()
    try:
        yield report
    except InputRejected:
        ctx.report.patients.intersection_update(patients)
        ctx.report.excluded.intersection_update(excluded)
        raise
    ctx.report.removed.update(report.removed)
    ctx.report.changed.update(report.changed)


@contextmanager
def work_dir(ctx: IngestContext) -> Iterator[Path]:
    """A private scratch folder beside the staged version (same file system, never sealed)."""
    with tempfile.TemporaryDirectory(prefix="genomics-", dir=ctx.out_dir.parent) as tmp:
        yield Path(tmp)


def source_files(source_dir: Path, patterns: Sequence[str]) -> list[Path]:
    """Files under `source_dir` matching any pattern, hidden ones left out, sorted."""
    found = {
        path
        for pattern in patterns
        for path in source_dir.rglob(pattern)
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(source_dir).parts)
    }
    return sorted(found)


def note_source(ctx: IngestContext, path: Path) -> None:
    """Checksum a (possibly large) source file in blocks and note it for the manifest."""
    try:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256")
    except OSError as exc:
        raise InputRejected(path, f"cannot read file: {exc.strerror}") from exc
    ctx.note_source(path, digest.hexdigest())


def move_into_version(ctx: IngestContext, staged: Path, relative: str) -> None:
    staged.replace(ctx.output(relative))


# -- values in headers ------------------------------------------------------------------


def looks_like_path(value: str) -> bool:
    """True for values that name a file: `/a/b`, `file:///a`, `~/a/b`, `C:\\a`."""
    return bool(_PATH_LIKE.search(value) or _WINDOWS_PATH.search(value))


def strip_path(value: str) -> str:
    """The last component of a path or URL (`file:///refs/hg19.fa` -> `hg19.fa`)."""
    return re.split(r"[/\\]", value.strip().strip('"'))[-1]


def mentions(value: str, identifiers: Iterable[str]) -> bool:
    return any(identifier in value for identifier in identifiers)


def transform_iso_date(ctx: IngestContext, value: str, patient_id: str) -> str | None:
    """An ISO 8601 date or date-time shifted or generalised for the patient; None if not one."""
    text = value.strip()
    try:
        parsed: date = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        return None
    return ctx.transform_date(parsed, patient_id).isoformat()


# -- external tools ----------------------------------------------------------------------


class ToolFailed(Exception):
    """An external tool exited with an error; its stderr stays out of any manifest."""

    def __init__(self, tool: str, returncode: int, stderr: str) -> None:
        self.tool = tool
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{tool} exited with status {returncode}")


def require_tools(ctx: IngestContext, names: Sequence[str]) -> None:
    """Fail the run early if a tool is missing; record each tool's version in the manifest."""
    for name in names:
        if shutil.which(name) is None:
            raise IngestError(
                f"{name} is not installed on this host; genomics ingest needs it "
                "(Debian packages bcftools, samtools and tabix)"
            )
        out = subprocess.run([name, "--version"], capture_output=True, check=False, env=tool_env())
        # samtools prints its copyright with a Latin-1 byte: only the first line matters.
        first = (out.stdout or out.stderr).decode("utf-8", "replace").splitlines()[:1]
        version = first[0].split()[-1] if first else "unknown"
        ctx.report.tools[name] = version


def tool_env() -> dict[str, str]:
    """Environment for htslib tools: no remote reference lookups, C locale.

    htslib fetches CRAM reference sequences from EBI when REF_PATH is unset; the ingest
    host must not reach the internet, so only local entries of REF_PATH/REF_CACHE stay.
    """
    env = {k: v for k, v in os.environ.items() if k not in {"REF_PATH", "REF_CACHE"}}
    # htslib splits REF_PATH on ':' and re-joins "http" + "//host/..."; keep local folders.
    local = [
        entry
        for entry in os.environ.get("REF_PATH", "").split(":")
        if entry.startswith("/") and not entry.startswith("//")
    ]
    env["REF_PATH"] = ":".join(local) or "/nonexistent/tre-no-remote-references"
    cache = os.environ.get("REF_CACHE", "")
    if cache.startswith("/"):
        env["REF_CACHE"] = cache
    env["LC_ALL"] = "C"
    return env


@dataclass
class Pipeline:
    """Commands connected stdout to stdin; each one's stderr kept in a scratch file."""

    commands: list[list[str]]
    scratch: Path

    def run(self, stdin: Path | None = None, stdout: Path | None = None) -> None:
        """Run to completion; raise `ToolFailed` for the first command that failed."""
        procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        env = tool_env()
        with (
            open_or_none(stdin, "rb") as first_in,
            open_or_none(stdout, "wb") as last_out,
        ):
            previous: IO[bytes] | None = first_in
            for index, command in enumerate(self.commands):
                err_path = self.scratch / f"stderr-{index}.txt"
                last = index == len(self.commands) - 1
                with err_path.open("wb") as err:
                    sink = last_out if last_out is not None else subprocess.DEVNULL
                    proc = subprocess.Popen(
                        command,
                        stdin=previous if previous is not None else subprocess.DEVNULL,
                        stdout=sink if last else subprocess.PIPE,
                        stderr=err,
                        env=env,
                    )
                if index > 0 and previous is not None:
                    previous.close()  # the child holds it now
                previous = proc.stdout
                procs.append((Path(command[0]).name, proc, err_path))
            for _, proc, _ in procs:
                proc.wait()
        failed = [(tool, proc.returncode, err) for tool, proc, err in procs if proc.returncode]
        if failed:
            # A command that fails makes the ones feeding it die of SIGPIPE: name the cause.
            causes = [f for f in failed if f[1] != -signal.SIGPIPE] or failed
            stderr = "".join(err.read_text(errors="replace") for _, _, err in failed)
            raise ToolFailed(causes[0][0], causes[0][1], stderr)


@contextmanager
def open_or_none(path: Path | None, mode: str) -> Iterator[IO[bytes] | None]:
    if path is None:
        yield None
        return
    with path.open(mode) as handle:
        yield handle


def bgzf_problem(path: Path) -> str | None:
    """Why a file is not a complete BGZF file (VCF.gz, BCF, BAM), or None."""
    try:
        with path.open("rb") as handle:
            head = handle.read(18)
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - len(BGZF_EOF)))
            tail = handle.read()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if head[:4] != b"\x1f\x8b\x08\x04" or head[12:14] != b"BC":
        return "is not BGZF-compressed (compress it with bgzip)"
    if tail != BGZF_EOF:
        return "is truncated: the BGZF end-of-file marker is missing"
    return None


def assert_no_identifiers(
    outputs: Sequence[Path], identifiers: Iterable[str], source: Path, scratch: Path
) -> None:
    """Search each decompressed output for the identifiers; any hit rejects the source file.

    `bgzip -dc | grep -F` (Aho-Corasick in C) reads ~0.5 GB/s, so the check costs a
    fraction of writing the output.
    """
    needles = sorted({i for i in identifiers if len(i) >= MIN_NEEDLE_LENGTH})
    if not needles:
        return
    patterns = scratch / "identifiers.txt"
    patterns.write_text("\n".join(needles) + "\n", encoding="utf-8")
    env = tool_env()
    for output in outputs:
        with output.open("rb") as data:
            inflate = subprocess.Popen(
                ["bgzip", "-dc"],
                stdin=data,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            assert inflate.stdout is not None
            grep = subprocess.run(
                ["grep", "-a", "-F", "-q", "-f", str(patterns)],
                stdin=inflate.stdout,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                check=False,
            )
            inflate.stdout.close()
            inflate.wait()
        if grep.returncode == 0:
            raise InputRejected(
                source,
                "an identifier from the linkage table (lab sample id or hospital id) is still "
                "in the data after de-identification (e.g. in a record or tag value); nothing "
                "was written for this file",
            )
        if grep.returncode != 1 or inflate.returncode != 0:
            raise InputRejected(source, "the output could not be checked for identifiers")
    patterns.unlink()
