"""The free-text redactor on hand-written sentences in Dutch, French and English."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from tre.ingest.free_text import (
    DenyList,
    Entity,
    Redactor,
    RedactorConfig,
    fold,
    parse_date,
    stop_words,
)

BIRTH = date(1958, 5, 8)


def ten_days_later(day: date) -> date:
    return day + timedelta(days=10)


@pytest.fixture(scope="module")
def deny() -> DenyList:
    deny = DenyList()
    deny.add_person("Will", "Peeters")
    deny.add_person("Ben", "Claes")
    deny.add_person("Raphaël", "Léonard")
    deny.add_person("Leon", "Van den Eynde")
    deny.add_person("Jean-Michel", "Durant")
    deny.add_person_name("Dr. Nicole Deconinck")
    deny.add_address("Lucabaan 673, 9067 Somme-Leuze")
    deny.add_number("+32 459 46 74 72", Entity.PHONE)
    deny.add_number("056/41.52.89", Entity.PHONE)
    deny.add_number("58050881997", Entity.ID)
    deny.add_text("leon.vandeneynde80@hotmail.com", Entity.EMAIL)
    return deny


@pytest.fixture(scope="module")
def redactor(deny: DenyList) -> Redactor:
    return Redactor(deny, RedactorConfig(id_patterns=(r"MRN\d{7}", r"(?:ADM|NT)\d{7}")))


def redact(redactor: Redactor, text: str, **kwargs: object) -> str:
    return redactor.redact(text, **kwargs).text  # type: ignore[arg-type]


# -- names -------------------------------------------------------------------------------


def test_a_name_that_is_also_a_common_word_is_redacted_only_as_a_name(redactor: Redactor) -> None:
    text = "The patient will be discharged tomorrow; Will Peeters agreed. WILL asked again."
    assert redact(redactor, text) == (
        "The patient will be discharged tomorrow; <NAME> agreed. <NAME> asked again."
    )
    nl = "Ik ben de behandelende arts van Ben Claes; ben bereikbaar via de balie."
    assert redact(redactor, nl) == (
        "Ik ben de behandelende arts van <NAME>; ben bereikbaar via de balie."
    )


def test_names_match_whatever_their_case_and_accents(redactor: Redactor) -> None:
    text = "LÉONARD Raphael, leonard raphaël, Raphaël Leonard, léonard."
    assert redact(redactor, text) == "<NAME>, <NAME>, <NAME>, <NAME>."
    assert redact(redactor, "VAN DEN EYNDE Leon and van den eynde") == "<NAME> and <NAME>"
    assert redact(redactor, "Jean Michel DURANT; jean-michel") == "<NAME>; <NAME>"


def test_a_last_name_alone_and_a_title_followed_by_an_unlisted_name(redactor: Redactor) -> None:
    text = "Geachte collega Dr. Deconinck,\nGP Dr. Monique Vergauwen informed; Mme Van Acker too."
    assert redact(redactor, text) == (
        "Geachte collega Dr. <NAME>,\nGP Dr. <NAME> informed; Mme <NAME> too."
    )


def test_particles_alone_are_never_redacted(redactor: Redactor) -> None:
    text = "De patiënt van kamer 12 is den dag erna ontslagen."
    assert redact(redactor, text) == text


# -- numbers and ids -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["58.05.08-819.97", "58050881997", "58 05 08 819 97", "58.05.08 819-97"],
)
def test_a_national_number_in_any_grouping_is_an_id(redactor: Redactor, number: str) -> None:
    text = f"Votre patient (né le 8 mai 1958, numéro national {number}, dossier MRN7060741)."
    assert redact(redactor, text, birth_dates={BIRTH}, shift=ten_days_later) == (
        "Votre patient (né le <DATE>, numéro national <ID>, dossier <ID>)."
    )


def test_an_unlisted_national_number_is_found_by_its_check_digits(redactor: Redactor) -> None:
    assert redact(redactor, "rijksregister 68122655778.") == "rijksregister <ID>."
    # Eleven digits whose check digits do not fit are still a long number, hence an id.
    assert redact(redactor, "lot 68122655700 opened") == "lot <ID> opened"


@pytest.mark.parametrize(
    "phone",
    ["+32 459 46 74 72", "0459 46 74 72", "0459/46.74.72", "056/41.52.89", "056 41 52 89",
     "02 080 42 31", "04 636 58 74", "+44 20 7946 0958"],
)  # fmt: skip
def test_phone_numbers_in_belgian_spellings(redactor: Redactor, phone: str) -> None:
    assert redact(redactor, f"Bereikbaar op {phone} (gsm).") == "Bereikbaar op <PHONE> (gsm)."


def test_ids_emails_and_record_numbers(redactor: Redactor) -> None:
    text = (
        "Hospital id MRN0028710 (mrn0028710), admission ADM0287550, note NT2843392; "
        "mail leon.vandeneynde80@hotmail.com or l.v@example.org."
    )
    assert redact(redactor, text) == (
        "Hospital id <ID> (<ID>), admission <ID>, note <ID>; mail <EMAIL> or <EMAIL>."
    )


# -- addresses ------------------------------------------------------------------------------


def test_listed_and_unlisted_addresses(redactor: Redactor) -> None:
    assert redact(redactor, "Adres: Lucabaan 673, 9067 Somme-Leuze.") == "Adres: <ADDRESS>."
    assert redact(redactor, "woont in Somme-Leuze") == "woont in <ADDRESS>"
    assert redact(redactor, "Adresse : rue de la Station 12, 1000 Bruxelles.") == (
        "Adresse : <ADDRESS>, <ADDRESS>."
    )
    assert redact(redactor, "Address: Kerkstraat 5 bus 2, 9000 Gent") == (
        "Address: <ADDRESS>, <ADDRESS>"
    )


# -- dates -----------------------------------------------------------------------------------


def test_dates_are_shifted_in_their_own_spelling(redactor: Redactor) -> None:
    text = (
        "Admission note 2024-06-29 07:30. Opgenomen van 23/12/2023 tot 26/12/2023; "
        "controle 9/1/2024 en 24.01.2024."
    )
    assert redact(redactor, text, shift=ten_days_later) == (
        "Admission note 2024-07-09 07:30. Opgenomen van 02/01/2024 tot 05/01/2024; "
        "controle 19/1/2024 en 03.02.2024."
    )


def test_written_out_dates_keep_their_language_and_weekday(redactor: Redactor) -> None:
    nl = "Opname op maandag 3 juni 2024, ontslag 30 december 2024."
    assert redact(redactor, nl, shift=ten_days_later) == (
        "Opname op donderdag 13 juni 2024, ontslag 9 januari 2025."
    )
    fr = "Hospitalisé le 25 février 2024 ; revu le 1er mars 2024."
    assert redact(redactor, fr, shift=ten_days_later) == (
        "Hospitalisé le 6 mars 2024 ; revu le 11 mars 2024."
    )
    en = "Seen on June 5, 2024 and on 28 Dec 2024."
    assert redact(redactor, en, shift=ten_days_later) == "Seen on June 15, 2024 and on 7 Jan 2025."


def test_a_date_next_to_numbers_is_read_alone(redactor: Redactor) -> None:
    text = "Hb 12.5 g/dl on 03/04/2024 10 units; 2x500 mg 2024-04-05T08:00; ratio 3/4."
    assert redact(redactor, text, shift=ten_days_later) == (
        "Hb 12.5 g/dl on 13/04/2024 10 units; 2x500 mg 2024-04-15T08:00; ratio 3/4."
    )


def test_a_phone_number_right_after_a_date_is_still_found(redactor: Redactor) -> None:
    for phone in ("0471 23 45 67", "02 080 42 31", "0459/46.74.72"):
        text = f"Gebeld op 03/04/2024 {phone} (dochter)."
        assert redact(redactor, text, shift=ten_days_later) == (
            "Gebeld op 13/04/2024 <PHONE> (dochter)."
        ), phone


def test_birth_dates_partial_and_impossible_dates_become_tokens(redactor: Redactor) -> None:
    text = (
        "Patient born 09/02/1939, °26.12.1968, DOB 02/09/1967, geboren op 6 oktober 1978; "
        "seen 08/05/1958 and 31/02/2024; surgery in juni 2023 (06/2023), next 3 mars."
    )
    assert redact(redactor, text, birth_dates={BIRTH}, shift=ten_days_later) == (
        "Patient born <DATE>, °<DATE>, DOB <DATE>, geboren op <DATE>; "
        "seen <DATE> and <DATE>; surgery in <DATE> (<DATE>), next <DATE>."
    )


def test_without_a_shift_every_date_becomes_a_token(redactor: Redactor) -> None:
    text = "Admitted 23/12/2023, discharged 26 December 2023."
    assert redact(redactor, text) == "Admitted <DATE>, discharged <DATE>."


def test_a_date_shaped_like_a_phone_number_is_a_date(redactor: Redactor) -> None:
    text = "DECOSTER Elke, °06.10.1978, gezien 06.10.2023"
    assert (
        redact(redactor, text, shift=ten_days_later) == "DECOSTER Elke, °<DATE>, gezien 16.10.2023"
    )


def test_parse_date_reads_full_dates_only() -> None:
    parsed = parse_date("6 oktober 1978", "nl")
    assert parsed is not None
    assert parsed.value == date(1978, 10, 6)
    assert parsed.render(date(1979, 2, 1)) == "1 februari 1979"
    assert parse_date("oktober 1978") is None
    assert parse_date("31/02/2024") is None


# -- what comes out ---------------------------------------------------------------------------


def test_counts_say_what_was_done_never_the_values(redactor: Redactor) -> None:
    text = "Will Peeters (MRN0028710) born 08/05/1958, seen 01/06/2024, tel 056/41.52.89."
    done = redactor.redact(text, birth_dates={BIRTH}, shift=ten_days_later)
    assert dict(done.counts) == {
        "NAME redacted": 1,
        "ID redacted": 1,
        "DATE redacted": 1,
        "DATE shifted": 1,
        "PHONE redacted": 1,
    }
    assert "Peeters" not in repr(done.counts)
    assert "Peeters" not in repr(redactor.config) + repr(DenyList())


def test_text_without_identifiers_is_unchanged(redactor: Redactor) -> None:
    text = "Chest X-ray: no consolidation. Salbutamol 2.5 mg via nebuliser, 4x/day for 5 days."
    assert redactor.redact(text).text == text


def test_folding_keeps_every_offset() -> None:
    text = "Léonard ÉLODIE Œuvre straße İzmir\u2019s"
    assert len(fold(text)) == len(text)
    assert fold(text) == "leonard elodie œuvre straße izmir's"
    assert {"will", "ben", "son"} <= stop_words()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the redactor tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


@pytest.mark.usefixtures("no_network")
def test_building_and_running_a_redactor_needs_no_model_and_no_network() -> None:
    import spacy.util

    redactor = Redactor(DenyList())
    assert redactor.redact("Dr. Janssens, 0459 46 74 72.").text == "Dr. <NAME>, <PHONE>."
    assert not any(spacy.util.is_package(m) for m in ("en_core_web_lg", "en_core_web_sm"))
