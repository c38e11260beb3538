"""A backup restores into an empty var/ with the audit chain intact; damage is refused."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tre.audit import AuditEvent, EventKind, open_store
from tre.backup import BackupError, create_backup, restore_backup
from tre.settings import AuditSettings, Settings

GBM = "gbm-linkage"


def site(root: Path, **kw: object) -> Settings:
    return Settings(policy_dir=root / "unused", var_dir=root / "var", **kw)  # type: ignore[arg-type]


@pytest.fixture
def source(tmp_path: Path) -> Settings:
    s = site(tmp_path / "a")
    store = open_store(s)
    for n in range(5):
        store.append(
            AuditEvent(kind=EventKind.execute, actor="alice", project=GBM, detail={"n": n})
        )
    (s.releases_dir / GBM / "r1" / "1").mkdir(parents=True)
    (s.releases_dir / GBM / "r1" / "1" / "t.csv").write_text("a,n\nx,40\n")
    (s.workspaces_dir / GBM).mkdir(parents=True)
    (s.workspaces_dir / GBM / "analysis.py").write_text("print(1)\n")
    return s


def test_a_backup_restores_everything_and_the_audit_chain_verifies(
    source: Settings, tmp_path: Path
) -> None:
    result = create_backup(source, tmp_path / "backups", datetime(2026, 11, 23, tzinfo=UTC))
    assert result.path.name == "tre-backup-20261123T000000Z.tar"
    open_store(source).append(  # written after the backup: not in it
        AuditEvent(kind=EventKind.execute, actor="alice", project=GBM, detail={"n": 99})
    )
    target = site(tmp_path / "b")
    restored = restore_backup(result.path, target)
    assert restored.files == result.files
    store = open_store(target)
    assert store.verify().ok
    assert [r.detail["n"] for r in store.show(project=GBM)] == [0, 1, 2, 3, 4]
    assert (target.releases_dir / GBM / "r1" / "1" / "t.csv").read_text() == "a,n\nx,40\n"
    assert (target.workspaces_dir / GBM / "analysis.py").read_text() == "print(1)\n"

    with pytest.raises(BackupError, match="already holds db"):
        restore_backup(result.path, target)  # nothing is overwritten


def test_a_damaged_backup_is_refused_before_anything_is_written(
    source: Settings, tmp_path: Path
) -> None:
    result = create_backup(source, tmp_path / "backups")
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(result.path) as tar, tarfile.open(damaged, "w") as out:
        for member in tar.getmembers():
            data = tar.extractfile(member)
            assert data is not None
            content = data.read()
            if member.name.endswith("t.csv"):
                content = content.replace(b"40", b"04")
            out.addfile(member, io.BytesIO(content))
    target = site(tmp_path / "c")
    with pytest.raises(BackupError, match=r"t\.csv does not match its checksum"):
        restore_backup(damaged, target)
    assert not target.var_dir.exists() or not any(target.var_dir.iterdir())


def test_a_site_on_postgresql_is_refused(tmp_path: Path) -> None:
    s = site(tmp_path, audit=AuditSettings(db_url="postgresql://tre@db/tre"))
    with pytest.raises(BackupError, match=r"audit\.db_url is not SQLite.*pg_dump"):
        create_backup(s, tmp_path / "backups")
