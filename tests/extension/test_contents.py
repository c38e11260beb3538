"""The contents API does not hand out dataset data, large files or non-image binaries."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from tests.extension.files import CSV, PNG

pytestmark = pytest.mark.security


@pytest.fixture
def workspace(jp_root_dir: Path, data_root: Path) -> Path:
    (jp_root_dir / "linked.csv").symlink_to(data_root / "emr" / "patients.csv")
    (jp_root_dir / "datasets").symlink_to(data_root, target_is_directory=True)
    (jp_root_dir / "linked.ipynb").symlink_to(data_root / "emr" / "patients.csv")
    (jp_root_dir / "mine.csv").write_bytes(CSV)
    (jp_root_dir / "big.txt").write_bytes(b"a" * (64 * 1024 + 1))  # limit is 64 KiB in tests
    (jp_root_dir / "small.txt").write_bytes(b"a" * (64 * 1024))
    (jp_root_dir / "img.png").write_bytes(PNG)
    (jp_root_dir / "fake.png").write_bytes(CSV)
    (jp_root_dir / "blob.bin").write_bytes(bytes(range(256)))
    (jp_root_dir / "folder").mkdir()
    (jp_root_dir / "folder" / "inner.csv").symlink_to(data_root / "emr" / "patients.csv")
    return jp_root_dir


async def get(jp_fetch, path: str, **params: str):
    return await jp_fetch("api", "contents", path, params=params)


async def refused(
    jp_fetch, path: str, method: str = "GET", body: str | None = None, **params: str
) -> str:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("api", "contents", path, method=method, body=body, params=params)
    assert info.value.code == 403, info.value
    return json.loads(info.value.response.body)["message"]


@pytest.mark.parametrize(
    "path", ["linked.csv", "linked.ipynb", "datasets/emr/patients.csv", "folder/inner.csv"]
)
async def test_dataset_data_is_not_served(jp_fetch, workspace, path):
    message = await refused(jp_fetch, path)
    assert "dataset data" in message
    assert "P1" not in message


async def test_dataset_data_is_not_served_as_text_or_base64(jp_fetch, workspace):
    await refused(jp_fetch, "linked.csv", format="text", type="file")
    await refused(jp_fetch, "linked.csv", format="base64", type="file")


async def test_listings_and_metadata_are_allowed(jp_fetch, workspace):
    listing = json.loads((await get(jp_fetch, "datasets/emr")).body)
    assert [c["name"] for c in listing["content"]] == ["patients.csv"]
    meta = json.loads((await get(jp_fetch, "linked.csv", content="0")).body)
    assert meta["content"] is None


async def test_size_limit(jp_fetch, workspace):
    message = await refused(jp_fetch, "big.txt")
    assert "TRE_MAX_CONTENT_BYTES" in message
    assert json.loads((await get(jp_fetch, "small.txt")).body)["size"] == 64 * 1024


async def test_base64_only_for_images(jp_fetch, workspace):
    assert "not an image" in await refused(jp_fetch, "mine.csv", format="base64", type="file")
    assert "not the image" in await refused(jp_fetch, "fake.png", format="base64", type="file")
    # Undecodable files fall back to base64 in jupyter_server; that is refused too.
    assert "not an image" in await refused(jp_fetch, "blob.bin")
    model = json.loads((await get(jp_fetch, "img.png", format="base64", type="file")).body)
    assert base64.b64decode(model["content"]) == PNG
    assert json.loads((await get(jp_fetch, "mine.csv")).body)["content"] == CSV.decode()


@pytest.mark.parametrize(
    "source", ["linked.csv", "datasets/emr/patients.csv", "folder", "datasets"]
)
async def test_copies_from_dataset_data_are_refused(jp_fetch, workspace, source):
    body = json.dumps({"copy_from": source})
    message = await refused(jp_fetch, "", method="POST", body=body)
    assert "cannot be copied" in message
    assert not list(workspace.glob("*Copy*"))


async def test_checkpoint_of_dataset_data_is_refused(jp_fetch, workspace):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("api", "contents", "linked.csv", "checkpoints", method="POST", body="")
    assert info.value.code == 403
