"""Boundary: the container. Code in the workspace cannot become root, gain a capability or
reach the Docker engine (controls: `tre.hub.spawner.hardening` — non-root user, all
capabilities dropped, no-new-privileges, read-only root filesystem, pids and memory limits,
Docker's default seccomp profile — and the image with its setuid bits stripped).

The attempts run as alice's code in her kernel, once; each case asserts one outcome.
"""

from __future__ import annotations

from typing import Any

import docker
import pytest

from tests.e2e.sites import PROJECT
from tests.security.support import PROBE_PRELUDE, SUITE_MARKS, Parties

pytestmark = SUITE_MARKS

PROBE = (
    PROBE_PRELUDE
    + r"""
import socket, subprocess
lines = open("/proc/self/status").read().splitlines()
status = dict(l.split(":\t", 1) for l in lines if ":\t" in l)
special = subprocess.run(
    ["find", "/", "-xdev", "-type", "f", "(", "-perm", "-4000", "-o", "-perm", "-2000", ")"],
    capture_output=True, text=True).stdout.split()
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
def su():
    done = subprocess.run(["su", "-c", "id -u", "root"], input="", capture_output=True, text=True)
    return (done.returncode, done.stdout.strip())
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
    "caps": {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "setuid-or-setgid-files": special,
    "setuid-root": attempt(lambda: os.setuid(0)),
    "setgid-root": attempt(lambda: os.setgid(0)),
    "su-to-root": su(),
    "new-user-namespace": attempt(lambda: check(libc.unshare(CLONE_NEWUSER))),
    "new-mount-namespace": attempt(lambda: check(libc.unshare(CLONE_NEWNS))),
    "chroot": attempt(lambda: os.chroot("/tmp")),
    "raw-socket": attempt(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
    "packet-socket": attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)),
    "make-a-device-node": attempt(lambda: os.mknod("/tmp/disk", 0o600 | 0o60000, os.makedev(8, 0))),
    "load-a-kernel-module": attempt(lambda: check(libc.syscall(175, None, 0, b""))),
    "docker-socket-present": [
        p for p in ("/var/run/docker.sock", "/run/docker.sock") if os.path.exists(p)],
    "write-core-pattern": attempt(lambda: write("/proc/sys/kernel/core_pattern")),
    "write-etc-passwd": attempt(lambda: write("/etc/passwd")),
    "write-site-packages": attempt(lambda: write(
        next(p for p in __import__("sys").path if p.endswith("site-packages")) + "/planted.pth")),
    "write-sudoers": attempt(lambda: write("/etc/sudoers.d/researcher")),
}))
"""
)


@pytest.fixture(scope="module")
def attempts(parties: Parties) -> dict[str, Any]:
    found: dict[str, Any] = parties.alice.run_json(PROBE)
    return found


def test_the_code_runs_as_a_user_without_privileges(attempts: dict[str, Any]) -> None:
    assert (attempts["uid"], attempts["euid"], attempts["gid"]) == (1000, 1000, 100)
    assert set(attempts["caps"].values()) == {"0000000000000000"}, attempts["caps"]
    assert attempts["no_new_privs"] == "1"
    assert attempts["seccomp"] == "2"  # filter mode: Docker's default profile


def test_no_setuid_or_setgid_file_is_left_in_the_image(attempts: dict[str, Any]) -> None:
    assert attempts["setuid-or-setgid-files"] == []


def test_su_to_root_fails(attempts: dict[str, Any]) -> None:
    returncode, out = attempts["su-to-root"]
    assert returncode != 0 and out != "0", attempts["su-to-root"]


REFUSED = {
    "setuid-root": {"EPERM"},
    "setgid-root": {"EPERM"},
    "new-user-namespace": {"EPERM"},
    "new-mount-namespace": {"EPERM"},
    "chroot": {"EPERM"},
    "raw-socket": {"EPERM"},
    "packet-socket": {"EPERM"},
    "make-a-device-node": {"EPERM"},
    "load-a-kernel-module": {"EPERM"},
    "write-core-pattern": {"EROFS", "EACCES"},
    "write-etc-passwd": {"EROFS"},
    "write-site-packages": {"EROFS"},
    "write-sudoers": {"EROFS", "ENOENT"},
}


@pytest.mark.parametrize("attempt", sorted(REFUSED))
def test_a_privileged_operation_is_refused(attempts: dict[str, Any], attempt: str) -> None:
    outcome = str(attempts[attempt])
    assert outcome.startswith("refused: "), outcome
    assert outcome.removeprefix("refused: ") in REFUSED[attempt], outcome


def test_the_docker_socket_is_not_in_the_workspace(attempts: dict[str, Any]) -> None:
    assert attempts["docker-socket-present"] == []


def test_the_engine_runs_the_container_hardened(parties: Parties) -> None:
    """The same facts from the engine's side: what the spawner asked for is what runs."""
    client = docker.from_env()
    [container] = [
        c
        for c in client.containers.list(filters={"label": f"org.jupyter-tre.project={PROJECT}"})
        if c.name.startswith("tre-alice-")
    ]
    host = container.attrs["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert any(o.startswith("no-new-privileges") for o in host["SecurityOpt"])
    assert host["ReadonlyRootfs"] is True
    assert host["PidsLimit"] and host["PidsLimit"] > 0
    assert host["Memory"] > 0
    assert host["NetworkMode"] not in ("host", "bridge", "default")
    assert host["PidMode"] in ("", "private") and host["IpcMode"] in ("private", "shareable", "")
    assert not host.get("Devices")
    sources = [m["Source"] for m in container.attrs["Mounts"]]
    assert not [s for s in sources if "docker.sock" in s], sources
    assert container.attrs["Config"]["User"] == "1000:100"
