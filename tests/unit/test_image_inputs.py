"""The workspace image's content hash: stable for the same inputs, new for any change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tre.image import BuildInputs, ImageBuildError, content_hash
from tre.image.build import default_context_dir
from tre.image.inputs import HASH_LENGTH, WHEELS_DIR, assemble_context, read_context

FILES = {"Dockerfile": b"FROM base\n", "requirements.txt": b"six==1.17.0\n"}
ARGS = {"BASE": "tre-base:bookworm", "TRE_VERSION": "0.1.0"}


def test_hash_is_short_hex_and_stable():
    first = content_hash(BuildInputs(dict(FILES), dict(ARGS)))
    assert re.fullmatch(rf"[0-9a-f]{{{HASH_LENGTH}}}", first)
    assert content_hash(BuildInputs(dict(FILES), dict(ARGS))) == first


def test_hash_ignores_the_order_inputs_were_found_in():
    forwards = BuildInputs(dict(FILES), dict(ARGS))
    backwards = BuildInputs(dict(reversed(FILES.items())), dict(reversed(ARGS.items())))
    assert content_hash(forwards) == content_hash(backwards)


@pytest.mark.parametrize(
    "files, args",
    [
        ({**FILES, "requirements.txt": b"six==1.16.0\n"}, ARGS),  # one changed byte
        ({**FILES, "wheels/tre_lab-0.1-py3-none-any.whl": b"PK"}, ARGS),  # an extension wheel
        ({"Dockerfile": FILES["Dockerfile"], "reqs.txt": FILES["requirements.txt"]}, ARGS),
        (FILES, {**ARGS, "BASE": "debian:bookworm-slim"}),
        (FILES, {**ARGS, "TRE_VERSION": "0.2.0"}),
        (FILES, {**ARGS, "base image id": "sha256:0123"}),
    ],
    ids=["content", "wheel added", "renamed", "base", "version", "base id"],
)
def test_any_changed_input_changes_the_hash(files: dict[str, bytes], args: dict[str, str]):
    assert content_hash(BuildInputs(files, args)) != content_hash(BuildInputs(FILES, ARGS))


def test_a_file_boundary_cannot_be_shifted_without_changing_the_hash():
    one = BuildInputs({"a": b"xy", "b": b""})
    other = BuildInputs({"a": b"x", "b": b"y"})
    assert content_hash(one) != content_hash(other)


def test_read_context_keys_are_relative_posix_paths(tmp_path: Path):
    (tmp_path / "Dockerfile").write_bytes(b"FROM x\n")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "a.whl").write_bytes(b"PK")
    assert read_context(tmp_path) == {"Dockerfile": b"FROM x\n", "wheels/a.whl": b"PK"}


def test_read_context_refuses_symlinks(tmp_path: Path):
    (tmp_path / "Dockerfile").write_bytes(b"FROM x\n")
    (tmp_path / "ca.crt").symlink_to("/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(ImageBuildError, match=r"ca\.crt: symbolic link"):
        read_context(tmp_path)


def test_the_same_context_read_twice_hashes_the_same():
    context = default_context_dir()
    first = content_hash(BuildInputs(read_context(context), ARGS))
    assert content_hash(BuildInputs(read_context(context), ARGS)) == first


def test_assemble_adds_extension_wheels(tmp_path: Path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "Dockerfile").write_bytes(b"FROM x\n")
    wheel = tmp_path / "jupyter_tre_lab-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK wheel")
    target = tmp_path / "context"
    assemble_context(source, [wheel], target)
    assert read_context(target) == {
        "Dockerfile": b"FROM x\n",
        f"{WHEELS_DIR}/{wheel.name}": b"PK wheel",
    }


def test_assemble_without_wheels_still_makes_the_wheels_folder(tmp_path: Path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "Dockerfile").write_bytes(b"FROM x\n")
    assemble_context(source, [], tmp_path / "context")
    assert (tmp_path / "context" / WHEELS_DIR).is_dir()


def test_assemble_refuses_what_is_not_a_wheel(tmp_path: Path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "Dockerfile").write_bytes(b"FROM x\n")
    with pytest.raises(ImageBuildError, match=r"not-a-wheel\.tar\.gz: not a wheel"):
        assemble_context(source, [tmp_path / "not-a-wheel.tar.gz"], tmp_path / "context")


def test_assemble_needs_a_dockerfile(tmp_path: Path):
    with pytest.raises(ImageBuildError, match="no Dockerfile"):
        assemble_context(tmp_path, [], tmp_path / "context")
