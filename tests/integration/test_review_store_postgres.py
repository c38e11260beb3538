"""The review database on a real PostgreSQL server: the whole life of a request, two
checkers approving at the same moment, and a restarted service finding everything."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.postgres import createdb, postgres_server
from tests.unit.test_review_service import CONTROLS, GBM, FakeChecker
from tre.policy import Policy
from tre.review import Action, RequestState, ReviewService, TamperedFile
from tre.settings import Settings

pytestmark = pytest.mark.slow


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 9, tzinfo=UTC)
        self._guard = threading.Lock()

    def __call__(self) -> datetime:
        with self._guard:
            self.now += timedelta(seconds=1)
            return self.now


def test_review_store_on_postgresql(tmp_path: Path, demo_policy: Policy) -> None:
    settings = Settings(policy_dir=tmp_path, var_dir=tmp_path / "var")
    workspace = settings.workspaces_dir / GBM / "out"
    workspace.mkdir(parents=True)
    (workspace / "t.csv").write_text("group,n\na,30\nb,40\n")
    (workspace / "u.csv").write_text("group,n\na,35\nb,45\n")
    with postgres_server() as pg:
        createdb(pg, "review")
        url = pg.url("review")
        clock = Clock()

        def service() -> ReviewService:
            return ReviewService(settings, lambda: demo_policy, FakeChecker(), clock, db_url=url)

        svc = service()
        req = svc.create_request("alice", GBM, "Table 2", "survival")
        for name in ("out/t.csv", "out/u.csv"):
            svc.add_file(req.id, "alice", name, description="d", context="c", controls=CONTROLS)
        svc.submit(req.id, "alice")
        svc.start_review(req.id, "olivia")

        # Two checkers approve at once, several times each (double clicks): both count,
        # once each, and the request is approved exactly once.
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def approve(checker: str) -> None:
            mine = service()
            try:
                barrier.wait()
                mine.approve(req.id, checker)
            except BaseException as exc:
                errors.append(exc)
            finally:
                mine.close()

        threads = [threading.Thread(target=approve, args=(c,)) for c in ("olivia", "oscar") * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        done = svc.get(req.id, "alice")
        assert done.state is RequestState.approved
        assert [h.step.action for h in done.history].count(Action.approve) == 1
        assert sorted(r.checker for r in done.reviews) == ["olivia", "oscar"]
        svc.close()

        # A restarted service finds the same request and releases it from PostgreSQL.
        again = service()
        released = again.release(req.id, "alice")
        assert released.state is RequestState.released
        assert released.history == again.get(req.id, "olivia").history
        assert again.download(req.id, "t.csv", "alice") == b"group,n\na,30\nb,40\n"

        copy = released.file("u.csv")
        assert copy is not None
        copy.stored_path.chmod(0o644)
        copy.stored_path.write_text("group,n\na,3\nb,45\n")
        with pytest.raises(TamperedFile, match=r"u\.csv"):
            again.download(req.id, "u.csv", "alice")
        again.close()

        with (
            psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname="review") as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT state FROM review_requests")
            assert cur.fetchall() == [("released",)]
            cur.execute("SELECT name, version FROM review_files ORDER BY name")
            assert cur.fetchall() == [("t.csv", 1), ("u.csv", 1)]
            cur.execute("SELECT count(*) FROM review_history WHERE request_id = %s", (req.id,))
            assert cur.fetchone() == (len(released.history),)
    assert not (settings.db_dir / "review.sqlite").exists()
