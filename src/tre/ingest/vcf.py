"""Ingest of variant calls (VCF/BCF) with bcftools, and pysam to read headers.

Invariant: an output VCF's sample columns are the project's pseudonyms of admitted
patients, sorted (so the column order says nothing about the source's lab ids), with no
column, `##SAMPLE` line or allele that exists only because of an opted-out patient; its
header holds only allow-listed lines, with no path, command line, date or identifier.

Header rules (everything not listed is dropped and counted):

- kept as they are: `fileformat` (when `VCFv<n>.<n>`), and the structured lines `INFO`,
  `FORMAT`, `FILTER`, `ALT`, `contig` and `META`, each reduced to its standard fields
  (`STRUCTURED_FIELDS`); a `Description` that names a path, a date or an identifier
  becomes "Description removed", any other such field is dropped;
- path-stripped: `reference`, `assembly` (`file:///refs/hg19.fa` -> `hg19.fa`);
- kept only if a plain program token (`freeBayes v1.3.6`): `source`, `phasing`;
- rewritten: `SAMPLE` (ID -> pseudonym; only `Genomes` and `Mixture` kept; lines of
  absent samples dropped), `PEDIGREE` (every value must be a kept sample, else dropped);
- dropped: `fileDate` and all other dates, `commandline`, `bcftools_*`, `GATKCommandLine`,
  `FilterLiftedVariants` and any other key.

Fast path: a BGZF VCF whose sample order does not change and loses no sample only gets
its header replaced (`bcftools reheader`, header only). Otherwise `bcftools view -S`
re-encodes the records in the new column order; when samples are removed it also
recomputes INFO/AC and AN, trims alleles and drops sites no remaining sample carries
(`-a -c 1`), and recomputes AF and the other genotype counts with `+fill-tags`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pysam

from .context import IngestContext
from .errors import IngestError, InputRejected
from .genomics_common import (
    FileReport,
    Linkage,
    OutputNames,
    Pipeline,
    ToolFailed,
    assert_no_identifiers,
    bgzf_problem,
    looks_like_path,
    mentions,
    move_into_version,
    note_source,
    one_file,
    require_tools,
    source_files,
    strip_path,
    work_dir,
)

PATTERNS = ("*.vcf.gz", "*.vcf", "*.bcf")
OUTPUT_SUFFIX = ".vcf.gz"
COHORT_STEM = "variants"

STRUCTURED_FIELDS: dict[str, tuple[str, ...]] = {
    "INFO": ("ID", "Number", "Type", "Description", "Source", "Version"),
    "FORMAT": ("ID", "Number", "Type", "Description"),
    "FILTER": ("ID", "Description"),
    "ALT": ("ID", "Description"),
    "contig": ("ID", "length", "assembly", "md5", "species", "taxonomy"),
    "META": ("ID", "Type", "Number", "Values", "Description"),
}
PATH_STRIPPED = frozenset({"reference", "assembly"})
PROGRAM_TOKEN_KEYS = frozenset({"source", "phasing"})
SAMPLE_FIELDS = ("Genomes", "Mixture")
RECOMPUTED_INFO = ("AC", "AN", "AF", "MAF", "NS", "AC_Hom", "AC_Het", "AC_Hemi", "ExcHet", "HWE")
"""Genotype-derived INFO fields `+fill-tags` recomputes after samples are removed."""

_FILE_FORMAT = re.compile(r"VCFv\d{1,2}\.\d{1,2}")
_DATE_LIKE = re.compile(r"(?<!\d)(?:19|20)\d\d[-/.]?[01]\d[-/.]?[0-3]\d(?!\d)")
_PROGRAM_TOKEN = re.compile(r'"?[A-Za-z][\w.+-]{0,63}(?:[ _-]v?\d[\w.+-]{0,31})?"?')
_HTSLIB_INTERNAL = "IDX"
_DESCRIPTION_REMOVED = '"Description removed"'
_UNDEFINED = '"Not defined in the source header"'
_EXCLUDED = "excluded-column-"


@dataclass(frozen=True)
class HeaderLine:
    """One `##` header line, as pysam parsed it (values keep their quotes)."""

    key: str
    value: str | None = None
    items: tuple[tuple[str, str], ...] | None = None

    def text(self) -> str:
        if self.items is None:
            return f"##{self.key}={self.value}"
        return f"##{self.key}=<{','.join(f'{k}={v}' for k, v in self.items)}>"


def scrub_header(
    lines: Sequence[HeaderLine],
    renamed: Mapping[str, str | None],
    identifiers: Iterable[str],
    report: FileReport,
    undefined: frozenset[str] = frozenset(),
) -> list[str]:
    """The allow-listed header lines; `renamed` maps source sample -> new name (None: drop)."""
    ids = sorted(identifiers)
    out: list[str] = []
    samples: list[str] = []  # sorted and placed where the first one was, like the columns
    for line in lines:
        if line.items is not None:
            kept = _structured(line, renamed, ids, report, undefined)
        else:
            kept = _generic(line, ids, report)
        if kept is None:
            continue
        if kept.key == "SAMPLE":
            if not samples:
                out.append("")
            samples.append(kept.text())
        else:
            out.append(kept.text())
    if samples:
        at = out.index("")
        out[at : at + 1] = sorted(samples)
    return out


def _generic(line: HeaderLine, ids: list[str], report: FileReport) -> HeaderLine | None:
    value = line.value or ""
    if line.key == "fileformat":
        if _FILE_FORMAT.fullmatch(value):
            return line
        report.changed["vcf: unrecognised fileformat values"] += 1
        return HeaderLine(line.key, "VCFv4.2")
    if line.key in PATH_STRIPPED:
        stripped = strip_path(value)
        if stripped and not mentions(stripped, ids):
            if stripped != value:
                report.changed["vcf: header paths reduced to file names"] += 1
            return HeaderLine(line.key, stripped)
    elif (
        line.key in PROGRAM_TOKEN_KEYS
        and _PROGRAM_TOKEN.fullmatch(value)
        and not mentions(value, ids)
    ):
        return line
    lowered = line.key.lower()
    if "command" in lowered:
        report.removed["vcf: header command lines"] += 1
    elif "date" in lowered:
        report.removed["vcf: header dates"] += 1
    else:
        report.removed["vcf: other header lines"] += 1
    return None


def _structured(
    line: HeaderLine,
    renamed: Mapping[str, str | None],
    ids: list[str],
    report: FileReport,
    undefined: frozenset[str],
) -> HeaderLine | None:
    assert line.items is not None
    items = [(k, v) for k, v in line.items if k != _HTSLIB_INTERNAL]
    if line.key == "SAMPLE":
        return _sample_line(items, renamed, report)
    if line.key == "PEDIGREE":
        values = [v.strip('"') for _, v in items]
        if items and all(renamed.get(v) for v in values):
            report.changed["vcf: pedigree sample names"] += 1
            return HeaderLine(
                line.key,
                items=tuple((k, renamed[v] or "") for (k, _), v in zip(items, values, strict=True)),
            )
        report.removed["vcf: pedigree lines"] += 1
        return None
    allowed = STRUCTURED_FIELDS.get(line.key)
    if allowed is None:
        report.removed[_kind_of_dropped(line.key)] += 1
        return None
    kept: list[tuple[str, str]] = []
    for key, value in items:
        if key not in allowed:
            report.removed["vcf: header fields outside the allow-list"] += 1
        elif key == "ID":
            kept.append((key, value))
        elif key == "Description" and dict(items).get("ID") in undefined:
            kept.append((key, _UNDEFINED))
        elif looks_like_path(value) or mentions(value, ids) or _DATE_LIKE.search(value):
            if key == "Description":
                report.changed["vcf: header descriptions naming paths, dates or identifiers"] += 1
                kept.append((key, _DESCRIPTION_REMOVED))
            else:
                report.removed["vcf: header fields outside the allow-list"] += 1
        else:
            kept.append((key, value))
    return HeaderLine(line.key, items=tuple(kept))


def _sample_line(
    items: list[tuple[str, str]], renamed: Mapping[str, str | None], report: FileReport
) -> HeaderLine | None:
    fields = dict(items)
    new = renamed.get(fields.get("ID", "").strip('"'))
    if new is None:
        report.removed["vcf: SAMPLE lines of absent samples"] += 1
        return None
    kept = [("ID", new)] + [(k, v) for k, v in items if k in SAMPLE_FIELDS]
    if len(items) > len(kept):
        report.removed["vcf: sample metadata fields"] += len(items) - len(kept)
    report.changed["vcf: SAMPLE lines"] += 1
    return HeaderLine("SAMPLE", items=tuple(kept))


def _kind_of_dropped(key: str) -> str:
    lowered = key.lower()
    if "command" in lowered:
        return "vcf: header command lines"
    return "vcf: other header lines"


def column_line(samples: Sequence[str]) -> str:
    fixed = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    return fixed + ("\tFORMAT\t" + "\t".join(samples) if samples else "")


# -- files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceHeader:
    lines: tuple[HeaderLine, ...]
    samples: tuple[str, ...]
    info: frozenset[str]
    formats: frozenset[str]


def read_header(path: Path, *, scan_records: bool = False) -> SourceHeader:
    """The header as pysam parses it; with `scan_records`, plus htslib's definitions of
    tags the records use but the header never defined."""
    old = pysam.set_verbosity(0)
    try:
        with pysam.VariantFile(str(path)) as vcf:
            if scan_records:
                for _ in vcf:
                    pass
            header = vcf.header
            lines = tuple(
                HeaderLine(str(r.key), items=tuple(r.items()))
                if r.type != "GENERIC"
                else HeaderLine(str(r.key), value=r.value)
                for r in header.records
            )
            return SourceHeader(
                lines, tuple(header.samples), frozenset(header.info), frozenset(header.formats)
            )
    except (ValueError, OSError, NotImplementedError) as exc:
        raise InputRejected(path, "not a readable VCF/BCF file (bad or missing header)") from exc
    finally:
        pysam.set_verbosity(old)


@dataclass
class _Job:
    """One source file on its way through bcftools."""

    path: Path
    header: SourceHeader
    renamed: dict[str, str | None]
    identifiers: set[str]
    report: FileReport
    scratch: Path

    @property
    def output(self) -> Path:
        return self.scratch / f"out{OUTPUT_SUFFIX}"

    @property
    def kept(self) -> list[str]:
        return [n for n in self.renamed.values() if n is not None]

    @property
    def is_bcf(self) -> bool:
        return self.path.name.endswith(".bcf")

    def header_file(self, undefined: frozenset[str]) -> Path:
        lines = scrub_header(
            self.header.lines, self.renamed, self.identifiers, self.report, undefined
        )
        columns = [
            new if new is not None else f"{_EXCLUDED}{i}"
            for i, new in enumerate(self.renamed.values(), 1)
        ]
        path = self.scratch / "header.txt"
        path.write_text("\n".join([*lines, column_line(columns)]) + "\n", encoding="utf-8")
        return path

    def write(self, *, fast: bool, undefined: frozenset[str] = frozenset()) -> None:
        """Header only (`fast`), or the records re-encoded in sorted sample order."""
        reheader = ["bcftools", "reheader", "-h", str(self.header_file(undefined))]
        reheader += ["-T", str(self.scratch / "rh"), "-"]
        if fast:
            Pipeline([reheader], self.scratch).run(stdin=self.path, stdout=self.output)
            return
        commands: list[list[str]] = []
        if self.is_bcf:  # BCF records index the header's dictionary: re-header the text
            commands.append(["bcftools", "view", "--no-version", "-Ov", "-"])
        commands.append(reheader)
        order = self.scratch / "samples.txt"
        order.write_text("".join(f"{n}\n" for n in sorted(self.kept)), encoding="utf-8")
        view = ["bcftools", "view", "--no-version", "--threads", "1", "-S", str(order)]
        removed = len(self.kept) < len(self.renamed)
        recompute = [t for t in RECOMPUTED_INFO if t in self.header.info] if removed else []
        if not removed:
            view.append("--no-update")
        elif "GT" in self.header.formats:
            view += ["--trim-alt-alleles", "--min-ac", "1"]
        if recompute:
            commands.append([*view, "-Ou", "-"])
            fill = ["bcftools", "+fill-tags", "--no-version", "--threads", "1", "-Oz", "-"]
            commands.append([*fill, "--", "-t", ",".join(recompute)])
            self.report.changed["vcf: INFO fields recomputed without removed samples"] += len(
                recompute
            )
        else:
            commands.append([*view, "-Oz", "-"])
        Pipeline(commands, self.scratch).run(stdin=self.path, stdout=self.output)


@dataclass
class VcfIngest:
    ctx: IngestContext
    linkage: Linkage
    names: OutputNames

    def ingest_file(self, path: Path) -> None:
        with one_file(self.ctx) as report, work_dir(self.ctx) as scratch:
            job = self._job(path, report, scratch)
            if job is not None:
                self._write(job)
                self._publish(job)

    def _job(self, path: Path, report: FileReport, scratch: Path) -> _Job | None:
        """Check and link the file; None when every sample's patient opted out."""
        is_bcf = path.name.endswith(".bcf")
        if is_bcf or path.name.endswith(".gz"):
            problem = bgzf_problem(path)
            if problem is not None:
                raise InputRejected(path, f"{'BCF' if is_bcf else 'VCF'} file {problem}")
        note_source(self.ctx, path)
        header = read_header(path)
        patients = [
            self.linkage.patient_of(s, path, f"sample column {i}")
            for i, s in enumerate(header.samples, 1)
        ]
        renamed: dict[str, str | None] = {}
        for i, (sample, patient) in enumerate(zip(header.samples, patients, strict=True), 1):
            pseudonym = self.ctx.admit(patient, source=path, where=f"sample column {i}")
            renamed[sample] = None if pseudonym is None else _unique(pseudonym, renamed)
        job = _Job(path, header, renamed, self.linkage.identifiers(header.samples), report, scratch)
        return None if header.samples and not job.kept else job

    def _write(self, job: _Job) -> None:
        fast = (
            len(job.kept) == len(job.renamed)
            and sorted(job.kept) == job.kept
            and job.path.name.endswith(".vcf.gz")
        )
        try:
            job.write(fast=fast)
        except ToolFailed as failed:
            if "Undefined tags" not in failed.stderr:
                raise InputRejected(job.path, "bcftools could not read the records") from failed
            # Subsetting needs every INFO/FORMAT tag defined: define those htslib found.
            defined = job.header
            job.header = read_header(job.path, scan_records=True)
            job.report.removed.clear()
            job.report.changed.clear()
            undefined = (job.header.info - defined.info) | (job.header.formats - defined.formats)
            try:
                job.write(fast=False, undefined=undefined)
            except ToolFailed as again:
                raise InputRejected(job.path, "bcftools could not read the records") from again
            job.report.changed["vcf: header definitions added for undefined tags"] += len(undefined)

    def _publish(self, job: _Job) -> None:
        index = Path(f"{job.output}.tbi")
        try:
            Pipeline(
                [["bcftools", "index", "--tbi", "-o", str(index), str(job.output)]], job.scratch
            ).run()
        except ToolFailed as failed:
            raise InputRejected(
                job.path, "the records cannot be indexed (not sorted by position, or malformed)"
            ) from failed
        assert_no_identifiers([job.output], job.identifiers, job.path, job.scratch)
        kept = job.kept
        job.report.changed["vcf: sample names"] += len(kept)
        if len(kept) < len(job.renamed):
            job.report.removed["vcf: sample columns of opted-out patients"] += len(
                job.renamed
            ) - len(kept)
        name = self.names.claim(kept[0] if len(kept) == 1 else COHORT_STEM, OUTPUT_SUFFIX)
        move_into_version(self.ctx, job.output, name)
        move_into_version(self.ctx, index, f"{name}.tbi")


def _unique(pseudonym: str, renamed: Mapping[str, str | None]) -> str:
    """A patient's second sample column gets `<pseudonym>_2`, and so on."""
    taken = set(renamed.values())
    name, n = pseudonym, 2
    while name in taken:
        name, n = f"{pseudonym}_{n}", n + 1
    return name


def ingest(ctx: IngestContext) -> None:
    """Ingest every VCF/BCF file of the source folder, linked through `samples.csv`."""
    paths = source_files(ctx.source_dir, PATTERNS)
    if not paths:
        raise IngestError(f"{ctx.source_dir}: no VCF or BCF files (*.vcf.gz, *.vcf, *.bcf)")
    require_tools(ctx, ("bcftools", "bgzip"))
    ctx.report.tools["pysam"] = version("pysam")
    linkage = Linkage.load(ctx)
    state = VcfIngest(ctx, linkage, OutputNames())
    ctx.process(paths, "vcf", state.ingest_file)
