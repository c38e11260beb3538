"""Publication in a real browser: a patients' representative reads what was released, only.

A site with the summaries service on (Voila in its own container). Outputs of gbm-linkage go
through the airlock on the host: one request is released (a table and a figure), one is
approved but not released, one only submitted. pat, a patients' representative, logs in
through the OIDC provider in Debian's Chromium, opens the list of summaries and the project's
summary, and sees the released outputs and nothing else; the register and the catalogue
render. pat cannot reach a workspace, the review queue or anything else, and the Voila
kernel behind the page refuses code. Screenshots go to tests/e2e/artifacts/publication-*.png.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.browser import chromium, close_page, log_in, screenshot
from tests.e2e.sites import PROJECT, Site, running_site
from tre.publish.build import current_build
from tre.publish.summaries import CONTAINER_NAME
from tre.review import Controls, ReviewService

pytestmark = [
    pytest.mark.docker,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(1200),
]

RELEASED_TABLE = "grade,patients\nII,28\nIII,71\nIV,218\n"
UNRELEASED_TABLE = "grade,patients\nUNRELEASEDROW,33\nIII,40\n"
CONTROLS = Controls(population="GBM cohort 2018-2025", suppression="no cell below 10")
SUMMARIES = "/services/tre-summaries"


def png() -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(["II", "III", "IV"], [28, 71, 218])
    ax.set_title("Patients by WHO grade")
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def through_the_airlock(site: Site) -> dict[str, str]:
    """Three requests of gbm-linkage: released, approved only, submitted only."""
    work = site.settings.workspaces_dir / PROJECT
    work.mkdir(parents=True, exist_ok=True)
    files = {
        "patients_by_grade.csv": RELEASED_TABLE.encode(),
        "grade_bars.png": png(),
        "unreleased_counts.csv": UNRELEASED_TABLE.encode(),
        "submitted_counts.csv": UNRELEASED_TABLE.encode(),
    }
    for name, content in files.items():
        (work / name).write_bytes(content)
    svc = ReviewService(site.settings)
    try:

        def request(title: str, names: list[str], author: str = "alice") -> str:
            req = svc.create_request(author, PROJECT, title)
            for name in names:
                svc.add_file(
                    req.id,
                    author,
                    name,
                    description=f"<b>{name}</b> <script>window.pwned = 1</script>",
                    context="Descriptive table for the paper",
                    controls=CONTROLS,
                )
            svc.submit(req.id, author)
            return req.id

        released = request("Patients by WHO grade", ["patients_by_grade.csv", "grade_bars.png"])
        approved = request("NOT-YET-RELEASED approved", ["unreleased_counts.csv"], "bob")
        submitted = request("NOT-YET-RELEASED submitted", ["submitted_counts.csv"])
        for rid in (released, approved):
            svc.start_review(rid, "olivia")
            svc.approve(rid, "olivia")
            svc.approve(rid, "oscar")
        svc.release(released, "alice")
    finally:
        svc.close()
    return {"released": released, "approved": approved, "submitted": submitted}


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, workspace_image: str
) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("publication")
    with running_site(root, demo_silos, workspace_image, publish=True) as s:
        yield s


@pytest.fixture(scope="module")
def requests(site: Site) -> dict[str, str]:
    ids = through_the_airlock(site)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the service republishes every 5 s here
        build = current_build(site.settings)
        if build is not None:
            summary = json.loads((build / "projects" / PROJECT / "summary.json").read_text())
            if summary["releases"]:
                return ids
        time.sleep(1)
    raise AssertionError("the release was not published within 120 s")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def pat(site: Site, browser: Browser) -> Iterator[BrowserContext]:
    context = log_in(browser, site.url, "pat")
    try:
        yield context
    finally:
        context.close()


def open_page(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(url)
    return page


def test_the_summary_shows_released_outputs_and_nothing_else(
    site: Site, requests: dict[str, str], pat: BrowserContext
) -> None:
    index = open_page(pat, f"{site.url}{SUMMARIES}/voila/render/index.ipynb")
    expect(index.get_by_text("how our patients' data is used")).to_be_visible()
    expect(index.get_by_role("link", name=re.compile("Linking imaging"))).to_be_visible()
    screenshot(index, "publication-index")

    page = open_page(pat, f"{site.url}{SUMMARIES}/voila/render/{PROJECT}.ipynb")
    expect(page.get_by_role("heading", name="Patients by WHO grade")).to_be_visible()
    expect(page.get_by_role("cell", name="218")).to_be_visible()
    expect(page.locator("img")).to_have_count(1)
    expect(page.get_by_text("Identify imaging and molecular markers")).to_be_visible()
    # A researcher's text is shown as text, never run as markup.
    expect(page.get_by_text("<script>window.pwned = 1</script>").first).to_be_visible()
    assert page.evaluate("window.pwned") is None
    screenshot(page, "publication-summary")
    content = page.content()
    for never in ("NOT-YET-RELEASED", "UNRELEASEDROW", "unreleased_counts", "submitted_counts"):
        assert never not in content, never
    for key in ("approved", "submitted"):
        assert requests[key] not in content
    close_page(page)
    index.close()


def test_the_register_and_the_catalogue_render(
    site: Site, requests: dict[str, str], pat: BrowserContext
) -> None:
    register = open_page(pat, f"{site.url}{SUMMARIES}/voila/render/register.ipynb")
    expect(register.get_by_text("gbm-linkage-2026").first).to_be_visible()
    expect(register.get_by_role("link", name=re.compile("CSV"))).to_be_visible()
    screenshot(register, "publication-register")
    catalogue = open_page(pat, f"{site.url}{SUMMARIES}/voila/render/catalogue.ipynb")
    expect(catalogue.get_by_text("Glioblastoma brain imaging (DICOM)").first).to_be_visible()
    expect(catalogue.get_by_role("link", name=re.compile("Turtle"))).to_be_visible()
    screenshot(catalogue, "publication-catalogue")
    register.close()
    catalogue.close()


@pytest.mark.parametrize(
    "path",
    [
        "/hub/spawn/pat/gbm-linkage",
        "/user/alice/gbm-linkage/lab",
        "/user/alice/gbm-linkage/api/contents/",
        "/services/tre-review/",
        "/services/tre-review/api/requests",
        "/hub/api/users",
        "/hub/admin",
    ],
)
def test_a_patient_representative_reaches_nothing_else(
    site: Site, requests: dict[str, str], pat: BrowserContext, path: str
) -> None:
    response = pat.request.get(f"{site.url}{path}", max_redirects=5)
    body = response.text()
    assert response.status in (401, 403, 404) or "403" in body or "not allowed" in body.lower(), (
        response.status,
        body[:300],
    )
    for never in ("NOT-YET-RELEASED", "UNRELEASEDROW", "IV,218"):
        assert never not in body


def test_people_without_the_scope_are_refused(site: Site, browser: Browser) -> None:
    alice = log_in(browser, site.url, "alice")  # a researcher
    try:
        response = alice.request.get(f"{site.url}{SUMMARIES}/voila/render/{PROJECT}.ipynb")
        assert response.status == 403, response.status
    finally:
        alice.close()


KERNEL_PROBE = """
async () => {
  const cfg = JSON.parse(document.getElementById('jupyter-config-data').textContent);
  const url = `ws://${location.host}${cfg.baseUrl}api/kernels/${cfg.kernelId}/channels`;
  const ws = new WebSocket(url);
  const seen = [];
  ws.onmessage = (e) => { try { seen.push(JSON.parse(e.data)); } catch (err) {} };
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
  const send = (id, type, content) => ws.send(JSON.stringify({
    header: {msg_id: id, msg_type: type, username: 'pat', session: 'probe', version: '5.3',
             date: new Date().toISOString()},
    parent_header: {}, metadata: {}, content: content, channel: 'shell', buffers: []}));
  send('probe-exec', 'execute_request', {code: "open('/tmp/pwned', 'w').write('x')",
       silent: false, store_history: false, user_expressions: {}, allow_stdin: false,
       stop_on_error: true});
  send('probe-comm', 'comm_info_request', {});
  await new Promise((ok) => setTimeout(ok, 8000));
  ws.close();
  return seen.filter((m) => m.parent_header && m.parent_header.msg_id)
             .map((m) => [m.parent_header.msg_id, m.header.msg_type]);
}
"""


def test_the_voila_kernel_runs_no_code_sent_to_it(
    site: Site, requests: dict[str, str], pat: BrowserContext
) -> None:
    page = open_page(pat, f"{site.url}{SUMMARIES}/voila/render/{PROJECT}.ipynb")
    expect(page.get_by_role("heading", name="Patients by WHO grade")).to_be_visible()
    replies = page.evaluate(KERNEL_PROBE)
    close_page(page)
    # The channel works (comm messages are answered) but the code never ran.
    assert ["probe-comm", "comm_info_reply"] in replies, replies
    assert not [r for r in replies if r[0] == "probe-exec"], replies
    container = docker.from_env().containers.get(CONTAINER_NAME)
    code, _ = container.exec_run(["test", "-e", "/tmp/pwned"])
    assert code == 1


def test_the_voila_container_holds_released_outputs_only(
    site: Site, requests: dict[str, str]
) -> None:
    container = docker.from_env().containers.get(CONTAINER_NAME)
    attrs = container.attrs
    mounts = {(m["Source"], m["Destination"], m["RW"]) for m in attrs["Mounts"]}
    assert {m[1] for m in mounts} == {
        "/srv/summaries",
        "/srv/publish",
        "/opt/tre-publish/tre_voila_auth.py",
    }
    assert all(not m[2] for m in mounts), mounts
    for source, _, _ in mounts:
        for forbidden in (site.settings.datasets_dir, site.settings.workspaces_dir):
            assert not Path(source).is_relative_to(forbidden), source
        assert not Path(source).is_relative_to(site.settings.releases_dir), source
    host = attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["Privileged"] is False
    assert attrs["Config"]["User"] == "1000:100"
    [network] = attrs["NetworkSettings"]["Networks"]
    assert docker.from_env().networks.get(network).attrs["Internal"] is True
    # From inside: no dataset, no workspace; on the host only the hub's API answers.
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))  # a listener on this machine's addresses
        listener.listen()
        closed_port = listener.getsockname()[1]
        gateway = site.settings.publish.gateway
        ports = (site.settings.hub.hub_port, closed_port)
        script = (
            "import os, socket\n"
            "print(sorted(os.listdir('/srv/publish/current/projects')))\n"
            "print(os.path.exists('/data'), os.path.exists('/home/researcher/work'))\n"
            f"for port in {ports}:\n"
            "    s = socket.socket(); s.settimeout(3)\n"
            f"    try:\n        s.connect(('{gateway}', port)); print('open')\n"
            "    except OSError:\n        print('closed')\n"
        )
        code, out = container.exec_run(["python3", "-c", script])
    lines = out.decode().splitlines()
    assert code == 0, out
    assert lines[0] == "['gbm-linkage', 'hf-outcomes']"
    assert lines[1] == "False False"
    assert lines[2:] == ["open", "closed"], lines
