"""The opt-out register (EHDS Art. 71: reversible, no reason asked): an append-only,
owner-only JSON-lines file of opt-out and opt-in events on the ingest host, where a
patient's state on a date is set by their latest event effective by then, and a file
that cannot be read exactly is an error, never a partial answer.

Each line is one `OptOutEvent`. Appends take an exclusive lock, re-read the file, check
the patient's transition, then write, flush and fsync one line; the file is never
rewritten. The register holds hospital patient ids, so it stays beside the keys.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    field_validator,
)

from .patient_ids import normalise_patient_id
from .private_files import (
    PRIVATE_FILE_MODE,
    fsync_dir,
    private_dir_problem,
    private_file_problem,
)

OPT_OUT_FILE_NAME = "opt-out.jsonl"
"""The register's file name inside `Settings.keys_dir`."""


def default_register_path(keys_dir: Path) -> Path:
    """Where a site keeps its opt-out register: `keys_dir / "opt-out.jsonl"`."""
    return keys_dir / OPT_OUT_FILE_NAME


class OptOutKind(StrEnum):
    """What a register event records."""

    opt_out = "opt_out"
    opt_in = "opt_in"


class OptOutState(StrEnum):
    """Whether a patient's data may be used for secondary use."""

    participating = "participating"
    opted_out = "opted_out"


TRANSITIONS: Mapping[tuple[OptOutState, OptOutKind], OptOutState] = {
    (OptOutState.participating, OptOutKind.opt_out): OptOutState.opted_out,
    (OptOutState.opted_out, OptOutKind.opt_in): OptOutState.participating,
}
"""The only events allowed in each state; anything else is an error."""


class OptOutError(ValueError):
    """An event the register refuses (e.g. a second opt-out); the message says why."""


class OptOutRegisterError(Exception):
    """The register file is exposed, corrupt, shrunk or replaced; the message names the
    file and, for bad content, the line."""


