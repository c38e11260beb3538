"""A real PostgreSQL server for tests: a private cluster on a free loopback port.

The server runs as the `postgres` system user (PostgreSQL refuses root) in a folder
of the test's own, and is stopped and removed afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def _binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    bindir = _binaries()
    if bindir is None:
        message = "PostgreSQL is not installed (Debian package postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(f"SKIPPED LOUDLY: {message}")
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    # Not under pytest's tmp_path: the postgres user must be able to reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="tre-pg-"))
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    data = folder / "data"

    def as_owner(*args: str) -> list[str]:
        cmd = [str(a) for a in args]
        return ["runuser", "-u", owner.pw_name, "--", *cmd] if os.geteuid() == 0 else cmd

    subprocess.run(
        as_owner(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "tre", "--no-sync"),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    log = folder / "postgres.log"
    with log.open("wb") as handle:
        server = subprocess.Popen(
            as_owner(
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(folder),
                "-c",
                "fsync=off",
            ),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                break
            if server.poll() is not None:
                raise RuntimeError(f"postgres exited: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        else:
            raise RuntimeError(f"postgres did not start: {log.read_text()[-2000:]}")
        yield Postgres("127.0.0.1", port, "tre")
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def createdb(pg: Postgres, name: str) -> None:
    bindir = _binaries()
    assert bindir is not None
    subprocess.run(
        [str(bindir / "createdb"), "-h", pg.host, "-p", str(pg.port), "-U", pg.user, name],
        check=True,
        capture_output=True,
        timeout=60,
    )
