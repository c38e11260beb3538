"""The workspace's contents manager: nothing under a dataset root leaves through the contents
API, no file larger than the limit is read into a browser, only images travel as base64, and
every saved file is confirmed by the audit service before it takes its place.

Saves are staged: the new bytes are written to a hidden file next to the target, hashed,
recorded, and only then renamed over the target. If the audit service does not confirm, the
staged file is removed and the target keeps its previous content, so a failed save leaves
nothing half-written and the person sees the reason in the HTTP error. (A kernel can still
write files directly; those writes are covered by the execute records of the code that made
them, not by this class.)
"""

# jupyter_server 2.21.1 leaves most of its API unannotated.
# mypy: disable-error-code="no-untyped-call"
# jupyter_server's contents API speaks str OS paths; so does this module.
# ruff: noqa: PTH100, PTH105, PTH108, PTH112, PTH114, PTH115, PTH118

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from base64 import b64decode
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

import nbformat
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado import web
from traitlets import Any as AnyTrait
from traitlets import default

from .audit_client import AuditClient, AuditError, AuditRefused
from .files_handler import ImageFilesHandler
from .images import SNIFF_BYTES, image_type, image_type_by_name
from .saves import digest_file, file_saved_detail
from .settings import TreSettings, is_under, load_settings

STAGING_PREFIX = ".~tre-"


