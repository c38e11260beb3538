"""`/files/<path>` for images only, so that Markdown images in notebooks still render.

The file is read through the contents manager (which refuses dataset data and oversized
files), must be a PNG, JPEG, GIF or WebP by both name and content, and is sent inline with
headers that stop the browser from sniffing, executing or saving it as something else.
Everything else is 403 (404 for what does not exist).
"""

# jupyter_server 2.21.1 leaves most of its API unannotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from base64 import b64decode
from typing import Any, NoReturn

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from .images import SNIFF_BYTES, image_type, image_type_by_name


class ImageFilesHandler(JupyterHandler):
    """Serve workspace images inline; refuse every other file and every download."""

    auth_resource = "contents"

    def initialize(self, **_params: Any) -> None:
        """Accepts (and ignores) `files_handler_params` such as the stock handler's `path`."""

    @property
    def content_security_policy(self) -> str:
        # `sandbox` gives a directly opened image a unique origin with scripts disabled.
        return "sandbox; default-src 'none'; img-src 'self'; frame-ancestors 'self'"

    @web.authenticated
    @authorized
    async def head(self, path: str) -> None:
        await self._serve(path, include_body=False)

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        await self._serve(path, include_body=True)

    async def _serve(self, path: str, *, include_body: bool) -> None:
        self.check_xsrf_cookie()
        path = path.strip("/")
        if self.get_argument("download", None) is not None:
            self._deny(path, "downloads are disabled in this workspace")
        if image_type_by_name(path) is None:
            self._deny(path, "only PNG, JPEG, GIF and WebP images are served from /files/")
        cm = self.contents_manager
        if not cm.allow_hidden and await ensure_async(cm.is_hidden(path)):
            raise web.HTTPError(404)
        model = await ensure_async(cm.get(path, type="file", format="base64", content=True))
        data = b64decode(model["content"])
        mime = image_type(path, data[:SNIFF_BYTES])
        if mime is None:
            self._deny(path, "its content is not the image its name says it is")
        self.set_header("Content-Type", mime)
        self.set_header("Content-Disposition", "inline")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Length", str(len(data)))
        if include_body:
            self.write(data)
        await self.finish()

    def _deny(self, path: str, why: str) -> NoReturn:
        self.log.warning("jupyter-tre: refused /files/%s: %s", path, why)
        raise web.HTTPError(403, f"/files/{path}: {why}")
