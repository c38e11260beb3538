"""PEP 503 pages: devpi's constrained pages read, and clean pages written for workspaces.

Only links into devpi's mirror file store (`/root/pypi/+f/...`) that carry a sha256 are
kept, and each is rewritten to the front's `/files/...`; everything else devpi puts on a
page (forms, other links, metadata attributes) is dropped, so a workspace sees nothing
the front does not also serve.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)

FILES_PREFIX = "/root/pypi/+f/"
"""Where devpi serves the mirror's files (the front serves them at /files/ after checking)."""
_FILE_PATH = re.compile(r"^[0-9a-f]{3}/[0-9a-f]{13}/[A-Za-z0-9._+!-]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileLink:
    path: str
    """The file's path under devpi's /root/pypi/+f/ (and the front's /files/)."""
    filename: str
    sha256: str
    requires_python: str | None = None
    yanked: str | None = None


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))


def anchors(page: str) -> list[dict[str, str | None]]:
    parser = _Anchors()
    parser.feed(page)
    parser.close()
    return parser.anchors


def file_links(page: str, page_path: str) -> list[FileLink]:
    """The mirror files linked from devpi's page at `page_path`, each with its sha256."""
    out: list[FileLink] = []
    for a in anchors(page):
        href = a.get("href")
        if not href:
            continue
        parts = urlsplit(urljoin(page_path, href))
        if not parts.path.startswith(FILES_PREFIX):
            continue
        path = unquote(parts.path[len(FILES_PREFIX) :])
        sha = parts.fragment.removeprefix("sha256=")
        if not _FILE_PATH.fullmatch(path) or not _SHA256.fullmatch(sha):
            continue
        out.append(
            FileLink(
                path=path,
                filename=path.rsplit("/", 1)[1],
                sha256=sha,
                requires_python=a.get("data-requires-python"),
                yanked=a.get("data-yanked"),
            )
        )
    return out


def valid_file_path(path: str) -> bool:
    return bool(_FILE_PATH.fullmatch(path))


def name_and_version(filename: str) -> tuple[NormalizedName, str] | None:
    """(project, version) of a wheel's or sdist's file name; None for anything else."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return name, str(version)


_HEAD = (
    '<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'
    "<title>{title}</title></head><body><h1>{title}</h1>\n"
)


def render_project(name: str, links: list[FileLink]) -> str:
    """The front's page of one project; its links point at the front's own /files/."""
    title = html.escape(f"Links for {name}")
    rows = []
    for link in links:
        attrs = [f'href="/files/{html.escape(link.path)}#sha256={link.sha256}"']
        if link.requires_python is not None:
            attrs.append(f'data-requires-python="{html.escape(link.requires_python)}"')
        if link.yanked is not None:
            attrs.append(f'data-yanked="{html.escape(link.yanked)}"')
        rows.append(f"<a {' '.join(attrs)}>{html.escape(link.filename)}</a><br>\n")
    return _HEAD.format(title=title) + "".join(rows) + "</body></html>\n"


def render_index(project: str, names: list[str]) -> str:
    """The front's root page: the names a project may install."""
    title = html.escape(f"Packages allowed for {project}")
    rows = [f'<a href="{html.escape(n)}/">{html.escape(n)}</a><br>\n' for n in names]
    return _HEAD.format(title=title) + "".join(rows) + "</body></html>\n"
