"""Where the real sample files come from: installed Python packages and Debian test packages.

Nothing is downloaded: a missing file raises `DemoDataError` naming the file and the
package that ships it. Source labels carry package versions, never absolute paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from .errors import DemoDataError

DEBIAN_INSTALL = "apt-get install python-pysam-tests samtools-test"

PYSAM_TESTS_PACKAGE = "python-pysam-tests"
PYSAM_TESTS_DIR = Path("/usr/share/doc/python-pysam/tests")
VCF_SOURCE = PYSAM_TESTS_DIR / "tabix_data/vcf/22.vcf.gz"
"""A real multi-sample VCF (158 samples) shipped by Debian's python-pysam-tests."""

SAMTOOLS_TEST_PACKAGE = "samtools-test"
SAMTOOLS_TEST_DIR = Path("/usr/share/samtools/test")
BAM_SOURCES = (
    SAMTOOLS_TEST_DIR / "mpileup/mpileup.1.bam",
    SAMTOOLS_TEST_DIR / "mpileup/mpileup.2.bam",
    SAMTOOLS_TEST_DIR / "mpileup/mpileup.3.bam",
)
"""Real 1000 Genomes read subsets shipped by Debian's samtools-test; one per patient."""

PYDICOM_FILES = {
    "ct": ("CT_small.dcm",),
    "mr": ("MR_small.dcm",),
    # A 7-instance MR series from pydicom's DICOMDIR tests.
    "mr_series": tuple(
        f"dicomdirtests/98892003/MR700/{name}"
        for name in ("4467", "4528", "4558", "4588", "4618", "4648", "4678")
    ),
}
NIBABEL_MPRAGE = "nicom/tests/data/philips_mprage.dcm.gz"
"""A real Philips enhanced MR scanner file (6,407 private elements), gzipped."""
NIBABEL_NIFTI = ("tests/data/anatomical.nii", "tests/data/example4d.nii.gz")


@dataclass(frozen=True)
class SampleFile:
    """A shipped sample file and the label the manifest gives as its source."""

    path: Path
    label: str


def _require(path: Path, package: str, install: str) -> Path:
    if not path.is_file():
        raise DemoDataError(
            f"sample file {path} is missing: it ships in the package {package}; "
            f"install it with `{install}`"
        )
    return path


def debian_vcf() -> SampleFile:
    path = _require(VCF_SOURCE, PYSAM_TESTS_PACKAGE, DEBIAN_INSTALL)
    relative = (
        path.relative_to(PYSAM_TESTS_DIR).as_posix()
        if path.is_relative_to(PYSAM_TESTS_DIR)
        else path.name
    )
    return SampleFile(path, f"Debian {PYSAM_TESTS_PACKAGE}: {relative}")


def debian_bams() -> tuple[SampleFile, ...]:
    found = []
    for bam in BAM_SOURCES:
        path = _require(bam, SAMTOOLS_TEST_PACKAGE, DEBIAN_INSTALL)
        relative = (
            path.relative_to(SAMTOOLS_TEST_DIR).as_posix()
            if path.is_relative_to(SAMTOOLS_TEST_DIR)
            else path.name
        )
        found.append(SampleFile(path, f"Debian {SAMTOOLS_TEST_PACKAGE}: {relative}"))
    return tuple(found)


def pydicom_file(name: str) -> SampleFile:
    """A file of pydicom's own test data, shipped in the wheel."""
    import pydicom.data  # noqa: PLC0415 - heavy import, only when building silos

    path = Path(pydicom.data.__file__).parent / "test_files" / name
    _require(path, "pydicom", "pip install pydicom")
    return SampleFile(path, f"pydicom {version('pydicom')}: {name}")


def nibabel_file(relative: str) -> SampleFile:
    """A file of nibabel's test data, shipped in the wheel."""
    import nibabel  # noqa: PLC0415 - heavy import, only when building silos

    path = Path(nibabel.__file__).parent / relative
    _require(path, "nibabel", "pip install nibabel")
    return SampleFile(path, f"nibabel {version('nibabel')}: {Path(relative).name}")


def check_all() -> None:
    """Fail before writing anything if any sample file is missing."""
    debian_vcf()
    debian_bams()
    for names in PYDICOM_FILES.values():
        for name in names:
            pydicom_file(name)
    nibabel_file(NIBABEL_MPRAGE)
    for name in NIBABEL_NIFTI:
        nibabel_file(name)
