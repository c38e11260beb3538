"""A managed service ends with the hub that started it.

JupyterHub starts `tre-audit` and `tre-review` as child processes and gives them a fresh
API token (and OAuth client secret) every time it starts. When the hub is killed outright
(SIGKILL, the OOM killer) its children live on; the restarted hub then starts new ones,
which cannot listen because the orphans still hold the ports, while the orphans answer
with credentials the hub no longer accepts for logins. Asking the kernel to send SIGTERM
when the parent dies (Linux's PR_SET_PDEATHSIG) ends the orphan at once, even when it is
blocked, so the restarted hub's own copy takes the port. What the service was doing dies
with it, as in any crash: its stores are made for that (see docs/explanation/recovery.md).

Services that are not ours (jupyterhub-idle-culler) run as `python -m tre.lifeline MODULE
ARG...`: the same request, then an exec of `python -m MODULE ARG...` in the same process
(the pid the hub knows stays; the kernel keeps the death signal across exec).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from typing import NoReturn

log = logging.getLogger("tre.lifeline")

PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""


def end_with_parent() -> bool:
    """Have the kernel send this process SIGTERM when its parent dies; exit now if the parent
    died already. False (and a warning) where the kernel cannot do this (not Linux)."""
    parent = os.getppid()
    if not sys.platform.startswith("linux"):
        log.warning("not on Linux: this service will outlive a hub that is killed")
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        log.warning("prctl(PR_SET_PDEATHSIG) failed (%s): the service may outlive its hub", errno)
        return False
    if os.getppid() != parent:  # the parent died before the kernel was told to watch it
        log.error("the process that started this service has gone; exiting")
        raise SystemExit(1)
    return True


def main(argv: list[str] | None = None) -> NoReturn:
    """`python -m tre.lifeline MODULE [ARG...]`: `python -m MODULE ARG...`, which ends with
    its parent."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python -m tre.lifeline MODULE [ARG...]", file=sys.stderr)
        raise SystemExit(2)
    end_with_parent()
    # The module's name and arguments are the hub configuration's, never a user's.
    os.execv(sys.executable, [sys.executable, "-m", *args])  # noqa: S606


if __name__ == "__main__":
    main()
