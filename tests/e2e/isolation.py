"""The isolation probe every workspace backend must pass, run from inside a workspace.

`probe_workspace(user, project, gateway, folder)` runs `INSIDE` through the kernel of the user's
running workspace, with a stand-in outside host (`OutsideHost`), a listener on this
machine's main address and one on the workspace's gateway (a port that is not allowed),
and returns what the code saw. The outside host must see no connection at all.
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path

from tests.e2e.hubclient import HubUser
from tests.e2e.netns import HostListener, OutsideHost, main_address

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
"""A one-pixel PNG: an image type the workspace may still show inline."""

BAIT = r"""
import json, os
os.makedirs(work, exist_ok=True)
walk = sorted(os.walk("/data/clinical-records"))
first = next(os.path.join(r, f) for r, _, fs in walk for f in sorted(fs))
open(f"{work}/table.csv", "w").write("a,b\n1,2\n")
open(f"{work}/page.html", "w").write("<h1>hello</h1>")
nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
open(f"{work}/notebook.ipynb", "w").write(json.dumps(nb))
with open(f"{work}/big.bin", "wb") as f:
    f.truncate(30 * 1024 * 1024)
open(f"{work}/plot.png", "wb").write(bytes.fromhex(png_hex))
if not os.path.islink(f"{work}/data-link"):
    os.symlink("/data/clinical-records", f"{work}/data-link")
print(json.dumps({"inside": os.path.relpath(first, "/data/clinical-records"),
                  "token": os.environ["JUPYTERHUB_API_TOKEN"]}))
"""


def download_bait(folder: str) -> str:
    """Kernel code that plants, under `folder` of the workspace, one file of each kind a
    download path might serve (a table, HTML, a notebook, a file over the size limit, an
    image) and a link to a dataset; it prints the path of a dataset file under that link
    (`inside`) and the server's own Hub token (`token`) as JSON."""
    return f"work = {folder!r}\npng_hex = {PNG.hex()!r}\n" + BAIT


INSIDE = r"""
import json, os, socket
def attempt(fn):
    try:
        return "ok: " + str(fn())
    except OSError as e:
        return "refused: " + (e.strerror or type(e).__name__)
def write(path):
    with open(path, "w") as f:
        f.write("x")
def connect(host, port):
    with socket.create_connection((host, port), timeout=2) as s:
        return s.recv(64).decode()
lines = open("/proc/self/status").read().splitlines()
status = dict(l.split(":\t", 1) for l in lines if ":\t" in l)
mounts = sorted(l.split()[4] for l in open("/proc/self/mountinfo"))
data = {d: sorted(os.listdir("/data/" + d))[:3] for d in sorted(os.listdir("/data"))}
first_file = next(os.path.join(r, f) for r, _, fs in os.walk("/data/clinical-records") for f in fs)
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "cap_eff": status["CapEff"], "cap_bnd": status["CapBnd"], "no_new_privs": status["NoNewPrivs"],
    "datasets": sorted(data), "mounts": mounts,
    "write_data": attempt(lambda: write("/data/gbm-mri/new")),
    "write_data_file": attempt(lambda: write(first_file)),
    "chmod_data": attempt(lambda: os.chmod(first_file, 0o777)),
    "write_root": attempt(lambda: write("/usr/local/planted")),
    "write_home": attempt(lambda: write("/home/researcher/.bashrc")),
    "write_tmp": attempt(lambda: write("/tmp/scratch")),
    "write_work": attempt(lambda: write("/home/researcher/work/probe.txt")),
    "dns": attempt(lambda: socket.getaddrinfo("pypi.org", 443)),
    "outside": attempt(lambda: connect(OUTSIDE, 80)),
    "host_main": attempt(lambda: connect(HOST_MAIN, HOST_PORT)),
    "gateway_other_port": attempt(lambda: connect(GATEWAY, GATEWAY_PORT)),
    "pids_max": open("/sys/fs/cgroup/pids/pids.max").read().strip(),
    "mem_limit": open("/sys/fs/cgroup/memory/memory.limit_in_bytes").read().strip(),
    "env": {k: os.environ.get(k) for k in ("PYTHONNOUSERSITE", "JUPYTERHUB_DISABLE_USER_CONFIG",
                                           "TRE_PROJECT", "TRE_PERMIT")},
}))
"""

GBM_DATASETS = sorted(
    [
        "clinical-records",
        "gbm-mri",
        "gbm-mri-nifti",
        "gbm-variants",
        "gbm-alignments",
        "gbm-pathology",
        "gbm-single-cell",
    ]
)
"""The datasets gbm-linkage's permit grants (and so the only ones under /data)."""

WORKSPACE_MOUNTS = {f"/data/{d}" for d in GBM_DATASETS} | {
    "/home/researcher/work",
    "/tmp",  # the workspace's tmpfs
    "/resources",  # the project's read-only resources (tre resources add)
}
"""Every mount a gbm-linkage workspace must have, beyond Docker's own."""

DOCKER_OWN_MOUNTS = {
    "/",
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/mqueue",
    "/dev/shm",
    "/sys",
    "/sys/fs/cgroup",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/dev/console",
}


def unexpected_mounts(mounts: list[str]) -> set[str]:
    """Mounts that are neither the workspace's nor Docker's own (must be empty)."""
    extra = set(mounts) - WORKSPACE_MOUNTS - DOCKER_OWN_MOUNTS
    return {m for m in extra if not m.startswith(("/proc/", "/sys/", "/dev/"))}


def probe_workspace(user: HubUser, project: str, gateway: str, folder: Path) -> dict[str, object]:
    """Facts read by `INSIDE` from inside `user`'s running workspace of `project`, whose
    network gateway (the host's address facing it) is `gateway`."""
    with (
        OutsideHost(folder) as outside,
        contextlib.closing(HostListener(str(main_address()))) as host_main,
        contextlib.closing(HostListener(gateway)) as gateway_listener,
    ):
        code = (
            f"OUTSIDE={str(outside.addr)!r}; HOST_MAIN={str(host_main.address)!r}; "
            f"HOST_PORT={host_main.port}; GATEWAY={gateway!r}; "
            f"GATEWAY_PORT={gateway_listener.port}\n" + INSIDE
        )
        facts: dict[str, object] = json.loads(user.execute(project, code))
        assert outside.events("tcp") == [], "the outside host saw a connection"
    return facts
