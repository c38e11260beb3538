"""`python -m tre.mirror`: the package mirror as JupyterHub runs it (service tre-mirror)."""

from .service import main

main()
