"""Who may do what on the workspace server: JupyterHub's scope check, minus every way of
downloading a file.

Denied whatever the scopes: nbconvert (`/nbconvert/*`, `/api/nbconvert`), the stock `/files/`
and `/view/` handlers, terminals unless the permit allows them, kernelspec resources outside
the read-only image, and everything while the extension has not passed its self-check.
A denial makes jupyter_server answer 403.
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import TYPE_CHECKING, Any

from jupyter_server.base.handlers import AuthenticatedFileHandler, FilesRedirectHandler
from jupyter_server.files.handlers import FilesHandler
from jupyter_server.kernelspecs.handlers import KernelSpecResourceHandler
from jupyter_server.view.handlers import ViewHandler
from jupyterhub.singleuser.extension import JupyterHubAuthorizer, JupyterHubIdentityProvider

from .settings import TreSettings, is_under, load_settings

if TYPE_CHECKING:
    from jupyter_server.auth.identity import User
    from jupyter_server.base.handlers import JupyterHandler

CHECKED_SETTING = "jupyter_tre_lab.self_check_passed"
"""Set in the tornado settings by the extension once its self-check has passed."""

DOWNLOAD_HANDLERS: tuple[type[Any], ...] = (
    AuthenticatedFileHandler,
    FilesHandler,
    FilesRedirectHandler,
    ViewHandler,
)
"""jupyter_server 2.21.1's handlers that hand out raw files (`FilesRedirectHandler` itself
never asks the authorizer; it only redirects to `/files/`, which is denied)."""

DENIED_RESOURCES = frozenset({"nbconvert"})


class TreAuthorizer(JupyterHubAuthorizer):  # type: ignore[misc]
    """JupyterHub's `access:servers` check (when the Hub identity provider is in use; plain
    allow otherwise, as in in-process tests) after the TRE's denials."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tre: TreSettings = load_settings()
        trusted = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
        self.trusted_prefixes: tuple[str, ...] = tuple(sorted(trusted))

    def is_authorized(
        self, handler: JupyterHandler, user: User, action: str, resource: str
    ) -> bool:
        why = self.denial(handler, action, resource)
        if why is not None:
            self.log.warning(
                "jupyter-tre: denied %s %s (%s on %s) for %s: %s",
                handler.request.method,
                handler.request.path,
                action,
                resource,
                getattr(user, "username", "?"),
                why,
            )
            return False
        if isinstance(self.identity_provider, JupyterHubIdentityProvider):
            return bool(super().is_authorized(handler, user, action, resource))
        return True

    def denial(self, handler: JupyterHandler, action: str, resource: str) -> str | None:
        """Why this request is denied whatever the person's scopes, or None."""
        if not handler.settings.get(CHECKED_SETTING):
            return "the jupyter_tre_lab extension has not passed its self-check"
        if resource in DENIED_RESOURCES:
            return f"{resource} is disabled in this workspace (it exports files)"
        if isinstance(handler, DOWNLOAD_HANDLERS):
            return f"{type(handler).__name__} serves raw files; downloads are disabled"
        if resource == "terminals" and not self.tre.terminals_allowed:
            return "terminals are not allowed by this project's permit"
        if isinstance(handler, KernelSpecResourceHandler):
            return self._kernelspec_denial(handler)
        return None

    def _kernelspec_denial(self, handler: KernelSpecResourceHandler) -> str | None:
        """Kernel logos may come from the read-only image, never from a writable kernelspec
        (a researcher could put any file in one under $JUPYTER_DATA_DIR)."""
        kwargs = handler.path_kwargs or {}
        name, rel = kwargs.get("kernel_name"), kwargs.get("path")
        if not isinstance(name, str) or not isinstance(rel, str):
            return "kernelspec resource request without kernel name and path"
        try:
            spec = handler.kernel_spec_manager.get_kernel_spec(name)
        except Exception:  # an unknown kernel: nothing to serve
            return f"no kernelspec named {name!r}"
        if inspect.isawaitable(spec):
            if inspect.iscoroutine(spec):
                spec.close()
            return "kernelspec resources are served only from local kernelspecs"
        real = os.path.realpath(os.path.join(spec.resource_dir, rel))  # noqa: PTH118
        if is_under(real, self.tre.data_roots) or not is_under(real, self.trusted_prefixes):
            return f"kernelspec resource {real} is outside the read-only image"
        return None
