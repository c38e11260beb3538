"""Released outputs as the publication sees them: read from the review database, verified.

A request counts once it is `released`; its release time is the history step that
released it. Nothing here reads a file the checkers did not approve: the copies are the
review service's own immutable ones, each checked against the hash recorded at
submission before it is used.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tre.review.filestore import FileStore
from tre.review.models import ReleaseRequest
from tre.review.states import Action, RequestState
from tre.review.store import ReviewStore, default_db_url
from tre.settings import Settings


class ReleasedOutput(BaseModel):
    """One file of a released request, with what a reader of the summary may see."""

    model_config = ConfigDict(frozen=True)

    project: str
    permit: str
    request_id: str
    request_title: str
    released_at: datetime
    name: str
    kind: str
    description: str
    sha256: str
    size: int
    stored_path: Path


def review_db_url(settings: Settings) -> str:
    return settings.review.db_url or default_db_url(settings.db_dir)


def released_at(req: ReleaseRequest) -> datetime:
    """When `req` was released: its history's release step."""
    for entry in req.history:
        if entry.step.action is Action.release:
            return entry.step.at
    raise ValueError(f"request {req.id} is {req.state} but has no release step")


def released_outputs(store: ReviewStore) -> list[ReleasedOutput]:
    """Every file of every released request, oldest release first."""
    with store.transaction() as conn:
        ids = store.ids(conn, states=[RequestState.released])
        requests = [store.load(conn, i) for i in ids]
    found = [
        ReleasedOutput(
            project=req.project,
            permit=req.permit,
            request_id=req.id,
            request_title=req.title,
            released_at=released_at(req),
            name=f.name,
            kind=f.kind,
            description=f.description,
            sha256=f.sha256,
            size=f.size,
            stored_path=f.stored_path,
        )
        for req in requests
        if req.state is RequestState.released
        for f in req.files
    ]
    return sorted(found, key=lambda o: (o.released_at, o.request_id, o.name))


def read_released(files: FileStore, output: ReleasedOutput) -> bytes:
    """The output's content, verified against its recorded hash (`TamperedFile` if not)."""
    return files.read(output.stored_path, output.sha256)
