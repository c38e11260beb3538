"""The hub side: JupyterHub configuration, the project spawner, roles, networks and firewall.

Never imports `tre.pseudonym` or `tre.ingest`: keys stay on the ingest host.
"""

from .config import configure

__all__ = ["configure"]
