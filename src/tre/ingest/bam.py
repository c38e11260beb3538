"""Ingest of aligned reads (BAM/CRAM) with pysam and samtools; FASTQ files go to `fastq`.

Invariant: an output `<pseudonym>.bam` holds one admitted patient's reads, its header
reduced to an allow-list (no `@CO`, no command line, no description, platform unit,
institution or source read-group id), every read's `RG` tag pointing at the neutral
read group and every read name rewritten by `ReadNamer`'s documented rule.

Header rules:

- `@HD`: VN, SO, GO, SS kept;
- `@SQ`: SN, LN, AH, AN, AS, M5, SP, TP kept; UR reduced to its file name; DS dropped;
- `@RG`: ID -> `rg1`, `rg2`, ... (header order, and every read's RG tag follows); SM ->
  the pseudonym (`_2`, ... for a patient's further samples); LB -> `lib1`, ...; DT
  shifted or generalised like every date of the patient; PL (the SAM list), PM, PI, FO,
  KS, BC kept when well-formed; PG follows the renamed `@PG`; CN kept only with the
  dataset option `retain_institution_identity`; DS, PU and anything else dropped;
- `@PG`: ID -> the program name (`bwa`, `samtools.1`, ...), PP follows; PN and VN kept
  when plain tokens; CL and DS dropped;
- `@CO`: dropped.

Reads: the tags CO (free text), LB, PU and PG are removed; RG is rewritten. When no read
carries such a tag and no read name needs rewriting, only the header changes and
`samtools reheader` does it without touching the reads (the fast path). CRAM input is
decoded by samtools with local references only and written as BAM.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from itertools import islice
from pathlib import Path
from typing import Any

import pysam

from tre.policy.datasets import DicomOption

from .context import IngestContext
from .errors import IngestError, InputRejected
from .fastq import FASTQ_PATTERNS, ingest_fastq
from .genomics_common import (
    FileReport,
    Linkage,
    OutputNames,
    Pipeline,
    ReadNamer,
    ToolFailed,
    assert_no_identifiers,
    bgzf_problem,
    keyed_read_name,
    looks_like_path,
    mentions,
    move_into_version,
    note_source,
    one_file,
    require_tools,
    source_files,
    strip_path,
    tool_env,
    transform_iso_date,
    work_dir,
)

ALIGNMENT_PATTERNS = ("*.bam", "*.cram")
READ_TAGS_REMOVED = ("CO", "LB", "PU", "PG")
HD_FIELDS = ("VN", "SO", "GO", "SS")
SQ_FIELDS = ("SN", "LN", "AH", "AN", "AS", "M5", "SP", "TP")
PLATFORMS = frozenset(
    (
        *("CAPILLARY", "DNBSEQ", "ELEMENT", "HELICON", "ILLUMINA", "IONTORRENT", "LS454"),
        *("ONT", "PACBIO", "SINGULAR", "SOLID", "ULTIMA"),
    )
)
_TOKEN = re.compile(r"[A-Za-z0-9][\w.+-]{0,63}")
_BASES = re.compile(r"[ACGTNacgtn*+-]{1,256}")
_INTEGER = re.compile(r"\d{1,9}")
_PLAIN_NAME = "[^0-9:._/]"  # samtools expression: a read name ReadNamer would change
_FIRST_READS = 10_000


@dataclass
class ScrubbedHeader:
    header: dict[str, Any]
    read_groups: dict[str, str]
    """Source @RG ID -> new ID."""

    def pysam_header(self) -> pysam.AlignmentHeader:
        return pysam.AlignmentHeader.from_dict(self.header)


@dataclass
class HeaderScrubber:
    """The pure header rules of the module docstring."""

    samples: Mapping[str, str]
    """Source SM -> new SM."""
    transform_date: Callable[[str], str | None]
    identifiers: Iterable[str]
    keep_institution: bool
    report: FileReport
    _ids: list[str] = field(default_factory=list)

    def scrub(self, source: Mapping[str, Any]) -> ScrubbedHeader:
        self._ids = sorted(self.identifiers)
        out: dict[str, Any] = {}
        if "HD" in source:
            out["HD"] = self._keep(source["HD"], HD_FIELDS, "bam: @HD fields")
        if "SQ" in source:
            out["SQ"] = [self._sequence(sq) for sq in source["SQ"]]
        programs = self._program_ids(source.get("PG", []))
        read_groups: dict[str, str] = {}
        libraries: dict[str, str] = {}
        groups = []
        for number, rg in enumerate(source.get("RG", []), 1):
            read_groups[rg["ID"]] = f"rg{number}"
            groups.append(self._read_group(rg, f"rg{number}", libraries, programs))
        if groups:
            out["RG"] = groups
        pgs = [self._program(pg, programs) for pg in source.get("PG", [])]
        if pgs:
            out["PG"] = pgs
        if source.get("CO"):
            self.report.removed["bam: @CO comment lines"] += len(source["CO"])
        for key in source.keys() - {"HD", "SQ", "RG", "PG", "CO"}:
            self.report.removed["bam: other header lines"] += len(source[key])
        return ScrubbedHeader(out, read_groups)

    def _keep(self, line: Mapping[str, Any], allowed: tuple[str, ...], kind: str) -> dict[str, Any]:
        kept = {k: v for k, v in line.items() if k in allowed and self._plain(v)}
        if len(kept) < len(line):
            self.report.removed[kind] += len(line) - len(kept)
        return kept

    def _plain(self, value: object) -> bool:
        text = str(value)
        return not looks_like_path(text) and not mentions(text, self._ids)

    def _sequence(self, sq: Mapping[str, Any]) -> dict[str, Any]:
        kept = self._keep({k: v for k, v in sq.items() if k != "UR"}, SQ_FIELDS, "bam: @SQ fields")
        uri = sq.get("UR")
        if uri is not None:
            name = strip_path(str(uri))
            if name and not mentions(name, self._ids):
                kept["UR"] = name
                self.report.changed["bam: @SQ reference URIs reduced to file names"] += 1
            else:
                self.report.removed["bam: @SQ fields"] += 1
        return kept

    def _program_ids(self, pgs: list[Mapping[str, Any]]) -> dict[str, str]:
        new: dict[str, str] = {}
        for pg in pgs:
            name = str(pg.get("PN", ""))
            base = name if _TOKEN.fullmatch(name) and self._plain(name) else "program"
            candidate, n = base, 1
            while candidate in new.values():
                candidate, n = f"{base}.{n}", n + 1
            new[str(pg["ID"])] = candidate
        return new

    def _program(self, pg: Mapping[str, Any], programs: Mapping[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {"ID": programs[str(pg["ID"])]}
        for key, value in pg.items():
            text = str(value)
            if key in ("PN", "VN") and _TOKEN.fullmatch(text) and self._plain(text):
                out[key] = text
            elif key == "PP" and text in programs:
                out[key] = programs[text]
            elif key == "CL":
                self.report.removed["bam: @PG command lines"] += 1
            elif key != "ID":
                self.report.removed["bam: @PG fields"] += 1
        return out

    def _read_group(
        self,
        rg: Mapping[str, Any],
        new_id: str,
        libraries: dict[str, str],
        programs: Mapping[str, str],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"ID": new_id}
        self.report.changed["bam: read group ids"] += 1
        for key, value in rg.items():
            text = str(value)
            kept = self._read_group_field(key, text, libraries, programs)
            if kept is not None:
                out[key] = kept
            elif key != "ID":
                self.report.removed[f"bam: @RG {key} fields"] += 1
        return out

    def _read_group_field(
        self, key: str, text: str, libraries: dict[str, str], programs: Mapping[str, str]
    ) -> str | None:
        if key == "SM":
            if text in self.samples:
                self.report.changed["bam: sample names"] += 1
            return self.samples.get(text)
        if key == "LB":
            return libraries.setdefault(text, f"lib{len(libraries) + 1}")
        if key == "DT":
            shifted = self.transform_date(text)
            if shifted is not None:
                self.report.changed["bam: read group dates"] += 1
            return shifted
        if key == "PG":
            return programs.get(text)
        if key == "CN":
            return text if self.keep_institution and self._plain(text) else None
        checks = {
            "PL": lambda t: t.upper() in PLATFORMS,
            "PM": lambda t: bool(_TOKEN.fullmatch(t)) and self._plain(t),
            "PI": lambda t: bool(_INTEGER.fullmatch(t)),
            "FO": lambda t: bool(_BASES.fullmatch(t)),
            "KS": lambda t: bool(_BASES.fullmatch(t)),
            "BC": lambda t: bool(_BASES.fullmatch(t)),
        }
        check = checks.get(key)
        return text if check is not None and check(text) else None


# -- files ------------------------------------------------------------------------------


@dataclass
class BamIngest:
    ctx: IngestContext
    linkage: Linkage
    names: OutputNames

    def ingest_file(self, path: Path) -> None:
        with one_file(self.ctx) as report, work_dir(self.ctx) as scratch:
            if path.name.endswith((".fastq.gz", ".fq.gz")):
                ingest_fastq(
                    self.ctx,
                    path,
                    linkage=self.linkage,
                    names=self.names,
                    report=report,
                    scratch=scratch,
                )
            else:
                self._alignment(path, report, scratch)

    def _alignment(self, path: Path, report: FileReport, scratch: Path) -> None:
        cram = path.suffix == ".cram"
        problem = _cram_problem(path) if cram else bgzf_problem(path)
        if problem is not None:
            raise InputRejected(path, f"{'CRAM' if cram else 'BAM'} file {problem}")
        note_source(self.ctx, path)
        source = _read_header(path)
        sms = self._samples(path, source)
        patients = {
            self.linkage.patient_of(sm, path, f"read group sample {i}")
            for i, sm in enumerate(sms, 1)
        }
        if len(patients) > 1:
            raise InputRejected(path, "its read groups belong to more than one patient")
        patient = patients.pop()
        pseudonym = self.ctx.admit(patient, source=path, where="read group sample")
        if pseudonym is None:
            return  # opted out: no file at all
        job = _Alignment(path, report, scratch, self.linkage.identifiers(sms), cram=cram)
        keep_institution = DicomOption.retain_institution_identity in self.ctx.options.dicom_options
        scrubbed = HeaderScrubber(
            samples={
                sm: pseudonym if i == 0 else f"{pseudonym}_{i + 1}" for i, sm in enumerate(sms)
            },
            transform_date=lambda text: transform_iso_date(self.ctx, text, patient),
            identifiers=job.identifiers,
            keep_institution=keep_institution,
            report=report,
        ).scrub(source)
        if not cram and _header_only(path, scratch):
            job.reheader(scrubbed)
        else:
            job.rewrite_reads(scrubbed, ReadNamer(keyed_read_name(self.ctx)))
        index = job.index() if source.get("HD", {}).get("SO") == "coordinate" else None
        assert_no_identifiers([job.output], job.identifiers, path, scratch)
        name = self.names.claim(pseudonym, ".bam")
        move_into_version(self.ctx, job.output, name)
        if index is not None:
            move_into_version(self.ctx, index, f"{name}.bai")

    def _samples(self, path: Path, source: Mapping[str, Any]) -> list[str]:
        """The @RG SM values, or the lab sample id the file name starts with."""
        sms = list(dict.fromkeys(str(rg["SM"]) for rg in source.get("RG", []) if "SM" in rg))
        if sms:
            return sms
        from_name = self.linkage.sample_in_file_name(path.name)
        if from_name is None:
            raise InputRejected(
                path,
                "no @RG line names a sample (SM) and the file name does not start with a "
                "lab sample id of the linkage table",
            )
        return [from_name]


@dataclass
class _Alignment:
    """One BAM/CRAM on its way to `<pseudonym>.bam`."""

    path: Path
    report: FileReport
    scratch: Path
    identifiers: set[str]
    cram: bool

    @property
    def output(self) -> Path:
        return self.scratch / "out.bam"

    def reheader(self, scrubbed: ScrubbedHeader) -> None:
        """The fast path: only the header changes (`samtools reheader`, reads copied)."""
        header_file = self.scratch / "header.sam"
        header_file.write_text(str(scrubbed.pysam_header()), encoding="utf-8")
        command = ["samtools", "reheader", "-P", str(header_file), "-"]
        try:
            Pipeline([command], self.scratch).run(stdin=self.path, stdout=self.output)
        except ToolFailed as failed:
            raise InputRejected(self.path, "samtools could not rewrite the header") from failed

    def rewrite_reads(self, scrubbed: ScrubbedHeader, namer: ReadNamer) -> None:
        """Every read through pysam; samtools compresses (libdeflate, threads) and drops tags."""
        tags = ",".join(READ_TAGS_REMOVED)
        compress = subprocess.Popen(
            [
                "samtools",
                "view",
                "-b",
                "--no-PG",
                "-@",
                "1",
                "--remove-tag",
                tags,
                "-o",
                str(self.output),
                "-",
            ],
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=tool_env(),
        )
        decode = None
        if self.cram:  # samtools decodes with local references only (tool_env)
            decode = subprocess.Popen(
                ["samtools", "view", "-u", "--no-PG", str(self.path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=tool_env(),
            )
        error: Exception | None = None
        counts = (0, 0)
        old = pysam.set_verbosity(0)
        try:
            source = decode.stdout if decode is not None else str(self.path)
            counts = _copy_reads(source, compress.stdin, scrubbed, namer)
        except (OSError, ValueError) as exc:
            error = exc
        finally:
            pysam.set_verbosity(old)
            if compress.stdin is not None:
                compress.stdin.close()
            compress.wait()
            if decode is not None:
                if decode.stdout is not None:
                    decode.stdout.close()
                decode.wait()
        if decode is not None and decode.returncode != 0:
            raise InputRejected(
                self.path,
                "samtools could not decode the CRAM file (is its reference sequence in a local "
                "REF_PATH/REF_CACHE? remote reference lookups are disabled)",
            ) from error
        if error is not None:
            raise InputRejected(
                self.path, "the reads cannot be decoded (corrupt or truncated data)"
            ) from error
        if compress.returncode != 0:
            raise InputRejected(self.path, "samtools could not write the de-identified reads")
        rewritten, dropped = counts
        if namer.renamed:
            self.report.changed["bam: read names"] += namer.renamed
        if rewritten:
            self.report.changed["bam: read RG tags"] += rewritten
        if dropped:
            self.report.removed["bam: read RG tags without a header read group"] += dropped

    def index(self) -> Path:
        index = Path(f"{self.output}.bai")
        try:
            Pipeline(
                [["samtools", "index", "-o", str(index), str(self.output)]], self.scratch
            ).run()
        except ToolFailed as failed:
            raise InputRejected(
                self.path, "cannot be indexed: the reads are not sorted as the header says"
            ) from failed
        return index


def _copy_reads(
    source: object, sink: object, scrubbed: ScrubbedHeader, namer: ReadNamer
) -> tuple[int, int]:
    """The per-read loop (the cost of the full path): new name, new RG tag."""
    groups = scrubbed.read_groups
    rewritten = dropped = 0
    with (
        pysam.AlignmentFile(source, "rb", check_sq=False) as reads,  # type: ignore[arg-type]
        pysam.AlignmentFile(sink, "wbu", header=scrubbed.pysam_header()) as out,  # type: ignore[arg-type]
    ):
        for read in reads:
            read.query_name = namer(read.query_name or "")
            if read.has_tag("RG"):
                group = groups.get(str(read.get_tag("RG")))
                read.set_tag("RG", group, "Z")
                if group is None:
                    dropped += 1
                else:
                    rewritten += 1
            out.write(read)
    return rewritten, dropped


def _read_header(path: Path) -> dict[str, Any]:
    old = pysam.set_verbosity(0)
    try:
        with pysam.AlignmentFile(str(path), check_sq=False) as alignments:
            return dict(alignments.header.to_dict())
    except (ValueError, OSError) as exc:
        raise InputRejected(path, "not a readable BAM/CRAM file (bad or missing header)") from exc
    finally:
        pysam.set_verbosity(old)


def _header_only(path: Path, scratch: Path) -> bool:
    """True when no read has a tag or name to rewrite (a C scan decides after a sample)."""
    tags = (*READ_TAGS_REMOVED, "RG")
    kept_name = re.compile(r"[0-9:._/]*")
    old = pysam.set_verbosity(0)
    try:
        with pysam.AlignmentFile(str(path), check_sq=False) as reads:
            for read in islice(reads, _FIRST_READS):
                if not kept_name.fullmatch(read.query_name or "") or any(
                    read.has_tag(t) for t in tags
                ):
                    return False
    except (ValueError, OSError) as exc:
        raise InputRejected(
            path, "the reads cannot be decoded (corrupt or truncated data)"
        ) from exc
    finally:
        pysam.set_verbosity(old)
    expression = " || ".join([*(f"exists([{t}])" for t in tags), f'qname =~ "{_PLAIN_NAME}"'])
    counted = scratch / "count.txt"
    try:
        Pipeline([["samtools", "view", "-c", "--no-PG", "-e", expression, "-"]], scratch).run(
            stdin=path, stdout=counted
        )
    except ToolFailed as failed:
        raise InputRejected(
            path, "the reads cannot be decoded (corrupt or truncated data)"
        ) from failed
    return counted.read_text(encoding="ascii").strip() == "0"


def _cram_problem(path: Path) -> str | None:
    result = subprocess.run(
        ["samtools", "quickcheck", str(path)], capture_output=True, check=False, env=tool_env()
    )
    return None if result.returncode == 0 else "is truncated or not a CRAM file"


def ingest(ctx: IngestContext) -> None:
    """Ingest every BAM, CRAM and FASTQ file of the source folder, linked by `samples.csv`."""
    paths = source_files(ctx.source_dir, ALIGNMENT_PATTERNS + FASTQ_PATTERNS)
    if not paths:
        raise IngestError(
            f"{ctx.source_dir}: no BAM, CRAM or FASTQ files (*.bam, *.cram, *.fastq.gz, *.fq.gz)"
        )
    require_tools(ctx, ("samtools", "bgzip"))
    ctx.report.tools["pysam"] = version("pysam")
    linkage = Linkage.load(ctx)
    state = BamIngest(ctx, linkage, OutputNames())
    ctx.process(paths, "bam", state.ingest_file)
