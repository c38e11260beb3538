"""`tre/release/...` forwards a researcher's release requests to the review service as this
server, with only the documented fields, after checking that each file is a project file."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.extension.audit_service import TOKEN
from tests.extension.files import CSV, PNG
from tests.extension.review_service import ReviewService

pytestmark = pytest.mark.security

FILE_FIELDS = {
    "description": "Counts of admissions by region",
    "context": "Table 1 of the admissions paper",
    "population": "Adults admitted 2020-2024",
    "suppression": "Cells below 10 suppressed, counts rounded to 5",
}
FORWARDED = {
    "description": "Counts of admissions by region",
    "context": "Table 1 of the admissions paper",
    "controls": {
        "population": "Adults admitted 2020-2024",
        "suppression": "Cells below 10 suppressed, counts rounded to 5",
    },
}
"""What the review service gets for FILE_FIELDS: its `controls` object."""


@pytest.fixture
def review_service(jp_asyncio_loop: Any) -> Iterator[ReviewService]:
    service = ReviewService()

    async def start() -> None:
        service.start()

    jp_asyncio_loop.run_until_complete(start())
    yield service
    jp_asyncio_loop.run_until_complete(service.stop())


@pytest.fixture
def extra_env(review_service: ReviewService) -> dict[str, str]:
    return {"TRE_REVIEW_URL": review_service.url}


async def call(jp_fetch: Any, *parts: str, body: dict[str, Any] | None = None) -> Any:
    if body is None:
        response = await jp_fetch("tre", "release", *parts)
    else:
        response = await jp_fetch("tre", "release", *parts, method="POST", body=json.dumps(body))
    return json.loads(response.body)


async def refused(jp_fetch: Any, *parts: str, body: dict[str, Any] | None = None) -> Any:
    with pytest.raises(HTTPClientError) as info:
        await call(jp_fetch, *parts, body=body)
    assert info.value.response is not None
    return info.value.code, json.loads(info.value.response.body)["message"]


@pytest.fixture
def table(jp_root_dir: Path) -> str:
    (jp_root_dir / "outputs").mkdir()
    (jp_root_dir / "outputs" / "table.csv").write_bytes(CSV)
    return "outputs/table.csv"


async def test_a_request_is_created_filled_and_submitted_as_this_server(
    jp_fetch, review_service, table
):
    created = await call(
        jp_fetch, "requests", body={"title": "Table 1", "description": "For a paper"}
    )
    assert created["state"] == "draft"
    rid = created["id"]
    await call(jp_fetch, "requests", rid, "files", body={"path": table, **FILE_FIELDS})
    submitted = await call(jp_fetch, "requests", rid, "submit", body={})
    assert submitted["state"] == "submitted"
    listed = (await call(jp_fetch, "requests"))["requests"]
    assert listed[0]["files"] == [
        {"name": "outputs/table.csv", "verdict": "pass", "summary": "no cell below 10"}
    ]
    assert (await call(jp_fetch, "requests", rid))["id"] == rid

    calls = [(c.method, c.path, c.body) for c in review_service.calls]
    assert calls == [
        ("POST", "/api/requests", {"title": "Table 1", "description": "For a paper"}),
        ("POST", f"/api/requests/{rid}/files", {"path": "outputs/table.csv", **FORWARDED}),
        ("POST", f"/api/requests/{rid}/submit", {}),
        ("GET", "/api/requests", None),
        ("GET", f"/api/requests/{rid}", None),
    ]
    assert {c.authorization for c in review_service.calls} == {f"token {TOKEN}"}


async def test_identity_from_the_browser_is_not_forwarded(jp_fetch, review_service, table):
    spoof = {"user": "someone-else", "project": "other", "permit": "p-9", "owner": "x"}
    created = await call(jp_fetch, "requests", body={"title": "T", "description": "D", **spoof})
    await call(
        jp_fetch, "requests", created["id"], "files", body={"path": table, **FILE_FIELDS, **spoof}
    )
    await call(jp_fetch, "requests", created["id"], "submit", body=spoof)
    bodies = [c.body for c in review_service.calls]
    assert bodies == [
        {"title": "T", "description": "D"},
        {"path": table, **FORWARDED},
        {},
    ]


async def test_the_browsers_credentials_are_not_forwarded(jp_fetch, review_service):
    await jp_fetch("tre", "release", "requests", headers={"Cookie": "_xsrf=abc; session=s"})
    [only] = review_service.calls
    assert only.authorization == f"token {TOKEN}"


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/etc/passwd", 400, "absolute path"),
        ("../outside.csv", 400, "'..' is not allowed"),
        ("outputs/../../outside.csv", 400, "'..' is not allowed"),
        ("outputs/missing.csv", 404, "does not exist"),
        ("outputs", 400, "is not a file"),
        (".", 400, "no file was named"),
        ("link-to-data.csv", 403, "dataset data"),
        ("link-to-data-dir/patients.csv", 403, "dataset data"),
        ("link-outside.csv", 400, "outside the project folder"),
    ],
)
async def test_bad_paths_are_refused_with_a_clear_message(
    jp_fetch, review_service, jp_root_dir, data_root, table, tmp_path, path, status, words
):
    (jp_root_dir / "link-to-data.csv").symlink_to(data_root / "emr" / "patients.csv")
    (jp_root_dir / "link-to-data-dir").symlink_to(data_root / "emr")
    outside = tmp_path / "elsewhere.csv"
    outside.write_bytes(CSV)
    (jp_root_dir / "link-outside.csv").symlink_to(outside)
    created = await call(jp_fetch, "requests", body={"title": "T", "description": "D"})
    code, message = await refused(
        jp_fetch, "requests", created["id"], "files", body={"path": path, **FILE_FIELDS}
    )
    assert (code, words in message) == (status, True), message
    assert [c.path for c in review_service.calls] == ["/api/requests"]


@pytest.mark.parametrize("missing", ["title", "description"])
async def test_missing_fields_are_refused_before_the_service(jp_fetch, review_service, missing):
    body = {"title": "T", "description": "D"}
    body[missing] = "  "
    code, message = await refused(jp_fetch, "requests", body=body)
    assert code == 400 and f'"{missing}" is required' in message
    assert review_service.calls == []


async def test_file_fields_are_all_required(jp_fetch, review_service, table):
    fields = {"path": table, **FILE_FIELDS}
    del fields["suppression"]
    code, message = await refused(jp_fetch, "requests", "1", "files", body=fields)
    assert code == 400 and '"suppression" is required' in message


async def test_request_ids_cannot_reach_other_service_paths(jp_fetch, review_service):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            "tre", "release", "requests", "..%2Fadmin", "submit", method="POST", body="{}"
        )
    assert info.value.code == 404
    assert review_service.calls == []


async def test_the_services_refusal_reaches_the_researcher(jp_fetch, review_service):
    review_service.refuse = "your permit does not allow releases"
    code, message = await refused(jp_fetch, "requests")
    assert (code, message) == (403, "your permit does not allow releases")


async def test_service_down_is_503_with_a_message(jp_fetch, review_service, jp_asyncio_loop):
    await review_service.stop()
    code, message = await refused(jp_fetch, "requests")
    assert code == 503 and "review service cannot be reached" in message


@pytest.mark.parametrize("extra_env", [{}])
async def test_without_a_review_url_release_is_not_available(jp_fetch):
    code, message = await refused(jp_fetch, "requests")
    assert (code, message) == (503, "release requests are not available in this workspace")


async def test_release_needs_authentication(jp_fetch, review_service):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("tre", "release", "requests", headers={"Authorization": "token wrong"})
    assert info.value.code == 403
    assert review_service.calls == []


async def test_an_output_saved_through_the_contents_api_can_be_added(
    jp_fetch, review_service, jp_root_dir, audit_service
):
    """The front end's path for a notebook output: save it under outputs/, then add it."""
    await jp_fetch(
        "api", "contents", "outputs", method="PUT", body=json.dumps({"type": "directory"})
    )
    model = {"type": "file", "format": "base64", "content": base64.b64encode(PNG).decode()}
    await jp_fetch("api", "contents", "outputs/output-1.png", method="PUT", body=json.dumps(model))
    assert (jp_root_dir / "outputs" / "output-1.png").read_bytes() == PNG
    created = await call(jp_fetch, "requests", body={"title": "Figure", "description": "D"})
    added = await call(
        jp_fetch, "requests", created["id"], "files",
        body={"path": "outputs/output-1.png", **FILE_FIELDS},
    )  # fmt: skip
    assert added["files"][0]["name"] == "outputs/output-1.png"
    assert [r.detail["path"] for r in audit_service.of_kind("file_saved")] == [
        "outputs/output-1.png"
    ]
