"""Every save and upload is recorded once, with the hash of what is on disk, before it counts."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from tests.extension.files import PNG

pytestmark = pytest.mark.security


async def put(jp_fetch, path: str, model: dict) -> dict:
    response = await jp_fetch("api", "contents", path, method="PUT", body=json.dumps(model))
    return json.loads(response.body)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(root: Path) -> list[Path]:
    return list(root.rglob(".~tre-*"))


async def test_text_save_is_recorded_with_content(jp_fetch, jp_root_dir, audit_service):
    text = "import pandas as pd\nprint('é')\n"
    model = await put(jp_fetch, "analysis.py", {"type": "file", "format": "text", "content": text})
    assert model["path"] == "analysis.py"
    on_disk = (jp_root_dir / "analysis.py").read_bytes()
    assert on_disk == text.encode()
    [record] = audit_service.of_kind("file_saved")
    assert record.detail == {
        "path": "analysis.py", "sha256": sha(on_disk), "size": len(on_disk),
        "upload": False, "content": text,
    }  # fmt: skip
    assert leftovers(jp_root_dir) == []


async def test_notebook_save_records_the_file_as_written(jp_fetch, jp_root_dir, audit_service):
    nb = {
        "cells": [
            {"id": "c1", "cell_type": "code", "source": "1 + 1", "metadata": {},
             "outputs": [], "execution_count": None}
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    await put(jp_fetch, "work.ipynb", {"type": "notebook", "content": nb})
    on_disk = (jp_root_dir / "work.ipynb").read_bytes()
    [record] = audit_service.of_kind("file_saved")
    assert record.detail["sha256"] == sha(on_disk)
    assert record.detail["content"] == on_disk.decode()
    assert (jp_root_dir / ".ipynb_checkpoints" / "work-checkpoint.ipynb").exists()


async def test_upload_of_an_image_is_flagged_and_has_no_text(jp_fetch, jp_root_dir, audit_service):
    await put(
        jp_fetch,
        "img.png",
        {"type": "file", "format": "base64", "content": base64.b64encode(PNG).decode()},
    )
    [record] = audit_service.of_kind("file_saved")
    assert record.detail == {
        "path": "img.png",
        "sha256": sha(PNG),
        "size": len(PNG),
        "upload": True,
    }


async def test_chunked_upload_is_recorded_once_when_complete(jp_fetch, jp_root_dir, audit_service):
    data = ("x = 1\n" * 5000).encode()
    chunks = [data[:10000], data[10000:20000], data[20000:]]
    for number, chunk in zip([1, 2, -1], chunks, strict=True):
        model = {"type": "file", "format": "base64", "chunk": number,
                 "content": base64.b64encode(chunk).decode(), "name": "big.py"}  # fmt: skip
        reply = await put(jp_fetch, "big.py", model)
        assert reply["path"] == "big.py"
        if number != -1:
            assert not (jp_root_dir / "big.py").exists(), "the file appears only once recorded"
            assert audit_service.of_kind("file_saved") == []
    assert (jp_root_dir / "big.py").read_bytes() == data
    [record] = audit_service.of_kind("file_saved")
    assert (record.detail["sha256"], record.detail["size"], record.detail["upload"]) == (
        sha(data),
        len(data),
        True,
    )
    assert "content_omitted" in record.detail  # 30 kB of text with the 32 KiB record limit
    assert leftovers(jp_root_dir) == []


@pytest.mark.parametrize("failure", ["stopped", "refuse"])
async def test_save_fails_visibly_and_keeps_the_old_content(
    jp_fetch, jp_root_dir, audit_service, failure
):
    (jp_root_dir / "analysis.py").write_text("old = True\n", encoding="utf-8")
    if failure == "stopped":
        await audit_service.stop()
    else:
        audit_service.mode = "refuse"
    with pytest.raises(HTTPClientError) as info:
        await put(
            jp_fetch, "analysis.py", {"type": "file", "format": "text", "content": "new = True\n"}
        )
    assert info.value.code == (503 if failure == "stopped" else 403)
    message = json.loads(info.value.response.body)["message"]
    assert "was not saved because the audit did not record it" in message
    if failure == "refuse":
        assert audit_service.refuse_message in message
    assert (jp_root_dir / "analysis.py").read_text(encoding="utf-8") == "old = True\n"
    assert leftovers(jp_root_dir) == []


async def test_failed_chunked_upload_leaves_nothing(jp_fetch, jp_root_dir, audit_service):
    audit_service.mode = "refuse"
    first = {
        "type": "file",
        "format": "base64",
        "chunk": 1,
        "content": base64.b64encode(b"a").decode(),
    }
    await put(jp_fetch, "up.bin", first)
    with pytest.raises(HTTPClientError):
        await put(jp_fetch, "up.bin", {**first, "chunk": -1})
    assert not (jp_root_dir / "up.bin").exists()
    assert leftovers(jp_root_dir) == []


async def test_copy_is_recorded_as_a_save(jp_fetch, jp_root_dir, audit_service):
    (jp_root_dir / "a.py").write_text("print(1)\n", encoding="utf-8")
    await jp_fetch("api", "contents", "", method="POST", body=json.dumps({"copy_from": "a.py"}))
    [record] = audit_service.of_kind("file_saved")
    assert record.detail["path"] == "a-Copy1.py"
    assert record.detail["sha256"] == sha(b"print(1)\n")


async def test_save_through_a_symlink_into_the_data_root_is_refused(
    jp_fetch, jp_root_dir, data_root, audit_service
):
    (jp_root_dir / "linked.csv").symlink_to(data_root / "emr" / "patients.csv")
    (jp_root_dir / "datasets").symlink_to(data_root, target_is_directory=True)
    before = (data_root / "emr" / "patients.csv").read_bytes()
    for path in ["linked.csv", "datasets/emr/new.py"]:
        with pytest.raises(HTTPClientError) as info:
            await put(jp_fetch, path, {"type": "file", "format": "text", "content": "overwritten"})
        assert info.value.code == 403
        assert "dataset data" in json.loads(info.value.response.body)["message"]
    assert (data_root / "emr" / "patients.csv").read_bytes() == before
    assert not (data_root / "emr" / "new.py").exists()
    assert audit_service.of_kind("file_saved") == []


async def test_save_through_a_symlink_inside_the_workspace_writes_the_target(
    jp_fetch, jp_root_dir, audit_service
):
    (jp_root_dir / "real.py").write_text("old\n", encoding="utf-8")
    (jp_root_dir / "alias.py").symlink_to(jp_root_dir / "real.py")
    await put(jp_fetch, "alias.py", {"type": "file", "format": "text", "content": "new\n"})
    assert (jp_root_dir / "alias.py").is_symlink()
    assert (jp_root_dir / "real.py").read_text(encoding="utf-8") == "new\n"