RecordedBy = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class OptOutEvent(BaseModel):
    """One line of the register."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: OptOutKind
    patient_id: str
    """The hospital patient id, normalised (no surrounding white space)."""
    effective: date
    """The first day on which the event applies."""
    recorded_at: AwareDatetime
    recorded_by: RecordedBy
    """Who recorded the event (the data manager's username)."""

    @field_validator("patient_id")
    @classmethod
    def _normalised(cls, value: str) -> str:
        if normalise_patient_id(value) != value:
            raise ValueError("patient id has surrounding white space")
        return value


def state_after(previous: OptOutEvent | None) -> OptOutState:
    """A patient's state after their latest event (`None`: no event yet)."""
    if previous is None or previous.kind is OptOutKind.opt_in:
        return OptOutState.participating
    return OptOutState.opted_out


def check_transition(previous: OptOutEvent | None, event: OptOutEvent) -> None:
    """Raise `OptOutError` unless `event` may follow the patient's `previous` event."""
    state = state_after(previous)
    if (state, event.kind) not in TRANSITIONS:
        if event.kind is OptOutKind.opt_out:
            assert previous is not None
            raise OptOutError(
                f"patient {event.patient_id!r} is already opted out "
                f"(effective {previous.effective.isoformat()}); a second opt-out is not recorded"
            )
        raise OptOutError(
            f"patient {event.patient_id!r} has not opted out, so there is no opt-out to "
            "reverse; an opt-in is recorded only after an opt-out"
        )
    if previous is not None and event.effective < previous.effective:
        raise OptOutError(
            f"the {event.kind.value} of patient {event.patient_id!r} would be effective "
            f"{event.effective.isoformat()}, before their {previous.kind.value} effective "
            f"{previous.effective.isoformat()}; one patient's events must follow each "
            "other in time"
        )


def can_transition(previous: OptOutEvent | None, event: OptOutEvent) -> bool:
    """True if `check_transition` would accept `event`."""
    try:
        check_transition(previous, event)
    except OptOutError:
        return False
    return True


class OptOutRegister:
    """The register at `path` (created, mode 0600, on the first event).

    Reads pick up lines appended by other processes; a register whose file shrank or
    was replaced since it was last read is refused, since the file only ever grows.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._events: list[OptOutEvent] = []
        self._histories: dict[str, list[OptOutEvent]] = {}
        self._offset = 0
        self._identity: tuple[int, int] | None = None

    @classmethod
    def in_keys_dir(cls, keys_dir: Path) -> Self:
        """The site's register, at its default place under `keys_dir`."""
        return cls(default_register_path(keys_dir))

    def __repr__(self) -> str:
        return f"OptOutRegister({str(self.path)!r})"

    # Reading

    def events(self) -> tuple[OptOutEvent, ...]:
        """Every event, in the order recorded."""
        self._read()
        return tuple(self._events)

    def history(self, patient_id: str) -> tuple[OptOutEvent, ...]:
        """One patient's events, in the order recorded (and of effective date)."""
        self._read()
        return tuple(self._histories.get(normalise_patient_id(patient_id), ()))

    def is_opted_out(self, patient_id: str, on: date) -> bool:
        """True if the patient's latest event effective on or before `on` is an opt-out.

        Each call checks the file for new lines; to filter many records, take
        `opted_out(on)` once and test membership of normalised ids.
        """
        self._read()
        history = self._histories.get(normalise_patient_id(patient_id), [])
        return _opted_out_on(history, _as_date(on))

    def opted_out(self, on: date) -> frozenset[str]:
        """The (normalised) hospital ids of every patient opted out on `on`."""
        self._read()
        day = _as_date(on)
        return frozenset(
            pid for pid, history in self._histories.items() if _opted_out_on(history, day)
        )

    # Recording

    def record_opt_out(
        self,
        patient_id: str,
        *,
        recorded_by: str,
        effective: date | None = None,
        recorded_at: datetime | None = None,
    ) -> OptOutEvent:
        """Record that the patient opts out from `effective` (default: the day recorded)."""
        return self._record(OptOutKind.opt_out, patient_id, recorded_by, effective, recorded_at)

    def record_opt_in(
        self,
        patient_id: str,
        *,
        recorded_by: str,
        effective: date | None = None,
        recorded_at: datetime | None = None,
    ) -> OptOutEvent:
        """Record that the patient reverses their opt-out from `effective`."""
        return self._record(OptOutKind.opt_in, patient_id, recorded_by, effective, recorded_at)

    def check_record(self, kind: OptOutKind, patient_id: str, effective: date) -> None:
        """Raise `OptOutError` if recording `kind` for the patient would be refused."""
        self._read()
        patient_id = normalise_patient_id(patient_id)
        probe = OptOutEvent(
            kind=kind,
            patient_id=patient_id,
            effective=_as_date(effective),
            recorded_at=datetime.now(UTC),
            recorded_by="check",
        )
        check_transition(self._latest(patient_id), probe)

    def can_record(self, kind: OptOutKind, patient_id: str, effective: date) -> bool:
        """True if `check_record` would accept the event."""
        try:
            self.check_record(kind, patient_id, effective)
        except OptOutError:
            return False
        return True

    def _record(
        self,
        kind: OptOutKind,
        patient_id: str,
        recorded_by: str,
        effective: date | None,
        recorded_at: datetime | None,
    ) -> OptOutEvent:
        recorded_at = datetime.now(UTC) if recorded_at is None else recorded_at
        if recorded_at.tzinfo is None:
            raise ValueError("recorded_at must be time-zone aware (e.g. datetime.now(UTC))")
        if effective is None:
            effective = recorded_at.astimezone(UTC).date()
        try:
            event = OptOutEvent(
                kind=kind,
                patient_id=normalise_patient_id(patient_id),
                effective=_as_date(effective),
                recorded_at=recorded_at,
                recorded_by=recorded_by,
            )
        except ValidationError as exc:
            raise OptOutError(f"invalid {kind.value} event: {_summary(exc)}") from None
        problem = private_dir_problem(self.path.parent, "opt-out register")
        if problem:
            raise OptOutRegisterError(problem)
        line = (event.model_dump_json() + "\n").encode("utf-8")
        fd = self._open(os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            created = self._read_from(fd)
            check_transition(self._latest(event.patient_id), event)
            _write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)  # also releases the lock
        if created:
            fsync_dir(self.path.parent)
        self._add(event)
        self._offset += len(line)
        return event

    # The file

    def _latest(self, patient_id: str) -> OptOutEvent | None:
        history = self._histories.get(patient_id)
        return history[-1] if history else None

    def _open(self, flags: int) -> int:
        try:
            # O_NOFOLLOW: a symbolic link in the keys folder is refused, not followed.
            return os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OptOutRegisterError(
                    f"{self.path}: the opt-out register is a symbolic link; a regular file "
                    "is required"
                ) from None
            raise OptOutRegisterError(
                f"{self.path}: cannot open the opt-out register: {exc.strerror}"
            ) from exc

    def _read(self) -> None:
        if not self.path.exists() and not self.path.is_symlink():
            if self._identity is not None:
                raise OptOutRegisterError(
                    f"{self.path}: the opt-out register has disappeared since it was read"
                )
            return
        fd = self._open(os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._read_from(fd)
        finally:
            os.close(fd)

    def _read_from(self, fd: int) -> bool:
        """Take in the lines appended since the last read; True if the file is new."""
        st = os.fstat(fd)
        problem = private_file_problem(st, self.path, "opt-out register")
        if problem:
            raise OptOutRegisterError(problem)
        identity = (st.st_dev, st.st_ino)
        if self._identity is not None and identity != self._identity:
            raise OptOutRegisterError(
                f"{self.path}: the opt-out register was replaced since it was read; "
                "it may only be appended to"
            )
        if st.st_size < self._offset:
            raise OptOutRegisterError(
                f"{self.path}: the opt-out register shrank from {self._offset} to "
                f"{st.st_size} bytes since it was read; it may only be appended to"
            )
        new = self._identity is None and st.st_size == 0
        self._identity = identity
        lines = _read_range(fd, self._offset, st.st_size).split(b"\n")
        tail = lines.pop()  # empty when the file ends with a line break, as it must
        line_number = len(self._events)
        for raw in lines:
            line_number += 1
            try:
                event = OptOutEvent.model_validate_json(raw)
            except ValidationError as exc:
                raise OptOutRegisterError(
                    f"{self.path}, line {line_number}: not a valid opt-out event: {_summary(exc)}"
                ) from None
            try:
                check_transition(self._latest(event.patient_id), event)
            except OptOutError as exc:
                raise OptOutRegisterError(f"{self.path}, line {line_number}: {exc}") from None
            self._add(event)
            self._offset += len(raw) + 1
        if tail:
            raise OptOutRegisterError(
                f"{self.path}, line {line_number + 1}: the line is incomplete (no line break "
                "at its end); an append may have been interrupted"
            )
        return new

    def _add(self, event: OptOutEvent) -> None:
        self._events.append(event)
        self._histories.setdefault(event.patient_id, []).append(event)


def _opted_out_on(history: list[OptOutEvent], day: date) -> bool:
    state = OptOutState.participating
    for event in history:  # in order of effective date, so the last one in force wins
        if event.effective > day:
            break
        state = TRANSITIONS[(state, event.kind)]
    return state is OptOutState.opted_out


def _as_date(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'line'}: {err['msg']}" for err in exc.errors()
    )


def _read_range(fd: int, start: int, end: int) -> bytes:
    chunks: list[bytes] = []
    offset = start
    while offset < end:
        chunk = os.pread(fd, end - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
