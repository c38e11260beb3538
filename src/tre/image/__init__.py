"""Container images of the TRE: the registry-free base and the researchers' workspace.

Runs on the admin host. Invariant: images are built only from Debian packages
and pinned Python packages, the build's CA bundle never reaches an image, and
an image is named by the content hash of what it was built from.
"""

from __future__ import annotations

from .base import DEFAULT_BASE_TAG, BaseImage, build_base_image, debian_sources
from .build import (
    CONTENT_HASH_LABEL,
    DEFAULT_REPOSITORY,
    ImageInfo,
    build_workspace_image,
    default_context_dir,
)
from .docker import DockerCli, find_docker
from .errors import ImageBuildError
from .inputs import BuildInputs, content_hash
from .progress import Progress

__all__ = [
    "CONTENT_HASH_LABEL",
    "DEFAULT_BASE_TAG",
    "DEFAULT_REPOSITORY",
    "BaseImage",
    "BuildInputs",
    "DockerCli",
    "ImageBuildError",
    "ImageInfo",
    "Progress",
    "build_base_image",
    "build_workspace_image",
    "content_hash",
    "debian_sources",
    "default_context_dir",
    "find_docker",
]
