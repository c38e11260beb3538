"""The review service's process: one tornado application on 0.0.0.0:<review.port>.

Pages live under the service's prefix (the proxy routes /services/tre-review/ here); the
JSON API answers both under the prefix (browsers) and at /api (workspaces on their
gateway). Run by JupyterHub as a managed service: `python -m tre.review.web`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path

from jupyterhub.services.auth import HubOAuth
from tornado import httpserver, web

from tre.audit.identity import WorkspaceIdentifier
from tre.lifeline import end_with_parent
from tre.settings import Settings, load_settings
from tre.weblog import request_logger

from ..notify import notifier_from_settings
from ..service import ReviewService
from . import api, pages
from .base import ReviewWeb

log = logging.getLogger("tre.review.web")

TOKEN_CACHE_SECONDS = 30
DEFAULT_PREFIX = "/services/tre-review/"


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish({"ok": True})


def make_app(ctx: ReviewWeb) -> web.Application:
    prefix = ctx.prefix
    args = {"ctx": ctx}
    routes: list[tuple[str, type[web.RequestHandler], dict[str, ReviewWeb]]] = []
    for pattern, handler in api.ROUTES:
        routes.append((pattern, handler, args))
        routes.append((prefix.rstrip("/") + pattern, handler, args))
    routes += [(prefix + pattern, handler, args) for pattern, handler in pages.ROUTES]
    return web.Application(
        [
            (r"/health", HealthHandler),
            (prefix.rstrip("/") + "/health", HealthHandler),
            *routes,
        ],
        cookie_secret=secrets.token_bytes(32),
        xsrf_cookies=True,
        login_url=ctx.hub_auth.login_url,
        log_function=request_logger(log, warn_from=400),
    )


def settings_from_env() -> Settings:
    path = os.environ.get("TRE_SETTINGS")
    return load_settings(Path(path) if path else None)


def make_context(settings: Settings, hub_auth: HubOAuth | None = None) -> ReviewWeb:
    auth = hub_auth or HubOAuth(cache_max_age=TOKEN_CACHE_SECONDS)
    service = ReviewService(
        settings,
        db_url=settings.review.db_url,
        max_file_bytes=settings.review.max_file_bytes,
        notifier=notifier_from_settings(settings.review),
    )
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", DEFAULT_PREFIX)
    return ReviewWeb(
        settings=settings,
        service=service,
        hub_auth=auth,
        identifier=WorkspaceIdentifier(auth, settings.policy_dir),
        prefix=prefix if prefix.endswith("/") else prefix + "/",
    )


async def serve(settings: Settings) -> None:
    """Listen on 0.0.0.0:<settings.review.port> until cancelled."""
    ctx = make_context(settings)
    server = httpserver.HTTPServer(make_app(ctx), xheaders=False)
    server.listen(settings.review.port, address="0.0.0.0")  # noqa: S104 - workspaces' gateways
    log.info("tre-review listening on 0.0.0.0:%d%s", settings.review.port, ctx.prefix)
    try:
        await asyncio.Event().wait()
    finally:
        server.stop()
        ctx.service.close()  # and its notifier: queued mail gets a few seconds to go out


def main() -> None:  # pragma: no cover - run by JupyterHub as a managed service
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(name)s] %(message)s")
    end_with_parent()  # a killed hub's restart must find the port free
    try:
        asyncio.run(serve(settings_from_env()))
    except KeyboardInterrupt:  # how the hub stops its managed services
        log.info("tre-review stopped")
