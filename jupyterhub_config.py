"""JupyterHub configuration for jupyter-tre: load the site's settings, let tre.hub set the rest."""

from tre.hub import configure
from tre.settings import load_settings

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - provided by JupyterHub
configure(c, load_settings())
