"""The one way `tre.image` talks to the Docker engine: the `docker` command.

Invariant: every engine call goes through `DockerCli`, and a failed call
raises `ImageBuildError` with the command and the engine's own words; the
functions that only build command lines or read version strings are pure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageBuildError

BUILDKIT_BUILTIN_BEFORE = 23
"""Docker CLIs before 23.0 carry their own BuildKit client; later ones need buildx."""

ENGINE_HINT = (
    "Start it (`systemctl start docker`, or `dockerd &` where there is no systemd) "
    "and make sure this user may use it (root, or a member of the docker group)."
)

_VERSION = re.compile(r"(\d+)\.(\d+)")


def client_major(version_output: str) -> int | None:
    """The major version in `docker --version` output ("Docker version 20.10.24+dfsg1, ...")."""
    match = _VERSION.search(version_output)
    return int(match.group(1)) if match else None


def builds_with_buildkit(major: int | None, has_buildx: bool) -> bool:
    """Whether a docker CLI of this major version can run `DOCKER_BUILDKIT=1 docker build`."""
    if has_buildx:
        return True
    return major is not None and major < BUILDKIT_BUILTIN_BEFORE


def docker_candidates(path_env: str) -> list[Path]:
    """Every executable called `docker` on `path_env`, in PATH order, without repeats."""
    found: list[Path] = []
    for folder in path_env.split(os.pathsep):
        if not folder:
            continue
        candidate = Path(folder) / "docker"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            resolved = candidate.resolve()
            if resolved not in found:
                found.append(resolved)
    return found


@dataclass(frozen=True)
class DockerCli:
    """A `docker` command line client at a known path."""

    executable: Path

    def command(self, *args: str) -> list[str]:
        """The argv that runs `docker args...` with this client."""
        return [str(self.executable), *args]

    def run(
        self,
        *args: str,
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
        what: str | None = None,
    ) -> str:
        """Run a short docker command and return its standard output (stripped)."""
        argv = self.command(*args)
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=None if env is None else dict(env),
            )
        except subprocess.TimeoutExpired as exc:
            raise ImageBuildError(
                f"`{' '.join(argv)}` did not finish in {timeout:.0f} s; is the Docker engine hung?"
            ) from exc
        except OSError as exc:
            raise ImageBuildError(f"cannot run {self.executable}: {exc.strerror}") from exc
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()
            raise ImageBuildError(
                f"{what or '`docker ' + args[0] + '`'} failed (exit {done.returncode}): {said}"
            )
        return done.stdout.strip()

    def stream(
        self,
        args: Sequence[str],
        on_line: Callable[[str], None],
        *,
        env: Mapping[str, str] | None = None,
        what: str,
        keep: int = 40,
    ) -> None:
        """Run a long docker command, handing each output line to `on_line`.

        On failure the error carries the last `keep` lines, where docker and
        the failing step say what went wrong.
        """
        stream_command(self.command(*args), on_line, env=env, what=what, keep=keep)

    def version_output(self) -> str:
        """`docker --version` (needs no engine)."""
        return self.run("--version", timeout=30)

    def has_buildx(self) -> bool:
        """Whether the buildx plugin answers for this client."""
        try:
            self.run("buildx", "version", timeout=30)
        except ImageBuildError:
            return False
        return True

    def supports_buildkit(self) -> bool:
        """Whether this client can build with BuildKit (built in, or through buildx)."""
        major = client_major(self.version_output())
        return builds_with_buildkit(major, has_buildx=False) or self.has_buildx()

    def engine_version(self) -> str:
        """The engine's version; `ImageBuildError` saying so when the engine does not answer."""
        try:
            return self.run("version", "--format", "{{.Server.Version}}", timeout=60)
        except ImageBuildError as exc:
            raise ImageBuildError(
                f"The Docker engine is not running or not reachable from {self.executable} "
                f"({exc}). {ENGINE_HINT}"
            ) from exc

    def image_id(self, ref: str) -> str | None:
        """The full ID of the local image `ref`, or None when there is none."""
        argv = self.command("image", "inspect", "--format", "{{.Id}}", ref)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ImageBuildError(f"`{' '.join(argv)}` failed: {exc}") from exc
        if done.returncode == 0:
            return done.stdout.strip() or None
        if "no such image" in done.stderr.lower():
            return None
        raise ImageBuildError(f"`docker image inspect {ref}` failed: {done.stderr.strip()}")

    def image_ids(self, *filters: str, include_intermediate: bool = False) -> set[str]:
        """Full IDs of the local images matching every `filter` (docker's `--filter` syntax)."""
        args = ["images", "--quiet", "--no-trunc"]
        if include_intermediate:
            args.append("--all")
        for f in filters:
            args += ["--filter", f]
        return {line for line in self.run(*args).splitlines() if line}

    def inspect_image(self, ref: str) -> dict[str, object]:
        """`docker image inspect` of one image, as a dict."""
        loaded = json.loads(self.run("image", "inspect", ref))
        if not isinstance(loaded, list) or len(loaded) != 1 or not isinstance(loaded[0], dict):
            raise ImageBuildError(f"`docker image inspect {ref}` returned {loaded!r}")
        return loaded[0]

    def image_labels(self, ref: str) -> dict[str, str]:
        """The labels of a local image."""
        config = self.inspect_image(ref).get("Config")
        labels = config.get("Labels") if isinstance(config, dict) else None
        return {str(k): str(v) for k, v in (labels or {}).items()}

    def image_size(self, ref: str) -> int:
        """The size in bytes of a local image, base layers included."""
        size = self.inspect_image(ref).get("Size")
        return int(size) if isinstance(size, int) else 0

    def tag(self, image: str, ref: str) -> None:
        """Point the tag `ref` at `image`."""
        self.run("tag", image, ref)

    def remove_images(self, ids: Sequence[str]) -> None:
        """Remove the given images (untagged ones; tags are never forced away)."""
        if ids:
            self.run("image", "rm", *ids, what="removing the build's leftover images")


