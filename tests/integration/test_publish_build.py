"""The published folder holds released outputs and nothing else, verified, swapped whole.

A real review database, file store and audit store under tmp_path (the disclosure checks
are the review tests' small double); `build_publication` reads them as the summaries
service does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import DEMO_TODAY
from tests.unit.test_review_service import CONTROLS, Clock, FakeChecker
from tre.policy import Policy
from tre.publish.build import (
    CURRENT,
    INDEX,
    KEEP_BUILDS,
    ProjectSummary,
    PublicationIndex,
    PublishError,
    build_publication,
    current_build,
)
from tre.review import ReleaseRequest, ReviewService
from tre.settings import Settings

GBM = "gbm-linkage"  # two reviews: olivia and oscar
HF = "hf-outcomes"

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


class Site:
    def __init__(self, tmp_path: Path, policy: Policy) -> None:
        self.settings = Settings(policy_dir=tmp_path / "unused", var_dir=tmp_path / "var")
        self.policy = policy
        self.clock = Clock(datetime(2026, 11, 23, 9, tzinfo=UTC))
        self.service = ReviewService(self.settings, lambda: policy, FakeChecker(), self.clock)

    def put(self, project: str, name: str, content: bytes) -> None:
        folder = self.settings.workspaces_dir / project
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)

    def request(
        self, project: str, author: str, title: str, files: dict[str, bytes]
    ) -> ReleaseRequest:
        req = self.service.create_request(author, project, title)
        for name, content in files.items():
            self.put(project, name, content)
            req = self.service.add_file(
                req.id,
                author,
                name,
                description=f"{name} described",
                context="c",
                controls=CONTROLS,
            )
        return req

    def released(self, project: str, author: str, title: str, files: dict[str, bytes]) -> str:
        req = self.request(project, author, title, files)
        svc = self.service
        svc.submit(req.id, author)
        svc.start_review(req.id, "olivia")
        svc.approve(req.id, "olivia")
        if req.reviews_required == 2:
            svc.approve(req.id, "oscar")
        return svc.release(req.id, author).id

    def build(self) -> Path:
        return build_publication(self.settings, self.policy, today=DEMO_TODAY, now=self.clock())


@pytest.fixture
def site(tmp_path: Path, demo_policy: Policy) -> Iterator[Site]:
    s = Site(tmp_path, demo_policy)
    yield s
    s.service.close()


def everything(build: Path) -> bytes:
    return b"\0".join(p.read_bytes() for p in sorted(build.rglob("*")) if p.is_file())


def test_a_released_output_is_published_with_its_summary(site: Site) -> None:
    table = b"grade,patients\nII,28\nIII,71\nIV,218\n"
    request_id = site.released(GBM, "alice", "Patients by grade", {"t.csv": table, "k.png": PNG})
    build = site.build()

    assert current_build(site.settings) == build
    link = site.settings.publish_dir / CURRENT
    assert not link.readlink().is_absolute()  # resolves inside the container's mount too
    index = PublicationIndex.model_validate_json((build / INDEX).read_text())
    assert index.projects == (GBM, HF)
    summary = ProjectSummary.model_validate_json(
        (build / "projects" / GBM / "summary.json").read_text()
    )
    assert summary.purpose_article == "Art. 53(1)(e)"
    assert {d.dataset for d in summary.datasets} >= {"clinical-records", "gbm-mri"}
    [release] = summary.releases
    assert (release.request_id, release.title) == (request_id, "Patients by grade")
    assert {f.name: (build / f.path).read_bytes() for f in release.files} == {
        "t.csv": table,
        "k.png": PNG,
    }
    for f in release.files:
        assert f.sha256 == hashlib.sha256((build / f.path).read_bytes()).hexdigest()
    hf = json.loads((build / "projects" / HF / "summary.json").read_text())
    assert hf["releases"] == []
    for path in [build, *build.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o555 if path.is_dir() else 0o444), (path, oct(mode))


def test_nothing_that_is_not_released_is_published(site: Site) -> None:
    site.released(GBM, "alice", "Released one", {"ok.csv": b"a,n\nx,40\n"})
    draft = site.request(GBM, "alice", "DRAFT-TITLE", {"draft.csv": b"SECRET-DRAFT,1\n"})
    submitted = site.request(HF, "carla", "SUBMITTED-TITLE", {"sub.csv": b"SECRET-SUB,2\n"})
    site.service.submit(submitted.id, "carla")
    approved = site.request(GBM, "bob", "APPROVED-TITLE", {"app.csv": b"SECRET-APPROVED,3\n"})
    site.service.submit(approved.id, "bob")
    site.service.start_review(approved.id, "olivia")
    site.service.approve(approved.id, "olivia")
    site.service.approve(approved.id, "oscar")  # approved, not yet released by its author
    rejected = site.request(HF, "bob", "REJECTED-TITLE", {"rej.csv": b"SECRET-REJECTED,4\n"})
    site.service.submit(rejected.id, "bob")
    site.service.start_review(rejected.id, "olivia")
    site.service.reject(rejected.id, "olivia", "identifiable")

    content = everything(site.build())
    assert b"Released one" in content
    for marker in (b"SECRET-", b"DRAFT-TITLE", b"SUBMITTED-TITLE", b"APPROVED-TITLE"):
        assert marker not in content, marker
    for req in (draft, submitted, approved, rejected):
        assert req.id.encode() not in content


def test_a_tampered_released_copy_stops_the_build_and_the_current_one_stays(
    site: Site,
) -> None:
    site.released(GBM, "alice", "First", {"one.csv": b"a,n\nx,40\n"})
    first = site.build()
    second_id = site.released(GBM, "alice", "Second", {"two.csv": b"a,n\ny,50\n"})
    stored = site.service.get(second_id, "alice").files[0].stored_path
    stored.chmod(0o644)
    stored.write_bytes(b"a,n\ny,3\n")  # changed after the checkers approved it

    with pytest.raises(PublishError, match=r"two\.csv.*has changed since it was submitted"):
        site.build()
    assert current_build(site.settings) == first
    assert b"y,3" not in everything(first)
    assert [p.name for p in (site.settings.publish_dir / "builds").iterdir()] == [first.name]


def test_an_unchanged_publication_is_not_built_again_and_old_builds_are_pruned(
    site: Site,
) -> None:
    first = site.build()
    assert site.build() == first
    builds = [first]
    for n in range(KEEP_BUILDS + 1):
        site.released(HF, "carla", f"Release {n}", {f"r{n}.csv": f"a,n\nx,{40 + n}\n".encode()})
        builds.append(site.build())
    assert len(set(builds)) == len(builds)
    kept = sorted(p.name for p in (site.settings.publish_dir / "builds").iterdir())
    assert kept == sorted(b.name for b in builds[-KEEP_BUILDS:])
    # The build a reader opened before the swap is still whole until it is pruned.
    assert (builds[-2] / INDEX).is_file()


def test_a_request_whose_file_name_could_escape_is_refused(site: Site) -> None:
    site.released(GBM, "alice", "Fine", {"fine.csv": b"a,n\nx,40\n"})
    with pytest.raises(PublishError, match="export"):
        build_publication(
            site.settings, site.policy, today=DEMO_TODAY, exports={"../escape.json": b"{}"}
        )
    assert current_build(site.settings) is None
    assert not (site.settings.var_dir / "escape.json").exists()
    assert not any(p.name == "escape.json" for p in site.settings.var_dir.rglob("*"))
