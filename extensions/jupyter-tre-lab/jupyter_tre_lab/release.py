"""`<base_url>tre/release/...`: the browser's way to ask the hub-side review service for a
release, forwarded with this server's own Hub token.

Only the documented fields of each call are forwarded, so who asks and for which project is
always what the service reads from the token, never what the browser says. File bytes never
pass through here: the service copies each file from the project folder itself; the path is
checked first only to give the researcher a clear message (the service checks it again).
"""

# jupyter_server 2.21.1 leaves most of its API unannotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from .settings import TreSettings, is_under

RELEASE_SETTING = "jupyter_tre_lab.review_client"

REVIEW_TIMEOUT = 15.0
"""Seconds for one call to the review service (adding a file makes it copy and check it)."""
MAX_TEXT_CHARS = 20_000
"""Titles, descriptions, context and controls longer than this are refused here."""
MAX_REPLY_BYTES = 4 * 1024 * 1024
NOT_AVAILABLE = "release requests are not available in this workspace"
REQUEST_ID = r"(?P<request_id>[A-Za-z0-9_-]{1,64})"


class ReleaseError(Exception):
    """A call that cannot go ahead; `message` is for the researcher."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ReviewClient:
    """One connection pool to the review service, authenticated as this server."""

    def __init__(self, settings: TreSettings) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None
        if settings.review_url and settings.audit_token:
            self._client = httpx.AsyncClient(
                base_url=settings.review_url,
                headers={"Authorization": f"token {settings.audit_token}"},
                timeout=REVIEW_TIMEOUT,
                follow_redirects=False,
                # The workspace's proxy variables are for package mirrors, not the gateway.
                trust_env=False,
            )

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """The service's status and JSON reply; ReleaseError when there is no usable reply."""
        if self._client is None:
            raise ReleaseError(503, NOT_AVAILABLE)
        try:
            response = await self._client.request(method, path, json=body)
        except httpx.TimeoutException:
            raise ReleaseError(
                503, "the review service did not answer in time; try again later"
            ) from None
        except httpx.HTTPError:
            raise ReleaseError(
                503, "the review service cannot be reached; try again later"
            ) from None
        if len(response.content) > MAX_REPLY_BYTES:
            raise ReleaseError(502, "the review service sent a reply too large to show")
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 500 or (response.is_success and data is None):
            raise ReleaseError(
                502, f"the review service failed ({response.status_code}); try again later"
            )
        if not response.is_success:
            message = data.get("message") if isinstance(data, dict) else None
            if not isinstance(message, str) or not message:
                message = f"the review service refused the request ({response.status_code})"
            raise ReleaseError(response.status_code, message)
        return response.status_code, data

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def text_fields(body: Any, names: tuple[str, ...]) -> dict[str, str]:
    """Exactly `names` from the JSON object `body`, each a non-empty string."""
    if not isinstance(body, dict):
        raise ReleaseError(400, "the request body must be a JSON object")
    fields: dict[str, str] = {}
    for name in names:
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ReleaseError(400, f'"{name}" is required and must be non-empty text')
        if len(value) > MAX_TEXT_CHARS:
            raise ReleaseError(400, f'"{name}" is longer than {MAX_TEXT_CHARS} characters')
        fields[name] = value
    return fields


def check_release_path(path: str, root_dir: str, data_roots: tuple[str, ...]) -> str:
    """The normalised project-relative form of `path`, if it names a regular file in the
    project folder that is not dataset data; otherwise ReleaseError saying why."""
    if "\x00" in path or "\\" in path:
        raise ReleaseError(400, f"{path!r} is not a valid file path")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise ReleaseError(
            400, f"{path} is an absolute path; give a path relative to the project folder"
        )
    if ".." in pure.parts:
        raise ReleaseError(400, f"{path} leaves the project folder ('..' is not allowed)")
    if not pure.parts or pure == PurePosixPath("."):
        raise ReleaseError(400, "no file was named")
    root = os.path.realpath(root_dir)
    real = str(Path(root, *pure.parts).resolve())
    if is_under(real, data_roots):
        raise ReleaseError(
            403, f"{path} is dataset data; only outputs made from it can be released"
        )
    if real == root or not is_under(real, (root,)):
        raise ReleaseError(400, f"{path} is outside the project folder")
    try:
        mode = Path(real).stat().st_mode
    except FileNotFoundError:
        raise ReleaseError(404, f"{path} does not exist") from None
    except OSError as exc:
        raise ReleaseError(400, f"{path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ReleaseError(400, f"{path} is not a file")
    return str(pure)


class ReleaseHandler(APIHandler):
    """Shared plumbing: the client, error replies and JSON bodies."""

    auth_resource = "tre"

    @property
    def review(self) -> ReviewClient:
        client: ReviewClient = self.settings[RELEASE_SETTING]
        return client

    def json_body(self) -> Any:
        try:
            return json.loads(self.request.body or b"null")
        except ValueError:
            raise ReleaseError(400, "the request body is not valid JSON") from None

    async def forward(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        status, data = await self.review.call(method, path, body)
        self.reply(status, data)

    def reply(self, status: int, data: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ReleaseError):
            self.log.warning("jupyter-tre: release call refused: %s", value.message)
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, ReleaseError):
            self.clear()
            self.reply(error.status, {"message": error.message})
            return
        super().write_error(status_code, **kwargs)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, ReleaseError):
            status_code = error.status
        super().send_error(status_code, **kwargs)


class RequestsHandler(ReleaseHandler):
    """`GET`: the researcher's requests; `POST {title, description}`: a new draft."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.forward("GET", "/api/requests")

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = text_fields(self.json_body(), ("title", "description"))
        await self.forward("POST", "/api/requests", body)


class RequestHandler(ReleaseHandler):
    @web.authenticated
    @authorized
    async def get(self, request_id: str) -> None:
        await self.forward("GET", f"/api/requests/{request_id}")


FILE_FIELDS = ("path", "description", "context", "population", "suppression")


class RequestFilesHandler(ReleaseHandler):
    """`POST {path, description, context, population, suppression}`: add a project file to
    a draft. The service takes population and suppression as the file's `controls`."""

    @web.authenticated
    @authorized
    async def post(self, request_id: str) -> None:
        fields = text_fields(self.json_body(), FILE_FIELDS)
        root_dir = str(self.contents_manager.root_dir)
        data_roots = self.review.settings.data_roots
        body = {
            "path": check_release_path(fields["path"], root_dir, data_roots),
            "description": fields["description"],
            "context": fields["context"],
            "controls": {
                "population": fields["population"],
                "suppression": fields["suppression"],
            },
        }
        await self.forward("POST", f"/api/requests/{request_id}/files", body)


class RequestSubmitHandler(ReleaseHandler):
    @web.authenticated
    @authorized
    async def post(self, request_id: str) -> None:
        await self.forward("POST", f"/api/requests/{request_id}/submit", {})


def release_handlers() -> list[tuple[str, type[ReleaseHandler]]]:
    return [
        (r"/tre/release/requests", RequestsHandler),
        (rf"/tre/release/requests/{REQUEST_ID}", RequestHandler),
        (rf"/tre/release/requests/{REQUEST_ID}/files", RequestFilesHandler),
        (rf"/tre/release/requests/{REQUEST_ID}/submit", RequestSubmitHandler),
    ]
