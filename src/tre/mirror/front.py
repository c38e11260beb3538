"""The front workspaces reach: pip's index, filtered by the caller's project, every file audited.

Who calls is decided from the basic-auth password (the workspace server's Hub token)
only; the project comes from the hub's record of that server, never from the URL, so a
workspace sees only its own project's constrained index. A file is sent only if that
index lists it, and only after its `package_installed` record is in the audit store
(no record, no file).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httpx
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from tornado import iostream, web
from tornado.ioloop import IOLoop

from tre.audit import AuditEvent, EventKind
from tre.audit.identity import Refused, Workspace
from tre.weblog import request_logger

from .indexes import USER
from .simple import (
    FILES_PREFIX,
    FileLink,
    file_links,
    name_and_version,
    render_index,
    render_project,
    valid_file_path,
)

log = logging.getLogger("tre.mirror.front")

REALM = "tre package mirror"
CHUNK = 1 << 16


class Identifier(Protocol):
    """Who a workspace token belongs to (tre.audit.identity.WorkspaceIdentifier)."""

    async def identify(self, token: str) -> Workspace: ...


AuditWriter = Callable[[AuditEvent], object]


@dataclass
class FrontContext:
    devpi: httpx.AsyncClient
    """devpi over its socket (base URL http://devpi)."""
    identifier: Identifier
    audit: AuditWriter
    """Appends one record durably, or raises (tre.audit.AuditStore.append)."""
    max_file_bytes: int
    allowed: Callable[[str], Sequence[str]] = lambda project: ()
    """A project's allow-list lines as devpi's index holds them (for names and hints)."""


def token_of(authorization: str | None) -> str | None:
    """The password of a basic `Authorization` header (pip's index URL credentials)."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep and password else None


def not_allowed(name: str, ws: Workspace, allowed: list[str]) -> str:
    near = difflib.get_close_matches(name, allowed, n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""
    return (
        f"package '{name}' is not on the allow-list of project '{ws.project}'{hint}; "
        f"to ask for it, an administrator runs: tre packages resolve {name} --permit {ws.permit}"
    )


def _name(line: str) -> str:
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return line


class _Handler(web.RequestHandler):
    ctx: FrontContext
    workspace: Workspace
    index_page = True
    """Answers with an index page (pip reads its Content-Type), not a file."""

    def initialize(self, ctx: FrontContext) -> None:
        self.ctx = ctx

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def refuse(self, status: int, message: str) -> None:
        """Answer `status` with `message` as the reason and body.

        pip hides an index page's error status below -vv; what it does show is a page's
        unexpected Content-Type. So pip, asking for an index page, gets 200 with the
        message in the Content-Type and prints it as a warning; everyone else gets the
        status, and pip fetching a file shows the reason phrase either way.
        """
        reason = message.encode("ascii", "replace").decode("ascii")
        log.info("%s %s refused (%d): %s", self.request.method, self.request.path, status, reason)
        pip = self.request.headers.get("User-Agent", "").startswith("pip/")
        if self.index_page and pip and status != 401:
            self.set_status(200)
            quoted = reason.replace("\\", "/").replace('"', "'")
            self.set_header("Content-Type", f'text/plain; tre-mirror="{quoted}"')
        else:
            self.set_status(status, reason=reason[:400])
            self.set_header("Content-Type", "text/plain; charset=utf-8")
        if status == 401:
            self.set_header("WWW-Authenticate", f'Basic realm="{REALM}"')
        self.finish(message + "\n")

    async def prepare(self) -> None:
        token = token_of(self.request.headers.get("Authorization"))
        if token is None:
            self.refuse(
                401, "the package mirror needs the workspace's token (pip's index URL carries it)"
            )
            return
        try:
            self.workspace = await self.ctx.identifier.identify(token)
        except Refused as exc:
            message = exc.message
            if exc.status == 401:
                message = "the hub does not know this token; restart the workspace"
            self.refuse(exc.status, message)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code}: {self._reason}\n")

    async def devpi_page(self, path: str) -> tuple[int, str]:
        """(status, text) of a devpi page; 502 raised as a refusal if devpi fails."""
        try:
            answer = await self.ctx.devpi.get(path, headers={"Accept": "text/html"})
        except httpx.HTTPError as exc:
            log.error("devpi GET %s: %s", path, exc)
            raise _Answer(502, "the package mirror's index does not answer; try again") from exc
        if answer.status_code not in {200, 404}:
            log.error("devpi GET %s: %d %s", path, answer.status_code, answer.text[:300])
            raise _Answer(
                502,
                f"the package mirror could not get this page ({answer.status_code}); "
                "the upstream index may be down and the package not cached",
            )
        return answer.status_code, answer.text

    def index_path(self, name: str = "") -> str:
        return f"/{USER}/{self.workspace.project}/+simple/{name + '/' if name else ''}"

    def allowed_names(self) -> list[str]:
        # From the allow-list as last synced, not devpi's root page: building that page
        # makes devpi fetch the upstream's whole list of names when its cache is cold.
        return sorted({_name(line) for line in self.ctx.allowed(self.workspace.project)})

    async def get(self, *args: str) -> None:
        try:
            await self.answer(*args)
        except _Answer as refusal:
            self.refuse(refusal.status, refusal.message)

    async def answer(self, *args: str) -> None:
        raise NotImplementedError


class _Answer(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish({"ok": True})


class IndexHandler(_Handler):
    """/simple/: the names the caller's project may install."""

    async def answer(self, *args: str) -> None:
        names = self.allowed_names()
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(render_index(self.workspace.project, names))


class ProjectHandler(_Handler):
    """/simple/<name>/: the files of the versions the caller's project may install."""

    async def answer(self, *args: str) -> None:
        name = args[0]
        canon = canonicalize_name(name)
        if canon != name or not self.request.path.endswith("/"):
            self.redirect(f"/simple/{canon}/", permanent=True)
            return
        status, page = await self.devpi_page(self.index_path(canon))
        if status == 404 and canon in self.allowed_names():
            # Allowed, yet devpi has nothing: it could not fetch the name from upstream.
            raise _Answer(
                502,
                f"package '{canon}' is on the allow-list of project "
                f"'{self.workspace.project}', but the mirror has no files for it: the upstream "
                "index cannot be reached and it was never installed here before; try later",
            )
        if status == 404:
            raise _Answer(404, not_allowed(canon, self.workspace, self.allowed_names()))
        links = file_links(page, self.index_path(canon))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(render_project(canon, links))


class FileHandler(_Handler):
    """/files/<hash>/<file>: one file of an allowed version, audited before it is sent."""

    index_page = False

    async def answer(self, *args: str) -> None:
        path = args[0]
        ws = self.workspace
        parsed = name_and_version(path.rsplit("/", 1)[-1]) if valid_file_path(path) else None
        if parsed is None:
            raise _Answer(404, "not a package file of this mirror")
        name, version = parsed
        status, page = await self.devpi_page(self.index_path(name))
        if status == 404:
            raise _Answer(404, not_allowed(name, ws, self.allowed_names()))
        link = next((x for x in file_links(page, self.index_path(name)) if x.path == path), None)
        if link is None:
            raise _Answer(
                404,
                f"{path.rsplit('/', 1)[-1]} is not a file of a version of '{name}' allowed for "
                f"project '{ws.project}'",
            )
        request = self.ctx.devpi.build_request("GET", FILES_PREFIX + path)
        try:
            answer = await self.ctx.devpi.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.error("devpi GET %s: %s", path, exc)
            raise _Answer(502, "the package mirror's index does not answer; try again") from exc
        try:
            await self._send(answer, link, name, version)
        finally:
            await answer.aclose()

    async def _send(self, answer: httpx.Response, link: FileLink, name: str, version: str) -> None:
        if answer.status_code != 200:
            log.error("devpi GET %s: %d", link.path, answer.status_code)
            raise _Answer(
                502,
                f"the package mirror could not fetch {link.filename} ({answer.status_code}); "
                "the upstream index may be down and the file not cached",
            )
        length = answer.headers.get("Content-Length")
        if length is not None and int(length) > self.ctx.max_file_bytes:
            raise _Answer(
                413, f"{link.filename} is larger than the mirror's limit of "
                f"{self.ctx.max_file_bytes} bytes",
            )  # fmt: skip
        ws = self.workspace
        event = AuditEvent(
            kind=EventKind.package_installed,
            actor=ws.user,
            project=ws.project,
            permit=ws.permit,
            server=ws.server,
            detail={
                "name": name,
                "version": version,
                "filename": link.filename,
                "sha256": link.sha256,
            },
        )
        try:
            await IOLoop.current().run_in_executor(None, self.ctx.audit, event)
        except Exception as exc:  # any failure to record: fail closed
            log.error("audit record of %s for %s failed: %s", link.filename, ws.user, exc)
            raise _Answer(
                503, "the audit log cannot record this download, so it is refused; try again later"
            ) from exc
        self.set_header("Content-Type", "application/octet-stream")
        if length is not None and "Content-Encoding" not in answer.headers:
            self.set_header("Content-Length", length)  # bytes as sent (never re-encoded)
        await self._stream(answer, link)

    async def _stream(self, answer: httpx.Response, link: FileLink) -> None:
        """Pass devpi's bytes on, holding the last chunk back until the whole file's sha256
        matches the index's, so a wrong or oversized file never arrives complete."""
        digest = hashlib.sha256()
        total = 0
        held: bytes | None = None
        try:
            async for chunk in answer.aiter_bytes(CHUNK):
                total += len(chunk)
                if total > self.ctx.max_file_bytes:
                    raise _Abort(f"{link.filename}: more than {self.ctx.max_file_bytes} bytes")
                digest.update(chunk)
                if held is not None:
                    self.write(held)
                    await self.flush()
                held = chunk
            if digest.hexdigest() != link.sha256:
                raise _Abort(f"{link.filename}: sha256 {digest.hexdigest()} != {link.sha256}")
            if held is not None:
                self.write(held)
            await self.finish()
        except iostream.StreamClosedError:
            log.info("%s: the workspace went away mid-download", link.filename)
        except (_Abort, httpx.HTTPError) as exc:
            log.error("download cut off: %s", exc)
            cast(Any, self.request.connection).close()


class _Abort(Exception):
    pass


def make_app(ctx: FrontContext) -> web.Application:
    args = {"ctx": ctx}
    return web.Application(
        [
            (r"/health", HealthHandler),
            (r"/simple/?", IndexHandler, args),
            (r"/simple/([^/]+)/?", ProjectHandler, args),
            (r"/files/(.+)", FileHandler, args),
        ],
        log_function=request_logger(log, warn_from=500),
    )
