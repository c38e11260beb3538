"""The server extension's entry point: wire the audit client, the context endpoint, the
release request proxy and the kernel event recorder, then refuse to run unless the server
uses every TRE control."""

# jupyter_server 2.21.1 leaves most of its API unannotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from typing import cast

from jupyter_server.extension.application import ExtensionApp

from .audit_client import AuditClient
from .audited_channels import AUDIT_SETTING
from .authorizer import CHECKED_SETTING
from .contents import TreContentsManager
from .context import CONTEXT_SETTING, ContextHandler
from .kernel_events import KERNEL_ACTIONS_SCHEMA, KernelEventRecorder
from .release import RELEASE_SETTING, ReviewClient, release_handlers
from .self_check import problems
from .settings import load_settings


class TreLabApp(ExtensionApp):
    """jupyter-tre's server extension (defence in depth and the audit's first witness)."""

    name = "jupyter_tre_lab"
    load_other_extensions = True

    audit: AuditClient | None = None
    recorder: KernelEventRecorder | None = None
    review: ReviewClient | None = None

    def initialize(self, argv: object = None) -> None:
        """Any failure while loading is fatal: a server without this extension must not run."""
        try:
            super().initialize()
        except Exception:
            self.log.critical("jupyter-tre: the extension failed to load", exc_info=True)
            raise SystemExit(1) from None  # passes through jupyter_server's extension loader

    def initialize_settings(self) -> None:
        serverapp = self.serverapp
        if serverapp is None:
            raise RuntimeError("jupyter_tre_lab was initialised without a server")
        try:
            settings = load_settings()
            found = problems(serverapp, settings)
        except Exception as exc:
            found = [f"the extension could not check the server: {exc}"]
        if found:
            for problem in found:
                self.log.critical("jupyter-tre: refusing to start: %s", problem)
            serverapp.exit(1)  # SystemExit passes through jupyter_server's extension loader
            return
        self.audit = AuditClient(settings)
        self.recorder = KernelEventRecorder(self.audit, self.log)
        self.review = ReviewClient(settings)
        cast(TreContentsManager, serverapp.contents_manager).audit = self.audit  # self-checked
        if serverapp.event_logger is None:
            raise RuntimeError("the server has no event logger; kernel events cannot be recorded")
        serverapp.event_logger.add_listener(schema_id=KERNEL_ACTIONS_SCHEMA, listener=self.recorder)
        self.settings.update(
            {
                AUDIT_SETTING: self.audit,
                CONTEXT_SETTING: settings,
                RELEASE_SETTING: self.review,
                CHECKED_SETTING: True,
            }
        )
        if not settings.audit_url:
            self.log.error("jupyter-tre: TRE_AUDIT_URL is not set; every execution will be refused")
        if not settings.review_url:
            self.log.warning("jupyter-tre: TRE_REVIEW_URL is not set; no release requests here")

    def initialize_handlers(self) -> None:
        self.handlers.append((r"/tre/context", ContextHandler))
        self.handlers.extend(release_handlers())

    async def stop_extension(self) -> None:
        if self.recorder is not None and self.audit is not None:
            await self.recorder.drain(self.audit.settings.audit_timeout)
        if self.audit is not None:
            await self.audit.aclose()
        if self.review is not None:
            await self.review.aclose()
