"""The mirror service's lifecycle: devpi started and shaped from the policy, then the front.

`python -m tre.mirror` (the hub's managed service `tre-mirror`) initialises devpi's
serverdir once, starts devpi on its socket, points `root/pypi` at the upstream index,
makes one constrained index per project from the policy, and only then listens on
0.0.0.0:<mirror.port>. The indexes follow the policy: re-made when a policy file changes
and at least every minute. Stopping the service stops devpi; its state stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx
from jupyterhub.services.auth import HubAuth
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tornado import httpserver

from tre.audit import open_store
from tre.audit.identity import WorkspaceIdentifier
from tre.lifeline import end_with_parent
from tre.settings import Settings, load_settings

from .devpi import DEVPI_HOST, DevpiAdmin, DevpiProcess, MirrorPaths, ensure_initialised
from .front import AuditWriter, FrontContext, Identifier, make_app
from .indexes import constraints_from_policy, index_name, sync_indexes

log = logging.getLogger("tre.mirror")

TOKEN_CACHE_SECONDS = 30
SYNC_EVERY = 60.0
"""Seconds between index syncs when no policy file changed (permits end by the day)."""
WATCH_EVERY = 2.0

ConstraintsSource = Callable[[], Mapping[str, Sequence[str]]]


def _stamp(folder: Path | None) -> tuple[tuple[str, int, int], ...]:
    if folder is None:
        return ()
    try:
        with os.scandir(folder) as entries:
            stats = [(e.name, e.stat()) for e in entries if e.is_file()]
    except OSError:
        return (("<unreadable>", 0, 0),)
    return tuple(sorted((name, st.st_mtime_ns, st.st_size) for name, st in stats))


def _name_of(line: str) -> str:
    return canonicalize_name(Requirement(line).name)


class MirrorService:
    """devpi, its indexes and the front, started and stopped together."""

    def __init__(
        self,
        settings: Settings,
        *,
        identifier: Identifier,
        audit: AuditWriter,
        constraints: ConstraintsSource,
        watch: Path | None = None,
        address: str = "0.0.0.0",  # noqa: S104 - workspaces reach it on their gateways
        sync_every: float = SYNC_EVERY,
    ) -> None:
        self.settings = settings
        self.paths = MirrorPaths.of(settings)
        self.identifier = identifier
        self.audit = audit
        self.constraints = constraints
        self.watch = watch
        self.address = address
        self.sync_every = sync_every
        self.devpi = DevpiProcess(self.paths, request_timeout=settings.mirror.request_timeout)
        self.admin: DevpiAdmin | None = None
        self.client: httpx.AsyncClient | None = None
        self.server: httpserver.HTTPServer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._synced_at = 0.0
        self._synced_stamp: tuple[tuple[str, int, int], ...] | None = None
        self._synced: dict[str, tuple[str, ...]] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, ensure_initialised, self.paths)
        self.devpi.start()
        try:
            await loop.run_in_executor(None, self.devpi.wait_ready)
            self.admin = DevpiAdmin(self.paths, timeout=self.settings.mirror.request_timeout)
            await loop.run_in_executor(
                None, self.admin.set_mirror_url, self.settings.mirror.upstream_url
            )
            wanted = await self.resync()  # a failure stops the start: no stale indexes
            first = next(((p, lines) for p, lines in sorted(wanted.items()) if lines), None)
            if first is not None:
                page = f"/{index_name(first[0])}/+simple/{_name_of(first[1][0])}/"
                await loop.run_in_executor(None, self.admin.warm, page)
            timeout = self.settings.mirror.request_timeout
            self.client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(self.paths.socket)),
                base_url=f"http://{DEVPI_HOST}",
                timeout=httpx.Timeout(timeout, connect=10.0),
                follow_redirects=False,
            )
            ctx = FrontContext(
                devpi=self.client,
                identifier=self.identifier,
                audit=self.audit,
                max_file_bytes=self.settings.mirror.max_file_bytes,
                allowed=lambda project: self._synced.get(project, ()),
            )
            self.server = httpserver.HTTPServer(
                make_app(ctx), xheaders=False, idle_connection_timeout=timeout
            )
            self.server.listen(self.settings.mirror.port, address=self.address)
        except BaseException:
            await self.stop()
            raise
        self._watcher = asyncio.create_task(self._watch())
        log.info("tre-mirror listening on %s:%d", self.address, self.settings.mirror.port)

    async def resync(self) -> Mapping[str, Sequence[str]]:
        """Make devpi's indexes match the constraints now; return them."""
        stamp = _stamp(self.watch)
        wanted = self.constraints()
        assert self.admin is not None
        await asyncio.get_running_loop().run_in_executor(None, sync_indexes, self.admin, wanted)
        self._synced_at, self._synced_stamp = time.monotonic(), stamp
        self._synced = {project: tuple(lines) for project, lines in wanted.items()}
        return wanted

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY)
            due = time.monotonic() - self._synced_at >= self.sync_every
            if due or _stamp(self.watch) != self._synced_stamp:
                try:
                    await self.resync()
                except Exception:
                    # The indexes keep the last allow-list that loaded; a policy that does
                    # not load also stops every workspace from being identified.
                    log.exception("package indexes not updated")
                    self._synced_at = time.monotonic()

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self.server is not None:
            self.server.stop()
            await self.server.close_all_connections()
            self.server = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        await asyncio.get_running_loop().run_in_executor(None, self.devpi.stop)


def settings_from_env() -> Settings:
    path = os.environ.get("TRE_SETTINGS")
    return load_settings(Path(path) if path else None)


def service_from_settings(settings: Settings) -> MirrorService:
    """The service as the hub runs it: identity from the hub, the site's audit store and
    policy."""
    identifier = WorkspaceIdentifier(
        HubAuth(cache_max_age=TOKEN_CACHE_SECONDS), settings.policy_dir
    )
    return MirrorService(
        settings,
        identifier=identifier,
        audit=open_store(settings).append,
        constraints=lambda: constraints_from_policy(settings),
        watch=settings.policy_dir,
    )


async def serve(service: MirrorService) -> None:
    """Run `service` until SIGTERM or SIGINT, then stop devpi with it."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await service.start()
    try:
        await stopping.wait()
    finally:
        await service.stop()
        log.info("tre-mirror stopped")


def main() -> None:  # pragma: no cover - run by JupyterHub as a managed service
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(name)s] %(message)s")
    end_with_parent()  # a killed hub's restart must find the port free
    asyncio.run(serve(service_from_settings(settings_from_env())))
