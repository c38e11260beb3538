"""Every server-side way of downloading a file is closed; images still render inline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from tests.extension.files import CSV, PNG, SVG

pytestmark = pytest.mark.security


@pytest.fixture
def workspace(jp_root_dir: Path, data_root: Path) -> Path:
    (jp_root_dir / "x.csv").write_bytes(CSV)
    (jp_root_dir / "x.html").write_text("<p>hi</p>", encoding="utf-8")
    (jp_root_dir / "img.png").write_bytes(PNG)
    (jp_root_dir / "IMG.JPEG").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 32)
    (jp_root_dir / "fake.png").write_bytes(CSV)
    (jp_root_dir / "draw.svg").write_bytes(SVG)
    (jp_root_dir / "n.ipynb").write_text(
        json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
        encoding="utf-8",
    )
    (data_root / "emr" / "scan.png").write_bytes(PNG)
    (jp_root_dir / "linked.png").symlink_to(data_root / "emr" / "scan.png")
    return jp_root_dir


async def status(jp_fetch, *parts: str, **kwargs) -> int:
    try:
        response = await jp_fetch(*parts, **kwargs)
    except HTTPClientError as exc:
        return exc.code
    return response.code


@pytest.mark.parametrize(
    ("parts", "kwargs"),
    [
        (("files", "x.csv"), {}),
        (("files", "x.csv"), {"params": {"download": "1"}}),
        (("files", "img.png"), {"params": {"download": "1"}}),
        (("files", "fake.png"), {}),
        (("files", "draw.svg"), {}),
        (("files", "n.ipynb"), {}),
        (("files", "linked.png"), {}),
        (("view", "x.html"), {}),
        (("nbconvert", "html", "n.ipynb"), {}),
        (("nbconvert", "html", "n.ipynb"), {"params": {"download": "true"}}),
        (("api", "nbconvert"), {}),
    ],
)
async def test_download_endpoints_are_denied(jp_fetch, workspace, parts, kwargs):
    assert await status(jp_fetch, *parts, **kwargs) == 403


async def test_post_nbconvert_is_denied(jp_fetch, workspace):
    body = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    assert await status(jp_fetch, "nbconvert", "html", method="POST", body=body) == 403


async def test_files_head_is_denied_for_non_images(jp_fetch, workspace):
    assert await status(jp_fetch, "files", "x.csv", method="HEAD") == 403


async def test_missing_image_is_404(jp_fetch, workspace):
    assert await status(jp_fetch, "files", "nothing.png") == 404


@pytest.mark.parametrize(("name", "mime"), [("img.png", "image/png"), ("IMG.JPEG", "image/jpeg")])
async def test_images_are_served_inline(jp_fetch, workspace, name, mime):
    response = await jp_fetch("files", name)
    assert response.code == 200
    assert response.body == (workspace / name).read_bytes()
    assert response.headers["Content-Type"] == mime
    assert response.headers["Content-Disposition"] == "inline"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("sandbox")


async def test_terminals_are_not_served(jp_fetch, workspace):
    # The image config disables them, so the routes do not exist at all.
    assert await status(jp_fetch, "api", "terminals") == 404
    assert await status(jp_fetch, "api", "terminals", method="POST", body="{}") == 404
    assert await status(jp_fetch, "terminals", "websocket", "1") == 404


@pytest.mark.parametrize("extra_env", [{"TRE_TERMINALS_ALLOWED": "1"}])
@pytest.mark.parametrize("jp_argv", [["--ServerApp.terminals_enabled=True"]])
async def test_terminals_when_allowed_and_the_authorizer_as_a_second_line(jp_fetch, jp_serverapp):
    assert await status(jp_fetch, "api", "terminals") == 200
    # Had the self-check been bypassed, the authorizer would still refuse terminals.
    authorizer = jp_serverapp.authorizer
    from dataclasses import replace

    authorizer.tre = replace(authorizer.tre, terminals_allowed=False)
    assert await status(jp_fetch, "api", "terminals") == 403
    assert await status(jp_fetch, "api", "terminals", method="POST", body="{}") == 403


async def test_kernelspec_resources_only_from_the_image(jp_fetch, jp_data_dir: Path):
    # The python3 logo comes from ipykernel, inside sys.prefix (read-only in the image).
    response = await jp_fetch("kernelspecs", "python3", "logo-64x64.png")
    assert response.code == 200
    # A kernelspec the researcher wrote under JUPYTER_DATA_DIR cannot serve files.
    (jp_data_dir / "kernels" / "echo" / "patients.csv").write_bytes(CSV)
    assert await status(jp_fetch, "kernelspecs", "echo", "patients.csv") == 403


async def test_permissions_api_reports_the_denials(jp_fetch):
    response = await jp_fetch(
        "api",
        "me",
        params={"permissions": json.dumps({"nbconvert": ["read"], "contents": ["read"]})},
    )
    permissions = json.loads(response.body)["permissions"]
    assert (permissions["nbconvert"], permissions["contents"]) == ([], ["read"])
