"""devpi-server, the mirror's engine: a child process listening on a unix socket (mode 0600)
that only this service's own user can reach, so nothing on the host bypasses the front.

devpi's state (cached files, the `root/pypi` mirror, one constrained index per project)
lives in its serverdir and survives restarts; only `root` may change indexes
(`--restrict-modify root`), and its password never leaves `var/mirror/`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx
from argon2 import PasswordHasher

if TYPE_CHECKING:
    from tre.settings import Settings

log = logging.getLogger("tre.mirror")

ROOT = "root"
MIRROR_INDEX = "root/pypi"
"""devpi's caching mirror of the upstream index: unfiltered, so never served directly."""
DEVPI_HOST = "devpi"
"""Host name in URLs sent over the socket (devpi builds its absolute links from it)."""


class MirrorError(Exception):
    """devpi cannot be set up, started or changed; the message says what and where."""


@dataclass(frozen=True)
class MirrorPaths:
    """Where the mirror keeps its state: everything under one folder of mode 0700."""

    base: Path
    serverdir: Path

    @classmethod
    def of(cls, settings: Settings) -> MirrorPaths:
        base = settings.var_dir / "mirror"
        return cls(base=base, serverdir=settings.mirror.serverdir or base / "devpi")

    @property
    def socket(self) -> Path:
        return self.base / "devpi.sock"

    @property
    def secret(self) -> Path:
        return self.base / "devpi-secret"

    @property
    def root_password(self) -> Path:
        return self.base / "root-password"

    @property
    def pid_file(self) -> Path:
        return self.base / "devpi.pid"

    @property
    def log_file(self) -> Path:
        return self.base / "devpi.log"


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 0600) through a temporary name, so a crash leaves none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _devpi_command(name: str) -> str:
    """A devpi console script: the one beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise MirrorError(f"{name} is not installed (pip install 'jupyter-tre[hub]')")
    return found


def ensure_initialised(paths: MirrorPaths) -> None:
    """Create the folder, root's password, devpi's secret and its serverdir, once.

    The serverdir is initialised under a temporary name and renamed into place, so an
    interrupted first start leaves nothing that looks initialised.
    """
    paths.base.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.base.chmod(0o700)  # devpi refuses a secret in a folder others can write to
    if not paths.root_password.exists():
        _write_private(paths.root_password, secrets.token_urlsafe(32))
    if not paths.secret.exists():
        _write_private(paths.secret, secrets.token_urlsafe(48))
    if (paths.serverdir / ".serverversion").exists():
        return
    if paths.serverdir.exists() and any(paths.serverdir.iterdir()):
        raise MirrorError(
            f"{paths.serverdir}: exists but is not a devpi serverdir; move it away or point "
            "mirror.serverdir elsewhere"
        )
    # devpi keeps argon2 hashes (PHC strings, as argon2-cffi writes them): only the hash
    # goes on devpi-init's command line.
    pw_hash = PasswordHasher().hash(paths.root_password.read_text(encoding="ascii").strip())
    paths.serverdir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(dir=paths.serverdir.parent, prefix=".devpi-init-"))
    try:
        done = subprocess.run(
            [
                _devpi_command("devpi-init"),
                "--serverdir",
                str(staging),
                "--root-passwd-hash",
                pw_hash,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if done.returncode != 0:
            raise MirrorError(f"devpi-init failed: {(done.stderr or done.stdout)[-2000:]}")
        if paths.serverdir.exists():
            paths.serverdir.rmdir()  # empty (checked above)
        staging.replace(paths.serverdir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log.info("initialised the devpi serverdir %s", paths.serverdir)


def _stop_stale(paths: MirrorPaths) -> None:
    """Stop a devpi-server a previous run of this service left behind (its pid file and
    its command line both name our serverdir), so two never share one serverdir."""
    try:
        pid = int(paths.pid_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        cmdline = []
    if str(paths.serverdir).encode() in cmdline:
        log.warning("stopping devpi-server %d left behind by a previous run", pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
    paths.pid_file.unlink(missing_ok=True)


class DevpiProcess:
    """devpi-server as this service's child, on `paths.socket` only."""

    def __init__(self, paths: MirrorPaths, *, request_timeout: float) -> None:
        self.paths = paths
        self.request_timeout = request_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        _stop_stale(self.paths)
        self.paths.socket.unlink(missing_ok=True)
        command = [
            _devpi_command("devpi-server"),
            "--serverdir",
            str(self.paths.serverdir),
            "--secretfile",
            str(self.paths.secret),
            "--unix-socket",
            str(self.paths.socket),
            "--unix-socket-perms",
            "600",
            "--restrict-modify",
            ROOT,
            "--request-timeout",
            str(max(1, int(self.request_timeout))),
            "--proxy-timeout",
            str(max(1, int(self.request_timeout))),
        ]
        self._log = self.paths.log_file.open("ab")
        self.proc = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        _write_private(self.paths.pid_file, str(self.proc.pid))
        log.info("devpi-server %d starting on %s", self.proc.pid, self.paths.socket)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until devpi answers on its socket; MirrorError (with its log's tail) if it exits."""
        deadline = time.monotonic() + timeout
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.paths.socket)), timeout=5
        ) as client:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    raise MirrorError(f"devpi-server exited: {self._log_tail()}")
                if self.paths.socket.exists():
                    try:
                        if client.get(f"http://{DEVPI_HOST}/+api").status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                time.sleep(0.2)
        raise MirrorError(f"devpi-server did not answer within {timeout:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.paths.log_file.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        self.paths.pid_file.unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None


class DevpiAdmin:
    """devpi's JSON API as `root`, over the socket (plain HTTP; no devpi-client needed)."""

    def __init__(self, paths: MirrorPaths, *, timeout: float = 60.0) -> None:
        password = paths.root_password.read_text(encoding="ascii").strip()
        self.http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(paths.socket)),
            base_url=f"http://{DEVPI_HOST}",
            auth=(ROOT, password),
            headers={"Accept": "application/json"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: object = None, ok: int = 200) -> Any:
        try:
            answer = self.http.request(
                method, path, json=body, params={"no_projects": ""} if method == "GET" else None
            )
        except httpx.HTTPError as exc:
            raise MirrorError(f"devpi {method} {path}: {exc}") from exc
        if answer.status_code == 404 and method == "GET":
            return None
        if answer.status_code not in {ok, 200, 201}:
            raise MirrorError(f"devpi {method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json().get("result") if answer.content else None

    def get(self, path: str) -> dict[str, Any] | None:
        found = self._call("GET", path)
        return found if isinstance(found, dict) else None

    def ensure_user(self, name: str) -> None:
        if self.get(f"/{name}") is None:
            # Nobody logs in as this user: it only owns the constrained indexes.
            self._call("PUT", f"/{name}", {"password": secrets.token_urlsafe(32)})

    def indexes_of(self, user: str) -> dict[str, dict[str, Any]]:
        found = self.get(f"/{user}") or {}
        indexes = found.get("indexes") or {}
        return dict(indexes) if isinstance(indexes, dict) else {}

    def create_index(self, name: str, config: dict[str, Any]) -> None:
        self._call("PUT", f"/{name}", config)

    def replace_index(self, name: str, config: dict[str, Any]) -> None:
        """Set the whole configuration of index `name` (devpi's PATCH with a mapping)."""
        self._call("PATCH", f"/{name}", config)

    def delete_index(self, name: str) -> None:
        self._call("DELETE", f"/{name}", ok=201)

    def warm(self, page: str, timeout: float = 300.0) -> None:
        """Ask devpi for one page, so its first fetch of the upstream's list of project names
        (tens of seconds for PyPI) happens now and not while a workspace's pip waits."""
        started = time.monotonic()
        try:
            answer = self.http.get(page, headers={"Accept": "text/html"}, timeout=timeout)
            status: object = answer.status_code
        except httpx.HTTPError as exc:
            status = exc
        log.info("devpi warmed with %s in %.1fs: %s", page, time.monotonic() - started, status)

    def set_mirror_url(self, url: str) -> None:
        """Point root/pypi at `url` (a site's own upstream; tests point it at a closed port)."""
        wanted = url.rstrip("/") + "/"
        current = self.get(f"/{MIRROR_INDEX}")
        if current is None:
            raise MirrorError(f"devpi has no {MIRROR_INDEX} index (was devpi-init run?)")
        if current.get("mirror_url") != wanted:
            self.replace_index(MIRROR_INDEX, {**current, "mirror_url": wanted})
            log.info("root/pypi now mirrors %s", wanted)
