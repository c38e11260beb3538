"""`tre resources`: administrator ingress of large files into a read-only project folder, on
real files; each refusal leaves nothing behind, and a copy that fails part-way leaves nothing
half-written and nothing in the audit log."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from tests.support import DEMO_POLICY
from tre.audit import WORKSPACE_KINDS, AuditStoreError, EventKind, audit_dir, open_store
from tre.policy import Policy
from tre.resources import (
    MANIFEST_NAME,
    ProgressFn,
    ResourceError,
    add_resource,
    can_fit,
    can_name_resource,
    list_resources,
    read_manifest,
)
from tre.settings import AuditSettings, Settings

TRE = Path(sys.executable).parent / "tre"
PROJECT = "gbm-linkage"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    var = tmp_path / "var"
    var.mkdir()
    return Settings(policy_dir=DEMO_POLICY, var_dir=var)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A reference-genome-like folder: a FASTA, its index and a nested model file."""
    root = tmp_path / "delivery" / "GRCh38"
    (root / "models").mkdir(parents=True)
    (root / "genome.fa").write_bytes(b">chr1\n" + b"ACGT" * 300_000 + b"\n")
    (root / "genome.fa.fai").write_text("chr1\t1200000\t6\t1200000\t1200001\n", encoding="utf-8")
    (root / "models" / "weights.bin").write_bytes(os.urandom(70_000))
    (root / "empty").mkdir()
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resource_records(settings: Settings) -> list[dict[str, object]]:
    records = open_store(settings).show(kind=EventKind.resource_added)
    return [{"project": r.project, "actor": r.actor, **r.detail} for r in records]


