"""Command lines the image builders run, and the output they read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tre.image import ImageBuildError
from tre.image.base import (
    BASE_PACKAGES,
    BASE_STEPS,
    DEFAULT_SOURCES,
    debian_sources,
    import_args,
    mmdebstrap_command,
    mmdebstrap_phase,
    sources_from_deb822,
    sources_from_one_line,
)
from tre.image.build import BUILD_CA_ID, build_args, build_command, buildkit_step
from tre.image.docker import builds_with_buildkit, client_major, docker_candidates
from tre.image.lock import lock_command, render_lock

MIRROR = ["deb http://deb.debian.org/debian bookworm main"]

# --- mmdebstrap and docker import -----------------------------------------------------------


def test_mmdebstrap_builds_minbase_bookworm_with_the_base_packages(tmp_path: Path):
    argv = mmdebstrap_command(tmp_path / "base.tar", MIRROR, executable="/usr/bin/mmdebstrap")
    assert argv[0] == "/usr/bin/mmdebstrap"
    assert "--variant=minbase" in argv
    assert "--include=python3,python3-venv,python3-pip,ca-certificates,tini" in argv
    assert set(BASE_PACKAGES) == {
        "python3",
        "python3-venv",
        "python3-pip",
        "ca-certificates",
        "tini",
    }
    # suite, target, then the mirrors, as mmdebstrap's positional arguments
    assert argv[-3:] == ["bookworm", str(tmp_path / "base.tar"), MIRROR[0]]


def test_mmdebstrap_strips_setuid_bits_in_a_customize_hook(tmp_path: Path):
    argv = mmdebstrap_command(tmp_path / "base.tar", MIRROR)
    hooks = [a for a in argv if a.startswith("--customize-hook=")]
    assert hooks == ['--customize-hook=find "$1" -xdev -perm /6000 -exec chmod ug-s {} +']


def test_mmdebstrap_needs_a_mirror(tmp_path: Path):
    with pytest.raises(ImageBuildError, match="no Debian mirror"):
        mmdebstrap_command(tmp_path / "base.tar", [])


def test_import_sets_path_and_command_and_labels(tmp_path: Path):
    args = import_args(tmp_path / "base.tar", "tre-base:bookworm", MIRROR)
    assert args[0] == "import"
    assert args[-2:] == [str(tmp_path / "base.tar"), "tre-base:bookworm"]
    changes = [args[i + 1] for i, a in enumerate(args) if a == "--change"]
    assert "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in changes
    assert 'CMD ["/bin/bash"]' in changes
    assert any(c.startswith("LABEL org.jupyter-tre.base.suite=") for c in changes)


def test_mmdebstrap_progress_lines():
    assert mmdebstrap_phase("I: running apt-get update...") == 0
    assert mmdebstrap_phase("I: creating tarball...") == BASE_STEPS - 2
    assert mmdebstrap_phase("I: using /tmp/x as tempdir") is None
    assert mmdebstrap_phase("Get:1 http://deb.debian.org/debian bookworm InRelease") is None


# --- apt sources ----------------------------------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main

Types: deb deb-src
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""


def test_deb822_sources_give_main_of_the_suite_and_its_updates():
    assert sources_from_deb822(DEB822) == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]


def test_one_line_sources_skip_other_suites_options_and_deb_src():
    text = """\
