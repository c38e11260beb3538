"""What the summary notebooks show, read from the published folder only.

Voila runs these notebooks in the summaries container, where the only data is the
published folder (`$TRE_PUBLISHED`): released outputs, project summaries, the public
register and the dataset catalogue. Every text that came from a person (titles,
descriptions) is escaped before it is shown: it is data, never markup.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from IPython.display import HTML, Image, display

STYLE = """
<style>
.tre-summary { font-family: system-ui, sans-serif; max-width: 60rem; line-height: 1.5; }
.tre-summary h1 { font-size: 1.8rem; margin-bottom: .2rem; }
.tre-summary .tre-purpose { color: #444; }
.tre-summary table { border-collapse: collapse; margin: .5rem 0 1rem; }
.tre-summary th, .tre-summary td { border: 1px solid #ccc; padding: .25rem .5rem;
  text-align: left; vertical-align: top; }
.tre-summary .tre-release { border-top: 1px solid #ddd; margin-top: 1rem; padding-top: .5rem; }
.tre-summary .tre-note { color: #555; font-size: .9rem; }
</style>
"""

FIGURES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif"}
TABLES = {".csv": ",", ".tsv": "\t"}
MAX_TABLE_ROWS = 200


def published() -> Path:
    return Path(os.environ.get("TRE_PUBLISHED", "/srv/publish/current"))


def _read_json(rel: str) -> Any:
    path = published() / rel
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _e(value: object) -> str:
    return html.escape(str(value))


def _date(value: str) -> str:
    return datetime.fromisoformat(value).strftime("%d %B %Y").lstrip("0")


def _show(body: str) -> None:
    display(HTML(STYLE + f'<div class="tre-summary">{body}</div>'))


def download_link(rel: str, label: str, mime: str) -> str:
    """A link that hands the reader a published file, carried inside the page."""
    path = published() / rel
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<a download="{_e(path.name)}" href="data:{mime};base64,{data}">{_e(label)}</a>'


def show_index() -> None:
    """The list of project summaries, with links to each."""
    index = _read_json("index.json")
    if index is None:
        _show("<p>Nothing has been published yet.</p>")
        return
    items = []
    for project in index["projects"]:
        summary = _read_json(f"projects/{project}/summary.json") or {}
        released = len(summary.get("releases", []))
        items.append(
            f'<li><a href="{_e(project)}.ipynb">{_e(summary.get("title", project))}</a>'
            f" — {released} release{'s' if released != 1 else ''} of results</li>"
        )
    _show(
        f"<h1>{_e(index['site'])}: how our patients' data is used</h1>"
        "<p>Each project below was allowed to use pseudonymised health data of our "
        "patients for a stated purpose. Only results that our output checkers released "
        "are shown; no data about any single person leaves the secure environment.</p>"
        f"<ul>{''.join(items)}</ul>"
        '<p><a href="register.ipynb">Public register of data permits</a> · '
        '<a href="catalogue.ipynb">Catalogue of datasets</a></p>'
        f'<p class="tre-note">Published on {_e(_date(index["built_at"]))}.</p>'
    )


def show_project(project_id: str) -> None:
    """A project's summary: purpose in plain words, datasets, periods, released results."""
    summary = _read_json(f"projects/{project_id}/summary.json")
    if summary is None:
        _show(f"<p>There is no published summary for project {_e(project_id)}.</p>")
        return
    datasets = "".join(
        f"<li>{_e(d['title'])} (version {_e(d['version'])})</li>" for d in summary["datasets"]
    )
    periods = "".join(
        f"<li>Permit {_e(p['id'])}: {_e(_date(p['start']))} to {_e(_date(p['end']))}"
        f" ({_e(p['status'].replace('_', ' '))})</li>"
        for p in summary["permits"]
    )
    _show(
        f"<h1>{_e(summary['title'])}</h1>"
        f"<p>{_e(summary['lay_summary'])}</p>"
        f'<p class="tre-purpose"><strong>Purpose:</strong> {_e(summary["purpose_label"])} '
        f"(EHDS {_e(summary['purpose_article'])}). {_e(summary['purpose_description'])}</p>"
        f"<h2>Data used</h2><ul>{datasets}</ul>"
        f"<h2>When</h2><ul>{periods}</ul>"
        "<h2>Released results</h2>"
    )
    releases = sorted(summary["releases"], key=lambda r: r["released_at"], reverse=True)
    if not releases:
        _show("<p>No results have been released yet.</p>")
        return
    for release in releases:
        _show(
            f'<div class="tre-release"><h3>{_e(release["title"])}</h3>'
            f'<p class="tre-note">Released on {_e(_date(release["released_at"]))}</p></div>'
        )
        for f in release["files"]:
            _show_file(f)


def _show_file(f: dict[str, Any]) -> None:
    path = published() / f["path"]
    suffix = path.suffix.lower()
    _show(f"<p><strong>{_e(f['name'])}</strong>: {_e(f['description'])}</p>")
    if suffix in FIGURES:
        display(Image(data=path.read_bytes(), format=FIGURES[suffix]))
    elif suffix in TABLES:
        _show(_table(path.read_text(encoding="utf-8"), TABLES[suffix]))
    elif suffix == ".svg":
        # An SVG can carry script: shown as an image, never inlined into the page.
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        _show(f'<img alt="{_e(f["name"])}" src="data:image/svg+xml;base64,{data}">')
    elif suffix == ".pdf":
        _show(download_link(f["path"], f"Download {f['name']}", "application/pdf"))
    elif suffix in (".txt", ".md"):
        _show(f"<pre>{_e(path.read_text(encoding='utf-8', errors='replace'))}</pre>")
    else:
        _show(download_link(f["path"], f"Download {f['name']}", "application/octet-stream"))


def _table(text: str, delimiter: str) -> str:
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not rows:
        return "<p>(empty table)</p>"
    head, body = rows[0], rows[1 : MAX_TABLE_ROWS + 1]
    more = len(rows) - 1 - len(body)
    out = "<table><thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in head) + "</tr></thead>"
    out += "<tbody>"
    for row in body:
        out += "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
    out += "</tbody></table>"
    if more > 0:
        out += f'<p class="tre-note">{more} more rows in the released file.</p>'
    return out


def show_catalogue() -> None:
    """The dataset catalogue: what data exists, under which conditions (EHDS Art. 77)."""
    entries = _read_json("catalogue.json")
    if entries is None:
        _show("<p>The catalogue has not been published yet.</p>")
        return
    links = " · ".join(
        link
        for link in (
            download_link("catalogue.ttl", "HealthDCAT-AP (Turtle)", "text/turtle"),
            download_link("catalogue.jsonld", "HealthDCAT-AP (JSON-LD)", "application/ld+json"),
        )
        if link
    )
    sections = []
    for d in entries:
        conditions = d["access_conditions"]
        purposes = ", ".join(p["label"] for p in conditions["permitted_purposes"])
        categories = ", ".join(c["label"] for c in d["health_categories"])
        facts = [
            ("Held by", d["data_holder"]),
            ("Kind of data", categories),
            ("Access", d["access_rights_label"]),
            ("How to apply", conditions["how_to_apply"]),
            ("Legal basis", "; ".join(conditions["legal_basis"])),
            ("May be used for", purposes),
            ("People", d["number_of_unique_individuals"]),
            ("Records", d["number_of_records"]),
            ("Ages", _ages(d)),
            ("Period", _period(d["period"])),
            ("Projects using it now", d["active_permits"]),
        ]
        rows = "".join(
            f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts if v not in (None, "")
        )
        restrictions = "".join(f"<li>{_e(r['in_words'])}</li>" for r in d["restrictions"])
        sections.append(
            f"<h2>{_e(d['title'])}</h2><p>{_e(d['description'])}</p><table>{rows}</table>"
            + (f"<p>Restrictions:</p><ul>{restrictions}</ul>" if restrictions else "")
        )
    _show(
        "<h1>Catalogue of datasets</h1>"
        "<p>The pseudonymised datasets researchers may ask to use, and the conditions "
        "under which the access body may grant them.</p>"
        f"<p>Download: {links}</p>" + "".join(sections)
    )


def _ages(d: dict[str, Any]) -> str:
    low, high = d.get("min_typical_age"), d.get("max_typical_age")
    return f"{low} to {high} years" if low is not None and high is not None else ""


def _period(period: dict[str, Any] | None) -> str:
    if not period:
        return ""
    end = _date(period["end"]) if period.get("end") else "ongoing"
    return f"{_date(period['start'])} to {end}"


def show_register() -> None:
    """The public register: every permit, who holds it, for what, and what came of it."""
    register = _read_json("register.json")
    if register is None:
        _show("<p>The register has not been published yet.</p>")
        return
    links = " · ".join(
        link
        for link in (
            download_link("register.csv", "Download as CSV", "text/csv"),
            download_link("register.json", "Download as JSON", "application/json"),
        )
        if link
    )
    head = (
        "Permit",
        "Project",
        "Holder",
        "Purpose",
        "Datasets",
        "Period",
        "Status",
        "Researchers",
        "Sessions",
        "Code runs",
        "Results released",
        "Publish by",
        "Results published",
    )
    rows = []
    for e in register["entries"]:
        holder = e["holder"]["name"] + (
            f", {e['holder']['organisation']}" if e["holder"].get("organisation") else ""
        )
        releases = "; ".join(
            f"{_date(r['released'])} ({r['files']} file{'s' if r['files'] != 1 else ''})"
            for r in e["releases"]
        )
        published = "; ".join(p.get("title", "") for p in e["publications"]) or (
            "no — overdue" if e["overdue"] else "not yet"
        )
        cells = (
            f"{e['permit']} ({e['access_body_reference']})",
            e["project_title"],
            holder,
            f"{e['purpose']['label']} ({e['purpose']['article']})",
            "; ".join(f"{d['title']} v{d['version']}" for d in e["datasets"]),
            f"{_date(e['start'])} to {_date(e['revoked'] or e['expiry'])}",
            e["status"].replace("_", " "),
            e["researchers_named"],
            e["sessions"],
            e["executions"],
            releases or "none yet",
            _date(e["publication_deadline"]),
            published,
        )
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    _show(
        "<h1>Public register of data permits</h1>"
        f"<p>Every permit the {_e(register['access_body'])} granted for data held at "
        f"{_e(register['site_name'])}: who holds it, for what purpose, which data, and "
        "what came of it (EHDS Art. 58(1)(f)(g)). Results are due within 18 months of the "
        "end of processing (Art. 61(4)). Sessions and code runs are counts from the "
        "secure environment's audit log.</p>"
        f"<p>{links}</p>"
        "<table><thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + f'<p class="tre-note">As of {_e(_date(register["as_of"]))}.</p>'
    )