def stream_command(
    argv: Sequence[str],
    on_line: Callable[[str], None],
    *,
    env: Mapping[str, str] | None = None,
    what: str,
    keep: int = 40,
) -> None:
    """Run `argv`, handing each line of its merged output to `on_line`; raise with its tail."""
    tail: deque[str] = deque(maxlen=keep)
    try:
        with subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=None if env is None else dict(env),
        ) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                tail.append(line)
                on_line(line)
            returncode = proc.wait()
    except OSError as exc:
        raise ImageBuildError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from exc
    if returncode != 0:
        said = "\n".join(tail)
        raise ImageBuildError(f"{what} failed (exit {returncode}). Last output:\n{said}")


def find_docker(path_env: str | None = None, *, require_buildkit: bool = True) -> DockerCli:
    """The first `docker` client on PATH (that can build with BuildKit, if required).

    A host may carry several clients (a distribution's 20.10 with built-in
    BuildKit, a newer one without the buildx plugin); the error names each one
    and why it was passed over.
    """
    candidates = docker_candidates(os.environ.get("PATH", "") if path_env is None else path_env)
    if not candidates:
        raise ImageBuildError(
            "The docker command is not installed: install the Debian package docker.io "
            "(apt-get install docker.io) and start the engine."
        )
    if not require_buildkit:
        return DockerCli(candidates[0])
    passed_over: list[str] = []
    for path in candidates:
        cli = DockerCli(path)
        if cli.supports_buildkit():
            return cli
        passed_over.append(f"{path} ({cli.version_output()}, no buildx plugin)")
    raise ImageBuildError(
        "No docker client here can build with BuildKit, which the workspace image needs "
        "to keep the build's CA bundle out of every layer: "
        + "; ".join(passed_over)
        + ". Install the buildx plugin (Debian: docker-buildx; Docker's packages: "
        "docker-buildx-plugin), or use Debian bookworm's docker.io 20.10 client."
    )
