"""The extension's refusal to run a server that is not configured as the image configures it.

A later config file, a command-line flag or a user could swap the authorizer, the contents
manager, the files handler or the websocket connection class, or switch terminals on; each of
those would silently remove a control, so the server must not start.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jupyter_server.base.handlers import AuthenticatedFileHandler
from jupyter_server.files.handlers import FilesHandler
from jupyter_server.serverapp import ServerApp
from tornado.routing import Rule, RuleRouter

from .audited_channels import AuditedChannelsConnection
from .authorizer import TreAuthorizer
from .contents import TreContentsManager
from .files_handler import ImageFilesHandler
from .settings import TreSettings


def problems(serverapp: ServerApp, settings: TreSettings) -> list[str]:
    """Everything about `serverapp` that contradicts the image's configuration."""
    found: list[str] = []
    if not isinstance(serverapp.authorizer, TreAuthorizer):
        found.append(f"ServerApp.authorizer is {_name(serverapp.authorizer)}, not TreAuthorizer")
    cm = serverapp.contents_manager
    if not isinstance(cm, TreContentsManager):
        found.append(f"ServerApp.contents_manager is {_name(cm)}, not TreContentsManager")
    files_class = getattr(cm, "files_handler_class", None)
    if not (isinstance(files_class, type) and issubclass(files_class, ImageFilesHandler)):
        found.append(
            f"ContentsManager.files_handler_class is {files_class!r}, not ImageFilesHandler"
        )
    for rule in _rules(serverapp.web_app.default_router):
        target = rule.target
        if isinstance(target, type) and issubclass(
            target, (AuthenticatedFileHandler, FilesHandler)
        ):
            found.append(f"route {_pattern(rule)} serves raw files with {target.__name__}")
        if isinstance(target, type) and target.__module__.split(".")[0] == "voila":
            # Voila renders notebooks by running them over ZMQ, past the audited websocket.
            found.append(f"route {_pattern(rule)} is Voila's ({target.__name__})")
        serves_terminals = getattr(target, "auth_resource", None) == "terminals"
        if isinstance(target, type) and serves_terminals and not settings.terminals_allowed:
            found.append(f"route {_pattern(rule)} serves terminals, which the permit forbids")
    ws_classes = {
        "ServerApp.kernel_websocket_connection_class": serverapp.kernel_websocket_connection_class,
        "the web app's kernel_websocket_connection_class": serverapp.web_app.settings.get(
            "kernel_websocket_connection_class"
        ),
    }
    for where, cls in ws_classes.items():
        if not (isinstance(cls, type) and issubclass(cls, AuditedChannelsConnection)):
            found.append(f"{where} is {cls!r}, not AuditedChannelsConnection")
    if serverapp.terminals_enabled and not settings.terminals_allowed:
        found.append("ServerApp.terminals_enabled is True but TRE_TERMINALS_ALLOWED is not 1")
    return found


def _rules(router: RuleRouter) -> Iterator[Rule]:
    for rule in router.rules:
        if isinstance(rule.target, RuleRouter):
            yield from _rules(rule.target)
        else:
            yield rule


def _pattern(rule: Rule) -> str:
    regex = getattr(rule.matcher, "regex", None)
    return str(getattr(regex, "pattern", rule.matcher))


def _name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
