"""`GET <base_url>tre/context`: the project, permit and datasets this workspace was started
for, as the spawner set them. For display only; identity always comes from the Hub."""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from .settings import TreSettings

CONTEXT_SETTING = "jupyter_tre_lab.settings"


class ContextHandler(APIHandler):
    auth_resource = "tre"

    @web.authenticated
    @authorized
    def get(self) -> None:
        settings: TreSettings = self.settings[CONTEXT_SETTING]
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(context_of(settings)))


def context_of(settings: TreSettings) -> dict[str, object]:
    return {
        "project": settings.project,
        "permit": settings.permit,
        "purpose": settings.purpose,
        "expiry": settings.expiry,
        "datasets": list(settings.datasets),
        "terminals_allowed": settings.terminals_allowed,
    }
