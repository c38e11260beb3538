"""JupyterHub login for Voila run on its own (`voila <folder>`), inside the summaries container.

This file is mounted read-only into the container and imported by Voila there; it needs
only what the image has (jupyterhub, jupyter_server), nothing of jupyter-tre.

JupyterHub's identity provider for jupyter_server (`JupyterHubIdentityProvider`) does the
OAuth dance with the hub and lets in only people holding the service's access scope. Voila
adds the provider's own routes (`/oauth_callback`, `/logout`) without its base URL, where
jupyter_server prefixes them; behind the hub's proxy they would never be reached. This
subclass prefixes them.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.utils import url_path_join
from jupyterhub.singleuser.extension import JupyterHubIdentityProvider


class SummariesIdentityProvider(JupyterHubIdentityProvider):  # type: ignore[misc]
    """The hub's identity provider with its routes under the service's prefix."""

    def get_handlers(self) -> list[tuple[Any, ...]]:
        prefix = self.hub_auth.base_url
        return [
            (url_path_join(prefix, pattern), *rest) for pattern, *rest in super().get_handlers()
        ]
