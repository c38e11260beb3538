"""Which files count as images the browser may display: name and bytes must both agree.

SVG is deliberately not an image here: it is XML text that can carry script and any
amount of arbitrary text, so serving it would reopen the download path it is meant to close.
"""

from __future__ import annotations

import posixpath

IMAGE_TYPES_BY_EXTENSION = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}

SNIFF_BYTES = 16
"""How many leading bytes `sniff_image` needs to decide."""


def sniff_image(head: bytes) -> str | None:
    """The MIME type that the leading bytes of a file announce, if they are a raster image."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_type_by_name(name: str) -> str | None:
    return IMAGE_TYPES_BY_EXTENSION.get(posixpath.splitext(name)[1].lower())


def image_type(name: str, head: bytes) -> str | None:
    """The image MIME type when the name's extension and the content agree, else None."""
    by_name = image_type_by_name(name)
    return by_name if by_name is not None and sniff_image(head) == by_name else None
