"""jupyter-tre: a Jupyter-based trusted research environment.

For the secondary use of linked, pseudonymised health data (an EHDS secure processing environment).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jupyter-tre")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