class TreContentsManager(AsyncLargeFileManager):
    """`AsyncLargeFileManager` with the TRE's read rules and audited, staged saves."""

    audit = AnyTrait(
        None,
        allow_none=True,
        help="The AuditClient saves are recorded with; set by the jupyter_tre_lab extension. "
        "While it is None every save is refused.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tre: TreSettings = load_settings()

    @default("files_handler_class")
    def _files_handler_class_default(self) -> type[ImageFilesHandler]:
        return ImageFilesHandler

    @default("files_handler_params")
    def _files_handler_params_default(self) -> dict[str, Any]:
        return {}

    # -- reading ----------------------------------------------------------------------------

    async def get(
        self,
        path: str,
        content: bool = True,
        type: str | None = None,
        format: str | None = None,
        require_hash: bool = False,
    ) -> dict[str, Any]:
        path = path.strip("/")
        if content and format == "base64":
            await asyncio.to_thread(self._check_base64_allowed, path)
        model: dict[str, Any] = await super().get(
            path, content=content, type=type, format=format, require_hash=require_hash
        )
        if content and model.get("type") == "file" and model.get("format") == "base64":
            head = b64decode(model["content"][: 4 * SNIFF_BYTES])[:SNIFF_BYTES]
            if image_type(path, head) is None:
                raise self._refusal(path, "it is not an image; only images open as binary content")
        return model

    def _check_base64_allowed(self, path: str) -> None:
        os_path = self._get_os_path(path)
        if os.path.isdir(os_path):
            return
        if image_type_by_name(path) is None:
            raise self._refusal(path, "it is not an image; only images open as binary content")
        try:
            with open(os_path, "rb") as f:  # noqa: PTH123
                head = f.read(SNIFF_BYTES)
        except OSError:
            return  # the read proper reports missing or unreadable files
        if image_type(path, head) is None:
            raise self._refusal(path, "its content is not the image its name says it is")

    @contextlib.contextmanager
    def open(self, os_path: str, *args: Any, **kwargs: Any) -> Iterator[IO[Any]]:
        """Every read of file content goes through here: judge the file actually opened.

        The checks use the open descriptor, not the path, so swapping a symlink between a
        check and the read cannot slip a dataset file through.
        """
        with super().open(os_path, *args, **kwargs) as f:
            self._check_opened(os_path, f.fileno())
            yield f

    def _check_opened(self, os_path: str, fd: int) -> None:
        api_path = self._api_path(os_path)
        real = _real_path_of_fd(fd, os_path)
        if is_under(real, self.tre.data_roots):
            raise self._refusal(
                api_path, f"it is dataset data ({real}); analyse it in a notebook instead"
            )
        size = os.fstat(fd).st_size
        if size > self.tre.max_content_bytes:
            raise self._refusal(
                api_path,
                f"it is {size} bytes and the browser may open at most "
                f"{self.tre.max_content_bytes} bytes (TRE_MAX_CONTENT_BYTES)",
            )

    def _api_path(self, os_path: str) -> str:
        root = os.path.abspath(self.root_dir)
        rel = os.path.relpath(os.path.abspath(os_path), root)
        return rel.replace(os.sep, "/")

    def _refusal(self, path: str, why: str) -> web.HTTPError:
        self.log.warning("jupyter-tre: refused to open %s: %s", path, why)
        return web.HTTPError(403, f"{path} cannot be opened here: {why}")

    # -- copying and checkpoints ----------------------------------------------------------------

    async def copy(self, from_path: str, to_path: str | None = None) -> dict[str, Any]:
        from_path = from_path.strip("/")
        await asyncio.to_thread(self._check_copy_source, from_path)
        result: dict[str, Any] = await super().copy(from_path, to_path)
        return result

    def _check_copy_source(self, path: str) -> None:
        os_path = self._get_os_path(path)
        real = os.path.realpath(os_path)
        if is_under(real, self.tre.data_roots):
            raise web.HTTPError(403, f"{path} cannot be copied: it is dataset data ({real})")
        if os.path.isdir(os_path):
            for top, dirs, files in os.walk(os_path, followlinks=False):
                for name in dirs + files:
                    inner = os.path.realpath(os.path.join(top, name))
                    if is_under(inner, self.tre.data_roots):
                        rel = self._api_path(os.path.join(top, name))
                        raise web.HTTPError(
                            403, f"{path} cannot be copied: {rel} is dataset data ({inner})"
                        )

    async def create_checkpoint(self, path: str) -> dict[str, Any]:
        real = os.path.realpath(self._get_os_path(path.strip("/")))
        if is_under(real, self.tre.data_roots):
            raise web.HTTPError(403, f"{path} cannot be checkpointed: it is dataset data ({real})")
        checkpoint: dict[str, Any] = await super().create_checkpoint(path)
        return checkpoint

    # -- saving -----------------------------------------------------------------------------------

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        path = path.strip("/")
        kind = model.get("type")
        if kind not in ("file", "notebook"):
            result: dict[str, Any] = await super().save(model, path)  # directories, bad types
            return result
        target = self._write_target(path)
        chunk = model.get("chunk")
        if chunk is None:
            return await self._save_whole(model, path, target)
        if kind != "file":
            raise web.HTTPError(400, f'File type "{kind}" is not supported for large file transfer')
        return await self._save_chunk(model, path, target, chunk)

    def _write_target(self, path: str) -> str:
        """The real file a save of `path` writes; refuses data roots and places outside the
        workspace (jupyter_server would follow a symlink there)."""
        os_path = self._get_os_path(path)
        real = str(os.path.realpath(os_path))
        if is_under(real, self.tre.data_roots):
            raise web.HTTPError(
                403,
                f"{path} cannot be saved: it leads to dataset data ({real}), which is read-only; "
                "save your work elsewhere in the workspace",
            )
        root = os.path.realpath(self.root_dir)
        if not is_under(real, (root,)) or real == root:
            raise web.HTTPError(
                403, f"{path} cannot be saved: it leads outside the workspace ({real})"
            )
        if os.path.isdir(real):
            raise web.HTTPError(400, f"{path} cannot be saved: it is a directory")
        return real

    async def _save_whole(self, model: dict[str, Any], path: str, target: str) -> dict[str, Any]:
        """jupyter_server 2.21.1's `AsyncFileContentsManager.save`, writing to a staging file."""
        self.run_pre_save_hooks(model=model, path=path)
        if "content" not in model:
            raise web.HTTPError(400, "No file content provided")
        staging = _staging_path(target, unique=True)
        validation_error: dict[str, Any] = {}
        try:
            if model["type"] == "notebook":
                nb = nbformat.from_dict(model["content"])
                self.check_and_sign(nb, path)
                await self._save_notebook(staging, nb, capture_validation_error=validation_error)
            else:
                await self._save_file(staging, model["content"], model.get("format"))
            await self._audit_and_commit(
                path, staging, target, upload=model.get("format") == "base64"
            )
        except web.HTTPError:
            _remove(staging)
            raise
        except Exception as e:
            _remove(staging)
            self.log.error("Error while saving file: %s %s", path, e, exc_info=True)
            raise web.HTTPError(500, f"Unexpected error while saving file: {path} {e}") from e

        validation_message = None
        if model["type"] == "notebook":
            if not (await self.checkpoints.list_checkpoints(path)):
                await self.create_checkpoint(path)
            self.validate_notebook_model(model, validation_error=validation_error)
            validation_message = model.get("message")
        saved: dict[str, Any] = await self.get(path, content=False)
        if validation_message:
            saved["message"] = validation_message
        self.run_post_save_hooks(model=saved, os_path=target)
        self.emit(data={"action": "save", "path": path})
        return saved

    async def _save_chunk(
        self, model: dict[str, Any], path: str, target: str, chunk: Any
    ) -> dict[str, Any]:
        """One chunk of a large upload; chunks collect in a staging file that replaces the
        target (after the audit confirms) when the last chunk (-1) arrives."""
        if not isinstance(chunk, int) or isinstance(chunk, bool) or (chunk < 1 and chunk != -1):
            raise web.HTTPError(400, f"upload of {path}: chunk {chunk!r} is not 1, 2, ... or -1")
        if "content" not in model:
            raise web.HTTPError(400, "No file content provided")
        staging = _staging_path(target, unique=False)
        try:
            if chunk == 1:
                self.run_pre_save_hooks(model=model, path=path)
                _remove(staging)
                await self._save_file(staging, model["content"], model.get("format"))
            else:
                if os.path.islink(staging):
                    raise web.HTTPError(
                        409,
                        f"upload of {path} was tampered with (staging file is a link); "
                        "upload it again",
                    )
                await self._save_large_file(staging, model["content"], model.get("format"))
            if chunk == -1:
                await self._audit_and_commit(path, staging, target, upload=True)
        except web.HTTPError:
            if chunk in (1, -1):
                _remove(staging)
            raise
        except Exception as e:
            _remove(staging)
            self.log.error("Error while saving file: %s %s", path, e, exc_info=True)
            raise web.HTTPError(500, f"Unexpected error while saving file: {path} {e}") from e
        if chunk != -1:
            return _staged_model(path, staging)
        saved: dict[str, Any] = await self.get(path, content=False)
        self.run_post_save_hooks(model=saved, os_path=target)
        self.emit(data={"action": "save", "path": path})
        return saved

    async def _audit_and_commit(
        self, path: str, staging: str, target: str, *, upload: bool
    ) -> None:
        audit: AuditClient | None = self.audit
        if audit is None:
            raise web.HTTPError(
                503, f"{path} was not saved: the audit is not set up (jupyter_tre_lab not loaded)"
            )
        limit = self.tre.max_record_bytes
        digest = await asyncio.to_thread(digest_file, staging, path, limit)
        detail = file_saved_detail(path, digest, upload=upload, max_record_bytes=limit)
        try:
            await audit.record("file_saved", detail)
        except AuditError as exc:
            status = 403 if isinstance(exc, AuditRefused) else 503
            self.log.warning("jupyter-tre: save of %s not recorded: %s", path, exc.message)
            raise web.HTTPError(
                status, f"{path} was not saved because the audit did not record it: {exc.message}"
            ) from None
        with contextlib.suppress(FileNotFoundError):
            shutil.copymode(target, staging)
        os.replace(staging, target)
        self.log.info(
            "jupyter-tre: saved %s (sha256 %s, %d bytes)", path, digest.sha256, digest.size
        )


def _staging_path(target: str, *, unique: bool) -> str:
    """A hidden file next to `target` (same filesystem, so the final rename is atomic)."""
    directory, name = os.path.split(target)
    tag = uuid.uuid4().hex if unique else "upload"
    return os.path.join(directory, f"{STAGING_PREFIX}{tag}-{name}")


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _staged_model(path: str, staging: str) -> dict[str, Any]:
    """What an intermediate chunk answers: the target's name with the staged size so far."""
    st = os.lstat(staging)
    modified = datetime.fromtimestamp(st.st_mtime, tz=UTC)
    return {
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "type": "file",
        "writable": True,
        "created": modified,
        "last_modified": modified,
        "mimetype": None,
        "content": None,
        "format": None,
        "size": st.st_size,
        "hash": None,
        "hash_algorithm": None,
    }


def _real_path_of_fd(fd: int, fallback_path: str) -> str:
    """The real path of an open file (Linux: /proc/self/fd; elsewhere the path's realpath)."""
    try:
        return str(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return os.path.realpath(fallback_path)
