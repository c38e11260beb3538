"""The workspace image, from the outside: who it runs as, what it holds, what it leaves out.

Every container here runs with `--network none`: nothing in these checks may
depend on reaching anything.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.docker_images import WorkspaceBuild
from tests.support import REPO as REPO_ROOT
from tre.image import CONTENT_HASH_LABEL, DockerCli, build_workspace_image, find_docker
from tre.image.build import default_context_dir

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    # The first test may wait for a cold build of base and workspace image.
    pytest.mark.timeout(2400),
]

PINNED_IMPORTS = {
    # distribution: module, for every name==version pin in requirements.in
    "jupyterhub": "jupyterhub",
    "jupyterlab": "jupyterlab",
    "jupyter-server": "jupyter_server",
    "scanpy": "scanpy",
    "nibabel": "nibabel",
    "pysam": "pysam",
    "pydicom": "pydicom",
    "acro": "acro",
    "voila": "voila",
}
UNPINNED_IMPORTS = {
    "pandas": "pandas",
    "numpy": "numpy",
    "anndata": "anndata",
    "matplotlib": "matplotlib",
    "ipykernel": "ipykernel",
}


def run(
    docker: DockerCli,
    image: str,
    *command: str,
    user: str | None = None,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `command` in a fresh container of `image` with no network at all."""
    args = ["run", "--rm", "--network", "none"]
    if stdin is not None:
        args.append("--interactive")
    if user is not None:
        args += ["--user", user]
    done = subprocess.run(
        docker.command(*args, image, *command),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check:
        assert done.returncode == 0, f"{command} exited {done.returncode}: {done.stderr}"
    return done


def python(docker: DockerCli, image: str, source: str) -> str:
    """Run a Python script as the image's default user; its standard output."""
    return run(docker, image, "python", "-", stdin=source).stdout


def pins(text: str) -> dict[str, str]:
    """name==version pins in requirements or `pip freeze` text, by normalised name."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def pins_in(requirements: Path) -> dict[str, str]:
    return pins(requirements.read_text(encoding="utf-8"))


# --- who the container runs as ------------------------------------------------------------


def test_runs_as_researcher_uid_1000_by_default(docker_engine: DockerCli, workspace_image: str):
    out = run(docker_engine, workspace_image, "sh", "-c", 'id -u; id -g; id -un; echo "$HOME"')
    assert out.stdout.split() == ["1000", "100", "researcher", "/home/researcher"]


def test_image_config_entrypoint_command_user_labels(
    docker_engine: DockerCli, workspace_build: WorkspaceBuild
):
    config = docker_engine.inspect_image(workspace_build.info.tag)["Config"]
    assert isinstance(config, dict)
    assert config["User"] == "1000:100"
    assert config["Entrypoint"] == ["/usr/bin/tini", "-g", "--"]
    assert config["Cmd"] == ["jupyterhub-singleuser"]
    assert config["Labels"][CONTENT_HASH_LABEL] == workspace_build.info.content_hash
    assert workspace_build.info.tag.endswith(":" + workspace_build.info.content_hash)
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONNOUSERSITE"] == "1"
    assert env["PATH"].startswith("/opt/tre/venv/bin:")


def test_no_file_has_setuid_or_setgid_bits(docker_engine: DockerCli, workspace_image: str):
    # As root, so that no directory is unreadable to the search.
    out = run(docker_engine, workspace_image, "find", "/", "-xdev", "-perm", "/6000", user="0")
    assert out.stdout == ""


def test_su_cannot_gain_root(docker_engine: DockerCli, workspace_image: str):
    out = run(docker_engine, workspace_image, "su", "-c", "id -u", "root", check=False)
    assert out.returncode != 0
    assert out.stdout.strip() != "0"
    assert (
        run(docker_engine, workspace_image, "sh", "-c", "command -v sudo", check=False).stdout == ""
    )


# --- the software environment cannot be changed by the researcher ---------------------------


def test_venv_is_root_owned_and_not_writable_by_the_researcher(
    docker_engine: DockerCli, workspace_image: str
):
    roots = ("/opt/tre", "/usr/local/share/jupyter")
    not_root = run(docker_engine, workspace_image, "find", *roots, "!", "-user", "root")
    assert not_root.stdout == ""
    writable = run(docker_engine, workspace_image, "find", *roots, "-writable")
    assert writable.stdout == ""
    attempt = python(
        docker_engine,
        workspace_image,
        "import pathlib, sysconfig\n"
        "target = pathlib.Path(sysconfig.get_paths()['purelib']) / 'evil.py'\n"
        "try:\n"
        "    target.write_text('x = 1')\n"
        "    print('WROTE', target)\n"
        "except PermissionError:\n"
        "    print('DENIED')\n",
    )
    assert attempt.strip() == "DENIED"


def test_pip_cannot_change_the_environment(docker_engine: DockerCli, workspace_image: str):
    # The attack: uninstall a locked package (no network needed to try).
    out = run(
        docker_engine,
        workspace_image,
        "sh",
        "-c",
        "pip uninstall --yes six; echo rc=$?; python -c 'import six; print(six.__version__)'",
        check=False,
    )
    assert "rc=0" not in out.stdout
    assert "Permission denied" in out.stderr
    assert out.stdout.split()[-1] == pins_in(default_context_dir() / "requirements.txt")["six"]


def test_user_site_packages_are_ignored(docker_engine: DockerCli, workspace_image: str):
    # The attack: drop a module into ~/.local's site-packages and import it.
    script = (
        "import os, site, sys, subprocess\n"
        "user_site = site.getusersitepackages()\n"
        "os.makedirs(user_site, exist_ok=True)\n"
        "open(os.path.join(user_site, 'planted.py'), 'w').write('PLANTED = True')\n"
        "print(os.environ.get('PYTHONNOUSERSITE'), sys.flags.no_user_site)\n"
        "child = subprocess.run([sys.executable, '-c', 'import planted'], capture_output=True)\n"
        "print(child.returncode)\n"
    )
    assert python(docker_engine, workspace_image, script).split() == ["1", "1", "1"]


# --- what is installed ----------------------------------------------------------------------


def test_python_packages_import_at_the_pinned_versions(
    docker_engine: DockerCli, workspace_image: str
):
    wanted = pins_in(default_context_dir() / "requirements.in")
    assert set(wanted) == set(PINNED_IMPORTS), "update PINNED_IMPORTS with requirements.in"
    modules = {**PINNED_IMPORTS, **UNPINNED_IMPORTS}
    script = (
        "import importlib, importlib.metadata, json\n"
        f"modules = {modules!r}\n"
        "for module in modules.values():\n"
        "    importlib.import_module(module)\n"
        "print(json.dumps({d: importlib.metadata.version(d) for d in modules}))\n"
    )
    found = json.loads(python(docker_engine, workspace_image, script))
    for dist, version in wanted.items():
        assert found[dist] == version, dist
    assert int(found["pandas"].split(".")[0]) < 3  # scanpy 1.11.5 needs pandas < 3
    assert found["jupyterlab"].startswith("4.")


def test_installed_distributions_are_exactly_the_lock(
    docker_engine: DockerCli, workspace_image: str
):
    locked = pins_in(default_context_dir() / "requirements.txt")
    frozen = pins(run(docker_engine, workspace_image, "pip", "freeze").stdout)
    # Extension wheels may add distributions; none may move or drop a pin.
    assert {k: frozen.get(k) for k in locked} == locked


def test_python_and_r_kernels_are_listed(docker_engine: DockerCli, workspace_image: str):
    out = run(docker_engine, workspace_image, "jupyter", "kernelspec", "list", "--json")
    specs = json.loads(out.stdout)["kernelspecs"]
    assert {"python3", "ir"} <= set(specs)
    assert specs["ir"]["resource_dir"].startswith("/usr/local/share/jupyter/kernels/")


KERNEL_SCRIPT = """
from jupyter_client.manager import start_new_kernel

for name, code in (("python3", "print(6 * 7)"), ("ir", "cat(6 * 7)")):
    km, kc = start_new_kernel(kernel_name=name, startup_timeout=120)
    try:
        msg_id = kc.execute(code)
        out = []
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        print(name, "".join(out).strip())
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
"""


def test_python_and_r_kernels_run_code(docker_engine: DockerCli, workspace_image: str):
    assert python(docker_engine, workspace_image, KERNEL_SCRIPT).splitlines() == [
        "python3 42",
        "ir 42",
    ]


def test_jupyterhub_singleuser_answers(docker_engine: DockerCli, workspace_image: str):
    out = run(docker_engine, workspace_image, "jupyterhub-singleuser", "--version")
    assert out.stdout.strip() == "6.1.1"


def test_no_apt_lists_or_caches(docker_engine: DockerCli, workspace_image: str):
    out = run(
        docker_engine,
        workspace_image,
        "find",
        "/var/lib/apt/lists",
        "/var/cache/apt",
        "-type",
        "f",
        user="0",
    )
    assert out.stdout == ""


# --- the build's CA stays out, and the build leaves nothing behind --------------------------


def certificate_needles(pem_file: Path) -> list[bytes]:
    """Byte strings that betray a copy of the certificates in `pem_file`, as PEM or DER."""
    needles = []
    text = pem_file.read_text(encoding="ascii", errors="replace")
    for body in re.findall(
        r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S
    ):
        lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
        needles.append(lines[len(lines) // 2].encode("ascii"))  # a PEM line, key material
        der = base64.b64decode("".join(lines))
        needles.append(der[len(der) // 2 : len(der) // 2 + 48])
    return needles


def _find_in_stream(stream: IO[bytes], needles: list[bytes]) -> bytes | None:
    overlap = max(len(n) for n in needles) - 1
    previous = b""
    while chunk := stream.read(1 << 20):
        window = previous + chunk
        for needle in needles:
            if needle in window:
                return needle
        previous = window[-overlap:]
    return None


def image_files_containing(docker: DockerCli, image: str, needles: list[bytes]) -> Iterator[str]:
    """Every file, in every layer of `image` (base included), that contains a needle."""
    with subprocess.Popen(docker.command("save", image), stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as saved:
            for member in saved:
                if not member.isfile():
                    continue
                data = saved.extractfile(member)
                assert data is not None
                if member.name.endswith("layer.tar"):
                    with tarfile.open(fileobj=data, mode="r|") as layer:
                        for entry in layer:
                            content = layer.extractfile(entry) if entry.isfile() else None
                            if content is not None and _find_in_stream(content, needles):
                                yield f"{member.name}:{entry.name}"
                elif _find_in_stream(data, needles):
                    yield member.name
        assert proc.wait() == 0


def test_the_build_ca_is_in_no_layer_of_the_image(
    docker_engine: DockerCli, workspace_image: str, host_added_cas: list[Path]
):
    if not host_added_cas:
        pytest.skip("SKIPPED LOUDLY: this host trusts no CA of its own to look for")
    needles = [n for ca in host_added_cas for n in certificate_needles(ca)]
    assert needles, f"no certificate found in {host_added_cas}"
    listed = run(docker_engine, workspace_image, "ls", "-A", "/usr/local/share/ca-certificates")
    assert listed.stdout == ""
    assert list(image_files_containing(docker_engine, workspace_image, needles)) == []


def test_the_needle_search_finds_a_planted_ca(
    docker_engine: DockerCli, host_added_cas: list[Path], tmp_path: Path
):
    # The control for the test above: the same search finds the CA in an image that has it.
    if not host_added_cas:
        pytest.skip("SKIPPED LOUDLY: this host trusts no CA of its own to look for")
    context = tmp_path / "planted"
    context.mkdir()
    (context / "ca.crt").write_bytes(host_added_cas[0].read_bytes())
    (context / "Dockerfile").write_text("FROM scratch\nCOPY ca.crt /etc/planted/ca.crt\n")
    tag = "jupyter-tre/test-planted-ca:latest"
    docker_engine.run("build", "--quiet", "--tag", tag, str(context))
    try:
        hits = list(
            image_files_containing(docker_engine, tag, certificate_needles(host_added_cas[0]))
        )
    finally:
        docker_engine.run("image", "rm", tag)
    assert any(hit.endswith("etc/planted/ca.crt") for hit in hits)


def test_the_build_left_no_untagged_image(
    docker_engine: DockerCli, workspace_build: WorkspaceBuild
):
    new = workspace_build.images_after - workspace_build.images_before
    untagged = [
        image for image in sorted(new) if not docker_engine.inspect_image(image).get("RepoTags")
    ]
    assert untagged == []
    assert not docker_engine.image_ids("dangling=true", f"label={CONTENT_HASH_LABEL}")


def test_a_second_build_reuses_the_image(workspace_build: WorkspaceBuild, tmp_path: Path):
    again = build_workspace_image(docker=find_docker(), tmp_dir=tmp_path)
    assert not again.built
    assert again.tag == workspace_build.info.tag
    assert again.image_id == workspace_build.info.image_id


# --- the jupyter-tre Lab extension --------------------------------------------------------

PAGE_CONFIG = REPO_ROOT / "extensions/jupyter-tre-lab/jupyter-config/labconfig/page_config.json"

EXTENSION_FACTS = r"""
import json, os, pathlib, sys
prefix = pathlib.Path(sys.prefix)
static = prefix / "share/jupyter/lab/static"
config = prefix / "etc/jupyter/jupyter_server_config.json"
page = prefix / "etc/jupyter/labconfig/page_config.json"
lab = prefix / "share/jupyter/labextensions/@jupyter-tre/lab/package.json"
print(json.dumps({
    "bundles": "\n".join(p.read_text(errors="replace") for p in static.glob("*.js")),
    "server_config": json.loads(config.read_text()),
    "page_config": json.loads(page.read_text()),
    "lab_extension": json.loads(lab.read_text())["name"],
    "voila_leftovers": sorted(
        str(p) for pattern in (
            "etc/jupyter/*.d/voila.json", "etc/jupyter/nbconfig/*/voila.json",
            "share/jupyter/labextensions/@voila-dashboards",
        ) for p in prefix.glob(pattern)
    ),
    "owners": {
        str(p): (p.stat().st_uid, oct(p.stat().st_mode & 0o777)) for p in (config, page, lab)
    },
}))
"""


def test_the_extension_is_installed_root_owned_with_its_configuration(
    docker_engine: DockerCli, workspace_image: str
):
    facts = json.loads(python(docker_engine, workspace_image, EXTENSION_FACTS))
    assert facts["lab_extension"] == "@jupyter-tre/lab"
    server = facts["server_config"]["ServerApp"]
    assert server["jpserver_extensions"] == {
        "jupyter_tre_lab": True,
        "voila.server_extension": False,
    }
    assert facts["voila_leftovers"] == []
    assert server["authorizer_class"].startswith("jupyter_tre_lab.")
    assert server["kernel_websocket_connection_class"].startswith("jupyter_tre_lab.")
    assert facts["page_config"] == json.loads(PAGE_CONFIG.read_text(encoding="utf-8"))
    for path, (uid, mode) in facts["owners"].items():
        assert uid == 0 and not int(mode, 8) & 0o022, (path, uid, mode)


def test_every_disabled_plugin_is_a_plugin_of_the_images_jupyterlab(
    docker_engine: DockerCli, workspace_image: str
):
    """A renamed plugin id would silently stay enabled: each must exist in the build."""
    facts = json.loads(python(docker_engine, workspace_image, EXTENSION_FACTS))
    disabled = facts["page_config"]["disabledExtensions"]
    assert len(disabled) >= 12
    missing = [plugin for plugin in disabled if f'"{plugin}"' not in facts["bundles"]]
    assert not missing, missing