deb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian bookworm main contrib
deb-src http://mirror.example/debian bookworm main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
# deb http://commented.example/debian bookworm main
deb http://mirror.example/debian bookworm-updates contrib
deb http://mirror.example/debian-security bookworm-security main # trailing comment
"""
    assert sources_from_one_line(text) == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian-security bookworm-security main",
    ]


def test_host_mirrors_are_used_when_they_serve_the_suite():
    found = debian_sources({"/etc/apt/sources.list.d/debian.sources": DEB822})
    assert found[0] == "deb http://deb.debian.org/debian bookworm main"
    assert len(found) == 3


def test_debian_mirrors_are_used_when_the_host_is_not_bookworm():
    ubuntu = "deb http://archive.ubuntu.com/ubuntu noble main restricted\n"
    assert debian_sources({"/etc/apt/sources.list": ubuntu}) == list(DEFAULT_SOURCES)
    assert debian_sources({}) == list(DEFAULT_SOURCES)


def test_the_same_mirror_in_two_files_is_listed_once():
    one_line = "deb http://deb.debian.org/debian bookworm main\n"
    found = debian_sources({"/a.list": one_line, "/b.sources": DEB822})
    assert found.count("deb http://deb.debian.org/debian bookworm main") == 1


# --- docker build ---------------------------------------------------------------------------


def test_build_command_passes_the_ca_as_a_secret_only(tmp_path: Path):
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    argv = build_command(
        tmp_path,
        tags=["jupyter-tre/workspace:0123456789abcdef", "jupyter-tre/workspace:latest"],
        args={"TRE_VERSION": "0.1.0", "BASE": "tre-base:bookworm"},
        ca_bundle=ca,
    )
    assert argv[:2] == ["build", "--progress=plain"]
    assert argv[-1] == str(tmp_path)
    assert argv.count("--tag") == 2
    assert "jupyter-tre/workspace:latest" in argv
    assert f"id={BUILD_CA_ID},src={ca}" == argv[argv.index("--secret") + 1]
    build_arg_values = [argv[i + 1] for i, a in enumerate(argv) if a == "--build-arg"]
    assert build_arg_values == ["BASE=tre-base:bookworm", "TRE_VERSION=0.1.0"]
    assert not any(str(ca) in value for value in build_arg_values)


def test_build_command_without_a_ca_has_no_secret(tmp_path: Path):
    argv = build_command(tmp_path, tags=["t:1"], args={}, ca_bundle=None)
    assert "--secret" not in argv


def test_build_args_add_the_index_only_when_given():
    assert build_args(base="b", version="1", pip_index_url=None) == {
        "BASE": "b",
        "TRE_VERSION": "1",
    }
    assert build_args(base="b", version="1", pip_index_url="https://devpi/simple")[
        "PIP_INDEX_URL"
    ] == ("https://devpi/simple")


@pytest.mark.parametrize(
    "line, step",
    [
        ("#7 [python 2/2] RUN --mount=type=secret,id=build_ca set -eu;", ("python", 1, 2)),
        ("#9 [workspace 4/6] COPY --from=python /opt/tre/venv /opt/tre/venv", ("workspace", 3, 6)),
        ("#4 [1/2] FROM docker.io/library/tre-base:bookworm", ("workspace", 0, 2)),
        ("#7 12.31 Collecting six==1.17.0", None),
        ("#7 DONE 93.1s", None),
        ("#3 [internal] load metadata for docker.io/library/tre-base:bookworm", None),
    ],
)
def test_buildkit_progress_lines(line: str, step: tuple[str, int, int] | None):
    assert buildkit_step(line) == step


# --- which docker client can build with BuildKit --------------------------------------------


def test_client_versions_are_read_from_docker_version():
    assert client_major("Docker version 20.10.24+dfsg1, build 297e128") == 20
    assert client_major("Docker version 28.2.2, build e6534b4") == 28
    assert client_major("something else") is None


def test_buildkit_is_built_in_before_23_and_needs_buildx_after():
    assert builds_with_buildkit(20, has_buildx=False)
    assert not builds_with_buildkit(28, has_buildx=False)
    assert builds_with_buildkit(28, has_buildx=True)
    assert not builds_with_buildkit(None, has_buildx=False)


def test_docker_candidates_in_path_order(tmp_path: Path):
    first, second, empty = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder in (first, second, empty):
        folder.mkdir()
    for folder in (first, second):
        (folder / "docker").write_text("#!/bin/sh\n")
        (folder / "docker").chmod(0o755)
    (empty / "docker").write_text("not executable")
    path = ":".join(str(p) for p in (empty, second, first, second))
    assert docker_candidates(path) == [second / "docker", first / "docker"]


# --- the lock -------------------------------------------------------------------------------


def test_lock_mounts_the_ca_read_only_into_a_throwaway_container(tmp_path: Path):
    ca = tmp_path / "ca.crt"
    argv = lock_command(tmp_path, base="tre-base:bookworm", ca_bundle=ca, pip_index_url=None)
    assert argv[:2] == ["run", "--rm"]
    assert f"{ca}:/run/build_ca:ro" in argv
    assert f"{tmp_path}:/in:ro" in argv
    assert argv[argv.index("tre-base:bookworm") + 1 : argv.index("tre-base:bookworm") + 3] == [
        "sh",
        "-c",
    ]


def test_render_lock_sorts_pins_and_keeps_the_header():
    text = render_lock("six==1.17.0\nJinja2==3.1.6\nacro==1.0.2\n", "tre-base:bookworm")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["acro==1.0.2", "Jinja2==3.1.6", "six==1.17.0"]
    assert "GENERATED from requirements.in" in text


def test_render_lock_refuses_what_is_not_a_pin():
    with pytest.raises(ImageBuildError, match="not a name==version pin"):
        render_lock("six==1.17.0\n-e git+https://example/x#egg=x\n", "b")
