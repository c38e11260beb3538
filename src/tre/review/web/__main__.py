"""`python -m tre.review.web`: the review service, as JupyterHub runs it."""

from .app import main

main()
