"""The opt-out register: reversible, effective-dated, durable, append-only and fail-closed."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tre.pseudonym.optout import (
    TRANSITIONS,
    OptOutError,
    OptOutEvent,
    OptOutKind,
    OptOutRegister,
    OptOutRegisterError,
    OptOutState,
    can_transition,
    check_transition,
    default_register_path,
)
from tre.pseudonym.patient_ids import PatientIdError

WHEN = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
MARCH_1 = date(2026, 3, 1)


def make_register(tmp_path: Path) -> OptOutRegister:
    return OptOutRegister.in_keys_dir(tmp_path / "keys")


def make_event(kind: OptOutKind, patient_id: str = "123", effective: date = MARCH_1) -> OptOutEvent:
    return OptOutEvent(
        kind=kind,
        patient_id=patient_id,
        effective=effective,
        recorded_at=WHEN,
        recorded_by="dm-alice",
    )


def append_raw(register: OptOutRegister, text: bytes) -> None:
    with register.path.open("ab") as f:
        f.write(text)


# Opting out and back in


def test_opt_out_applies_from_its_effective_date(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("123", recorded_by="dm-alice", effective=MARCH_1, recorded_at=WHEN)
    assert not register.is_opted_out("123", MARCH_1 - timedelta(days=1))
    assert register.is_opted_out("123", MARCH_1)
    assert register.is_opted_out("123", date(2030, 1, 1))
    assert not register.is_opted_out("456", MARCH_1)


def test_opt_out_is_reversible_and_can_be_repeated(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("123", recorded_by="dm-alice", effective=date(2026, 1, 1))
    register.record_opt_in("123", recorded_by="dm-bob", effective=date(2026, 2, 1))
    register.record_opt_out("123", recorded_by="dm-alice", effective=date(2026, 4, 1))
    expected = {
        date(2025, 12, 31): False,
        date(2026, 1, 1): True,
        date(2026, 1, 31): True,
        date(2026, 2, 1): False,
        date(2026, 3, 31): False,
        date(2026, 4, 1): True,
    }
    assert {day: register.is_opted_out("123", day) for day in expected} == expected


def test_opt_in_on_the_same_day_wins(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("123", recorded_by="dm-alice", effective=MARCH_1)
    register.record_opt_in("123", recorded_by="dm-alice", effective=MARCH_1)
    assert not register.is_opted_out("123", MARCH_1)


def test_opted_out_lists_who_is_out_on_a_date(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("1", recorded_by="dm", effective=date(2026, 1, 1))
    register.record_opt_out("2", recorded_by="dm", effective=date(2026, 3, 1))
    register.record_opt_out("3", recorded_by="dm", effective=date(2026, 1, 1))
    register.record_opt_in("3", recorded_by="dm", effective=date(2026, 2, 1))
    assert register.opted_out(date(2025, 12, 31)) == frozenset()
    assert register.opted_out(date(2026, 1, 15)) == frozenset({"1", "3"})
    assert register.opted_out(date(2026, 2, 15)) == frozenset({"1"})
    assert register.opted_out(date(2026, 3, 1)) == frozenset({"1", "2"})


def test_ids_are_normalised_like_pseudonyms(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("  123\t", recorded_by="dm", effective=MARCH_1)
    assert register.is_opted_out("123", MARCH_1)
    assert register.is_opted_out(" 123 ", MARCH_1)
    assert register.opted_out(MARCH_1) == frozenset({"123"})
    with pytest.raises(OptOutError, match="already opted out"):
        register.record_opt_out("123", recorded_by="dm", effective=MARCH_1)
    with pytest.raises(PatientIdError):
        register.record_opt_out("   ", recorded_by="dm")


def test_effective_defaults_to_the_day_recorded(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    event = register.record_opt_out("123", recorded_by="dm", recorded_at=WHEN)
    assert event.effective == MARCH_1
    now = register.record_opt_out("456", recorded_by="dm")
    assert now.effective == now.recorded_at.astimezone(UTC).date()
    assert datetime.now(UTC) - now.recorded_at < timedelta(minutes=5)


# Refused events, with their exact messages


def test_opting_out_twice_is_an_error(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("123", recorded_by="dm", effective=MARCH_1)
    with pytest.raises(OptOutError) as exc:
        register.record_opt_out("123", recorded_by="dm", effective=date(2026, 5, 1))
    assert str(exc.value) == (
        "patient '123' is already opted out (effective 2026-03-01); a second opt-out is "
        "not recorded"
    )
    assert len(register.events()) == 1


def test_opting_in_without_an_opt_out_is_an_error(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    with pytest.raises(OptOutError) as exc:
        register.record_opt_in("123", recorded_by="dm", effective=MARCH_1)
    assert str(exc.value) == (
        "patient '123' has not opted out, so there is no opt-out to reverse; an opt-in is "
        "recorded only after an opt-out"
    )
    assert not register.path.exists() or register.events() == ()


def test_events_of_one_patient_must_follow_each_other_in_time(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("123", recorded_by="dm", effective=MARCH_1)
    with pytest.raises(OptOutError) as exc:
        register.record_opt_in("123", recorded_by="dm", effective=date(2026, 2, 1))
    assert str(exc.value) == (
        "the opt_in of patient '123' would be effective 2026-02-01, before their opt_out "
        "effective 2026-03-01; one patient's events must follow each other in time"
    )


def test_recorded_at_must_be_aware_and_recorded_by_must_say_who(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    with pytest.raises(ValueError, match="recorded_at must be time-zone aware"):
        register.record_opt_out("123", recorded_by="dm", recorded_at=datetime(2026, 3, 1))
    with pytest.raises(OptOutError, match="invalid opt_out event: recorded_by"):
        register.record_opt_out("123", recorded_by="  ")
    assert not register.path.exists()


def test_check_and_can_agree_with_the_transitions_table(tmp_path: Path) -> None:
    assert set(TRANSITIONS) == {
        (OptOutState.participating, OptOutKind.opt_out),
        (OptOutState.opted_out, OptOutKind.opt_in),
    }
    out, back_in = make_event(OptOutKind.opt_out), make_event(OptOutKind.opt_in)
    assert can_transition(None, out) and not can_transition(None, back_in)
    assert can_transition(out, back_in) and not can_transition(out, out)
    with pytest.raises(OptOutError):
        check_transition(back_in, back_in)
    register = make_register(tmp_path)
    assert register.can_record(OptOutKind.opt_out, "123", MARCH_1)
    assert not register.can_record(OptOutKind.opt_in, "123", MARCH_1)
    with pytest.raises(OptOutError, match="has not opted out"):
        register.check_record(OptOutKind.opt_in, "123", MARCH_1)


# The file: durable, private, append-only, read fail-closed


def test_appends_are_durable_and_read_back_by_a_new_instance(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    first = register.record_opt_out(
        "123", recorded_by="dm-alice", effective=MARCH_1, recorded_at=WHEN
    )
    second = register.record_opt_in(
        "123", recorded_by="dm-bob", effective=date(2026, 4, 1), recorded_at=WHEN
    )
    reopened = OptOutRegister(register.path)
    assert reopened.events() == (first, second)
    assert reopened.history(" 123 ") == (first, second)
    lines = register.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0]) == {
        "kind": "opt_out",
        "patient_id": "123",
        "effective": "2026-03-01",
        "recorded_at": "2026-03-01T09:30:00Z",
        "recorded_by": "dm-alice",
    }


def test_the_register_file_and_folder_are_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        register = make_register(tmp_path)
        register.record_opt_out("123", recorded_by="dm")
    finally:
        os.umask(old)
    assert register.path == default_register_path(tmp_path / "keys")
    assert register.path == tmp_path / "keys" / "opt-out.jsonl"
    assert stat.S_IMODE(register.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(register.path.parent.stat().st_mode) == 0o700


def test_every_append_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register = make_register(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    register.record_opt_out("1", recorded_by="dm")
    register.record_opt_out("2", recorded_by="dm")
    assert synced.count(register.path.stat().st_ino) == 2


def test_appends_from_another_process_are_seen(tmp_path: Path) -> None:
    ours = make_register(tmp_path)
    theirs = make_register(tmp_path)
    ours.record_opt_out("123", recorded_by="dm", effective=MARCH_1)
    assert theirs.is_opted_out("123", MARCH_1)
    theirs.record_opt_in("123", recorded_by="dm", effective=date(2026, 4, 1))
    assert not ours.is_opted_out("123", date(2026, 4, 1))
    with pytest.raises(OptOutError, match="has not opted out"):
        ours.record_opt_in("123", recorded_by="dm", effective=date(2026, 5, 1))


def test_an_empty_or_missing_register_has_no_one_opted_out(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    assert register.events() == ()
    assert register.opted_out(MARCH_1) == frozenset()
    assert not register.path.exists(), "reading never creates the file"


@pytest.mark.security
@pytest.mark.parametrize(
    ("garbage", "problem"),
    [
        (b"not json\n", "not a valid opt-out event: line: Invalid JSON"),
        (b"\n", "not a valid opt-out event: line: Invalid JSON"),
        (b'{"kind": "opt_out"}\n', "not a valid opt-out event: patient_id: Field required"),
        (
            b'{"kind": "maybe", "patient_id": "9", "effective": "2026-03-01", '
            b'"recorded_at": "2026-03-01T09:30:00Z", "recorded_by": "dm"}\n',
            "not a valid opt-out event: kind: Input should be 'opt_out' or 'opt_in'",
        ),
        (
            b'{"kind": "opt_out", "patient_id": "9", "effective": "2026-03-01", '
            b'"recorded_at": "2026-03-01T09:30:00", "recorded_by": "dm"}\n',
            "not a valid opt-out event: recorded_at: Input should have timezone info",
        ),
        (
            b'{"kind": "opt_out", "patient_id": "9", "effective": "2026-03-01", '
            b'"recorded_at": "2026-03-01T09:30:00Z", "recorded_by": "dm", "reason": "x"}\n',
            "not a valid opt-out event: reason: Extra inputs are not permitted",
        ),
        (
            b'{"kind": "opt_in", "patient_id": "9", "effective": "2026-03-01", '
            b'"recorded_at": "2026-03-01T09:30:00Z", "recorded_by": "dm"}\n',
            "patient '9' has not opted out",
        ),
        (b'{"kind": "opt_out"', "the line is incomplete (no line break at its end)"),
    ],
)
def test_a_corrupt_line_is_an_error_naming_file_and_line(
    tmp_path: Path, garbage: bytes, problem: str
) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("1", recorded_by="dm", effective=MARCH_1)
    register.record_opt_out("2", recorded_by="dm", effective=MARCH_1)
    append_raw(register, garbage)
    for reader in (OptOutRegister(register.path), register):
        with pytest.raises(OptOutRegisterError) as exc:
            reader.opted_out(MARCH_1)
        assert str(exc.value).startswith(f"{register.path}, line 3: {problem}")
    # Fail closed: no answer and no new event while the file is corrupt.
    with pytest.raises(OptOutRegisterError, match="line 3"):
        register.is_opted_out("1", MARCH_1)
    with pytest.raises(OptOutRegisterError, match="line 3"):
        register.record_opt_out("3", recorded_by="dm")
    assert register.path.read_bytes().endswith(garbage)


@pytest.mark.security
def test_invalid_utf8_is_a_corrupt_line(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("1", recorded_by="dm")
    append_raw(register, b'{"kind": "\xff"}\n')
    with pytest.raises(OptOutRegisterError, match=r", line 2: not a valid opt-out event"):
        OptOutRegister(register.path).events()


@pytest.mark.security
def test_a_shrunk_register_is_refused(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("1", recorded_by="dm")
    register.record_opt_out("2", recorded_by="dm")
    first_line = register.path.read_bytes().split(b"\n")[0] + b"\n"
    with register.path.open("r+b") as f:
        f.truncate(len(first_line))
    with pytest.raises(OptOutRegisterError) as exc:
        register.opted_out(MARCH_1)
    assert "the opt-out register shrank from" in str(exc.value)
    assert str(exc.value).endswith("since it was read; it may only be appended to")


@pytest.mark.security
def test_a_replaced_register_is_refused(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("1", recorded_by="dm")
    content = register.path.read_bytes()
    replacement = register.path.with_name("new.jsonl")
    replacement.write_bytes(content + content.replace(b'"opt_out"', b'"opt_in"'))
    replacement.chmod(0o600)
    replacement.replace(register.path)
    with pytest.raises(OptOutRegisterError) as exc:
        register.events()
    assert str(exc.value) == (
        f"{register.path}: the opt-out register was replaced since it was read; "
        "it may only be appended to"
    )


@pytest.mark.security
def test_a_deleted_register_is_refused(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("1", recorded_by="dm")
    register.path.unlink()
    with pytest.raises(OptOutRegisterError, match="has disappeared since it was read"):
        register.is_opted_out("1", MARCH_1)


@pytest.mark.security
def test_a_register_others_can_read_is_refused(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    register.record_opt_out("1", recorded_by="dm")
    register.path.chmod(0o644)
    with pytest.raises(OptOutRegisterError) as exc:
        OptOutRegister(register.path).events()
    assert str(exc.value) == (
        f"{register.path}: the opt-out register has mode 0644, so group or others can read "
        f"or write it; mode 0600 is required (chmod 600 {register.path})"
    )
    with pytest.raises(OptOutRegisterError, match="mode 0600 is required"):
        register.record_opt_out("2", recorded_by="dm")


@pytest.mark.security
def test_a_symlinked_register_is_refused(tmp_path: Path) -> None:
    real = make_register(tmp_path / "real")
    real.record_opt_out("1", recorded_by="dm")
    link = tmp_path / "keys" / "opt-out.jsonl"
    link.parent.mkdir(mode=0o700)
    link.symlink_to(real.path)
    message = f"{link}: the opt-out register is a symbolic link; a regular file is required"
    with pytest.raises(OptOutRegisterError) as exc:
        OptOutRegister(link).events()
    assert str(exc.value) == message
    with pytest.raises(OptOutRegisterError) as exc:
        OptOutRegister(link).record_opt_out("2", recorded_by="dm")
    assert str(exc.value) == message
    assert len(real.events()) == 1


@pytest.mark.security
def test_a_keys_folder_others_can_reach_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    keys.chmod(0o755)
    with pytest.raises(OptOutRegisterError, match="mode 0700 is required"):
        OptOutRegister.in_keys_dir(keys).record_opt_out("1", recorded_by="dm")
    assert list(keys.iterdir()) == []


def test_repr_names_the_file(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    assert repr(register) == f"OptOutRegister({str(register.path)!r})"
