"""A dataset folder is mounted only if it is exactly what ingest sealed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

import pytest

from tre.hub.datasets import DatasetUnavailable, VerificationCache, check_dataset
from tre.hub.plan import DatasetMount


def sealed(tmp_path: Path) -> tuple[DatasetMount, str]:
    folder = tmp_path / "gbm-linkage" / "gbm-mri" / "1"
    (folder / "P1").mkdir(parents=True)
    (folder / "P1" / "a.dcm").write_bytes(b"image one")
    (folder / "b.csv").write_bytes(b"x,y\n1,2\n")
    files = [
        {"path": p, "sha256": hashlib.sha256((folder / p).read_bytes()).hexdigest(), "size": 1}
        for p in ("P1/a.dcm", "b.csv")
    ]
    manifest = json.dumps({"files": files}).encode()
    (folder / "MANIFEST.json").write_bytes(manifest)
    digest = hashlib.sha256(manifest).hexdigest()
    mount = DatasetMount("gbm-mri", "1", folder, PurePosixPath("/data/gbm-mri"), digest)
    return mount, digest


def test_a_sealed_folder_passes_and_is_cached(tmp_path: Path) -> None:
    mount, _ = sealed(tmp_path)
    cache = VerificationCache(tmp_path / "cache.json")
    check_dataset(mount, cache)
    assert len(cache.load()) == 2
    check_dataset(mount, cache)


def test_a_changed_file_is_caught_even_with_a_cache(tmp_path: Path) -> None:
    mount, _ = sealed(tmp_path)
    cache = VerificationCache(tmp_path / "cache.json")
    check_dataset(mount, cache)
    (mount.source / "b.csv").write_bytes(b"x,y\n1,3\n")
    with pytest.raises(DatasetUnavailable, match=r"'b.csv' does not match the checksum"):
        check_dataset(mount, cache)


def test_an_added_file_is_refused(tmp_path: Path) -> None:
    mount, _ = sealed(tmp_path)
    (mount.source / "extra.txt").write_text("smuggled")
    with pytest.raises(DatasetUnavailable, match=r"1 not in the manifest, e.g. 'extra.txt'"):
        check_dataset(mount)


def test_a_missing_file_or_folder_is_refused(tmp_path: Path) -> None:
    mount, _ = sealed(tmp_path)
    (mount.source / "P1" / "a.dcm").unlink()
    with pytest.raises(DatasetUnavailable, match=r"1 missing, 0 not in the manifest"):
        check_dataset(mount)
    gone = DatasetMount("gbm-mri", "2", tmp_path / "absent", PurePosixPath("/data/x"), None)
    with pytest.raises(DatasetUnavailable, match=r"dataset 'gbm-mri' version '2'.* is missing"):
        check_dataset(gone)


def test_a_symlink_planted_in_the_folder_is_refused(tmp_path: Path) -> None:
    mount, _ = sealed(tmp_path)
    (mount.source / "b.csv").unlink()
    (mount.source / "b.csv").symlink_to("/etc/passwd")
    with pytest.raises(DatasetUnavailable, match=r"'b.csv' is a symbolic link"):
        check_dataset(mount)


def test_a_manifest_other_than_the_policy_pins_is_refused(tmp_path: Path) -> None:
    mount, _ = sealed(tmp_path)
    pinned = DatasetMount(mount.dataset, mount.version, mount.source, mount.target, "0" * 64)
    with pytest.raises(DatasetUnavailable, match="but the policy pins 0000000000000000"):
        check_dataset(pinned)