def leftovers(settings: Settings, project: str = PROJECT) -> list[str]:
    folder = settings.var_dir / "resources" / project
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def add(
    settings: Settings,
    policy: Policy,
    source: Path,
    *,
    name: str | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Add `source` to gbm-linkage as dana; the resource's folder."""
    return add_resource(
        settings, policy, PROJECT, source, by="dana", name=name, progress=progress
    ).path


# -- adding --------------------------------------------------------------------------------


def test_a_folder_is_copied_read_only_with_a_manifest_of_its_hashes(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    added = add_resource(
        settings, demo_policy, PROJECT, source, by="dana", note="Ensembl 110 primary assembly"
    )
    target = settings.var_dir / "resources" / PROJECT / "GRCh38"
    assert added.path == target

    manifest = json.loads((target / MANIFEST_NAME).read_bytes())
    assert manifest["name"] == "GRCh38"
    assert manifest["project"] == PROJECT
    assert manifest["added_by"] == "dana"
    assert manifest["note"] == "Ensembl 110 primary assembly"
    assert manifest["source"] == str(source)
    assert manifest["added_at"].endswith("Z")
    expected = ["genome.fa", "genome.fa.fai", "models/weights.bin"]
    assert [f["path"] for f in manifest["files"]] == expected
    for entry in manifest["files"]:
        copy, original = target / entry["path"], source / entry["path"]
        assert copy.read_bytes() == original.read_bytes()
        assert entry["sha256"] == sha256(original)
        assert entry["size"] == original.stat().st_size
    assert manifest["total_bytes"] == sum(f["size"] for f in manifest["files"])
    assert added.manifest_sha256 == sha256(target / MANIFEST_NAME)

    # Read-only all the way down, empty folders kept.
    assert (target / "empty").is_dir()
    for path in [target, *target.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o555 if path.is_dir() else 0o444), path
    # No staging folder left beside it.
    assert leftovers(settings) == ["GRCh38"]


def test_a_single_file_lands_in_a_folder_of_its_name(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    target = add(settings, demo_policy, source / "genome.fa", name="grch38-fasta")
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST_NAME, "genome.fa"]
    manifest = read_manifest(target)
    assert [(f.path, f.sha256) for f in manifest.files] == [
        ("genome.fa", sha256(source / "genome.fa"))
    ]
    # Default name: the source's.
    assert add(settings, demo_policy, source / "genome.fa.fai").name == "genome.fa.fai"


def test_the_audit_log_records_the_addition(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    added = add_resource(settings, demo_policy, PROJECT, source, by="dana", name="ref-1")
    assert resource_records(settings) == [
        {
            "project": PROJECT,
            "actor": "dana",
            "name": "ref-1",
            "files": 3,
            "bytes": added.manifest.total_bytes,
            "manifest_sha256": sha256(added.path / MANIFEST_NAME),
        }
    ]
    assert open_store(settings).verify().ok


def test_resource_added_is_not_a_workspace_kind() -> None:
    # Only the admin command writes it; the audit service refuses it from a workspace.
    assert EventKind.resource_added not in WORKSPACE_KINDS


def test_list_reads_the_manifests(settings: Settings, demo_policy: Policy, source: Path) -> None:
    add(settings, demo_policy, source)
    add_resource(settings, demo_policy, "hf-outcomes", source / "genome.fa", by="erik")
    everything = list_resources(settings)
    assert [(r.project, r.name, r.files, r.manifest.added_by) for r in everything] == [
        (PROJECT, "GRCh38", 3, "dana"),
        ("hf-outcomes", "genome.fa", 1, "erik"),
    ]
    assert [r.name for r in list_resources(settings, "hf-outcomes")] == ["genome.fa"]
    assert list_resources(settings, "no-resources-yet") == []
    with pytest.raises(ResourceError, match="not a project id"):
        list_resources(settings, "../var")


# -- refusals ------------------------------------------------------------------------------


def test_an_unknown_project_is_refused(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    with pytest.raises(ResourceError, match=r"unknown project 'nope'; .*gbm-linkage"):
        add_resource(settings, demo_policy, "nope", source, by="dana")
    assert not (settings.var_dir / "resources").exists()


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "-x", "x" * 129, "é"])
def test_an_unsafe_name_is_refused(
    settings: Settings, demo_policy: Policy, source: Path, name: str
) -> None:
    assert not can_name_resource(name)
    with pytest.raises(ResourceError, match=r"resource name .* is not allowed"):
        add(settings, demo_policy, source, name=name)
    assert not (settings.var_dir / "resources").exists()


def test_an_existing_name_is_refused_and_the_resource_stays_as_it_was(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    target = add(settings, demo_policy, source)
    before = (target / MANIFEST_NAME).read_bytes()
    (source / "genome.fa").write_bytes(b">chr2\nTTTT\n")
    with pytest.raises(ResourceError, match=r"'GRCh38' of project 'gbm-linkage' exists already"):
        add(settings, demo_policy, source)
    assert (target / MANIFEST_NAME).read_bytes() == before
    assert (target / "genome.fa").read_bytes().startswith(b">chr1")
    assert len(resource_records(settings)) == 1
    # A new name is the way to add a new version.
    assert add(settings, demo_policy, source, name="GRCh38-p2").is_dir()


def test_a_symlink_anywhere_in_the_source_is_refused_not_followed(
    settings: Settings, demo_policy: Policy, source: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("not for the workspace", encoding="utf-8")
    (source / "models" / "link.txt").symlink_to(secret)
    with pytest.raises(ResourceError, match=r"models/link.txt is a symbolic link"):
        add(settings, demo_policy, source)
    (source / "models" / "link.txt").unlink()

    (source / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ResourceError, match=r"dirlink is a symbolic link"):
        add(settings, demo_policy, source)

    whole = tmp_path / "link-to-source"
    whole.symlink_to(source, target_is_directory=True)
    with pytest.raises(ResourceError, match=r"link-to-source is a symbolic link"):
        add(settings, demo_policy, whole, name="linked")
    assert leftovers(settings) == []
    assert resource_records(settings) == []


def test_special_files_are_refused(settings: Settings, demo_policy: Policy, source: Path) -> None:
    os.mkfifo(source / "models" / "pipe")
    with pytest.raises(ResourceError, match=r"models/pipe is a named pipe"):
        add(settings, demo_policy, source)
    with pytest.raises(ResourceError, match=r"/dev/null is a character device"):
        add(settings, demo_policy, Path("/dev/null"), name="null")
    assert leftovers(settings) == []


def test_a_missing_source_is_refused(
    settings: Settings, demo_policy: Policy, tmp_path: Path
) -> None:
    with pytest.raises(ResourceError, match=r"source .*/absent does not exist"):
        add(settings, demo_policy, tmp_path / "absent")


def test_a_source_inside_or_holding_var_is_refused(
    settings: Settings, demo_policy: Policy, source: Path, tmp_path: Path
) -> None:
    inner = settings.var_dir / "datasets" / PROJECT / "emr"
    inner.mkdir(parents=True)
    (inner / "patients.csv").write_text("pseudonym\nP1\n", encoding="utf-8")
    with pytest.raises(ResourceError, match="is inside the TRE's var folder"):
        add(settings, demo_policy, inner, name="emr-copy")
    # Another project's resource is var/ too.
    add(settings, demo_policy, source)
    with pytest.raises(ResourceError, match="is inside the TRE's var folder"):
        add_resource(
            settings,
            demo_policy,
            "hf-outcomes",
            settings.var_dir / "resources" / PROJECT / "GRCh38",
            by="dana",
        )
    with pytest.raises(ResourceError, match="contains the TRE's var folder"):
        add(settings, demo_policy, tmp_path, name="everything")
    assert leftovers(settings, "hf-outcomes") == []


def test_a_top_level_manifest_in_the_source_is_refused(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    (source / MANIFEST_NAME).write_text("{}", encoding="utf-8")
    with pytest.raises(ResourceError, match=f"holds a top-level {MANIFEST_NAME}"):
        add(settings, demo_policy, source)


Usage = namedtuple("Usage", "total used free")


def test_not_enough_space_is_refused_before_copying(
    settings: Settings, demo_policy: Policy, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert can_fit(10, 10)
    assert not can_fit(11, 10)
    # A full disk cannot be made on demand here; the free space is what is substituted.
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(ResourceError, match=r"needs 1270\d+ bytes, .* has 1000 bytes free"):
        add(settings, demo_policy, source)
    assert leftovers(settings) == []
    assert resource_records(settings) == []


# -- atomicity -----------------------------------------------------------------------------


def assert_nothing_added(settings: Settings) -> None:
    assert leftovers(settings) == [], "a staging folder or partial resource was left"
    assert list_resources(settings) == []
    assert resource_records(settings) == []


def test_a_file_that_vanishes_mid_copy_leaves_nothing(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    def after_each(path: str, done: int, total: int) -> None:
        if path == "genome.fa":  # copied; remove one still to come
            (source / "models" / "weights.bin").unlink()

    with pytest.raises(ResourceError, match=r"models/weights.bin: cannot open"):
        add(settings, demo_policy, source, progress=after_each)
    assert_nothing_added(settings)


def test_a_file_swapped_for_a_link_mid_copy_is_not_followed(
    settings: Settings, demo_policy: Policy, source: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(os.urandom(70_000))

    def after_each(path: str, done: int, total: int) -> None:
        if path == "genome.fa.fai":
            weights = source / "models" / "weights.bin"
            weights.unlink()
            weights.symlink_to(secret)

    with pytest.raises(ResourceError, match=r"models/weights.bin: cannot open"):
        add(settings, demo_policy, source, progress=after_each)
    assert_nothing_added(settings)


def test_a_file_that_grows_mid_copy_is_refused(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    def after_each(path: str, done: int, total: int) -> None:
        if path == "genome.fa":
            with (source / "models" / "weights.bin").open("ab") as handle:
                handle.write(b"more")

    with pytest.raises(ResourceError, match=r"weights.bin changed while it was copied"):
        add(settings, demo_policy, source, progress=after_each)
    assert_nothing_added(settings)


def test_a_copy_that_differs_from_the_source_is_caught_before_the_rename(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    project_dir = settings.var_dir / "resources" / PROJECT

    def after_each(path: str, done: int, total: int) -> None:
        if path == "models/weights.bin":  # the last: corrupt the staged copy of the first
            (staged,) = project_dir.glob(".GRCh38.*.partial")
            with (staged / "genome.fa").open("r+b") as handle:
                handle.write(b"<")

    with pytest.raises(ResourceError, match=r"copy of genome.fa does not match the source"):
        add(settings, demo_policy, source, progress=after_each)
    assert_nothing_added(settings)


def test_an_audit_log_that_cannot_be_opened_refuses_before_copying(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    closed = settings.model_copy(
        update={"audit": AuditSettings(db_url="postgresql+psycopg://tre@127.0.0.1:1/audit")}
    )
    with pytest.raises(AuditStoreError, match="cannot open it"):
        add(closed, demo_policy, source)
    assert leftovers(settings) == []


def test_a_resource_the_audit_log_refuses_is_taken_back(
    settings: Settings, demo_policy: Policy, source: Path
) -> None:
    # The project's JSON-lines chain cannot be written: a folder stands where the file goes.
    (audit_dir(settings) / f"{PROJECT}.jsonl").mkdir(parents=True)
    with pytest.raises(AuditStoreError, match="cannot open"):
        add(settings, demo_policy, source)
    # Fail closed: nothing a workspace would mount that the audit log does not know of.
    assert leftovers(settings) == []
    assert list_resources(settings) == []


# -- the command ---------------------------------------------------------------------------


def tre(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **env}
    environ.pop("TRE_SETTINGS", None)
    environ.pop("SUDO_USER", None)
    environ["TRE_VAR_DIR"] = str(settings.var_dir)
    environ["TRE_POLICY_DIR"] = str(settings.policy_dir)
    return subprocess.run(
        [str(TRE), *args], capture_output=True, text=True, timeout=120, check=False, env=environ
    )


def test_the_command_adds_lists_and_refuses(settings: Settings, source: Path) -> None:
    added = tre(
        settings, "resources", "add", str(source), "--project", PROJECT, "--note", "v110",
        USER="dana",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    assert "GRCh38: 3 file(s)" in added.stdout
    manifest = read_manifest(settings.var_dir / "resources" / PROJECT / "GRCh38")
    assert manifest.added_by == "dana"  # from $USER
    assert f"manifest_sha256: {sha256(manifest_path(settings))}" in added.stdout

    by = tre(
        settings, "resources", "add", str(source / "genome.fa"), "--project", "hf-outcomes",
        "--by", "erik", SUDO_USER="root-alias", USER="root",
    )  # fmt: skip
    assert by.returncode == 0, by.stdout + by.stderr

    listed = tre(settings, "resources", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [(r["project"], r["name"], r["files"], r["added_by"]) for r in json.loads(listed.stdout)]
    assert rows == [(PROJECT, "GRCh38", 3, "dana"), ("hf-outcomes", "genome.fa", 1, "erik")]
    table = tre(settings, "resources", "list", "--project", PROJECT)
    assert "GRCh38" in table.stdout and "genome.fa" not in table.stdout
    assert "1 resource(s)" in table.stdout

    again = tre(settings, "resources", "add", str(source), "--project", PROJECT, USER="dana")
    assert again.returncode == 1
    assert "exists already" in again.stderr and "new --name" in again.stderr
    unknown = tre(settings, "resources", "add", str(source), "--project", "nope", USER="dana")
    assert unknown.returncode == 1
    assert "unknown project 'nope'" in unknown.stderr


def manifest_path(settings: Settings) -> Path:
    return settings.var_dir / "resources" / PROJECT / "GRCh38" / MANIFEST_NAME
