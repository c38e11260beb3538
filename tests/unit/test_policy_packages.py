"""packages.yaml: entries are plain requirements, errors point into the file, names are
normalised, sources combine, and only permits usable today add anything."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.support import DEMO_POLICY, DEMO_TODAY, Edit
from tre.policy import (
    PackageNotAllowed,
    Permit,
    Policy,
    PythonPackages,
    Severity,
    allowed_requirements,
    can_install,
    check_allowed,
    load_policy,
    validate_policy,
)
from tre.policy.packages import normalise_entry
from tre.policy.permits import Revocation

GBM = "gbm-linkage"
GBM_PERMIT = "gbm-linkage-2026"


def errors(site: Path, today: date = DEMO_TODAY) -> list[str]:
    report = validate_policy(site, today)
    return [str(f).replace(f"{site}/", "") for f in report.findings if f.severity is Severity.error]


def write_packages(site: Path, body: str) -> None:
    (site / "packages.yaml").write_text(body, encoding="utf-8")


@pytest.fixture(scope="module")
def demo() -> Policy:
    return load_policy(DEMO_POLICY, DEMO_TODAY)


def with_packages(policy: Policy, site: tuple[str, ...], **permits: tuple[str, ...]) -> Policy:
    return policy.model_copy(
        update={
            "python": PythonPackages(
                site=site, permits={k.replace("_", "-"): v for k, v in permits.items()}
            )
        }
    )


def with_permit(policy: Policy, permit: Permit) -> Policy:
    return policy.model_copy(update={"permits": (*policy.permits, permit)})


# --- the model ---------------------------------------------------------------------------


def test_demo_allow_list_loads(demo: Policy) -> None:
    assert demo.python.index == "https://pypi.org/simple"
    assert allowed_requirements(demo, GBM, DEMO_TODAY) == (
        "idna>=3.7",
        "simpleitk==2.5.7",
        "six",
        "tabulate>=0.9",
    )
    assert allowed_requirements(demo, "hf-outcomes", DEMO_TODAY) == (
        "idna>=3.7",
        "six",
        "tabulate>=0.9",
    )


@pytest.mark.parametrize(
    ("entry", "normalised"),
    [
        ("six", "six"),
        ("Python_DateUtil >= 2.9, <3", "python-dateutil<3,>=2.9"),
        ("SimpleITK==2.5.7", "simpleitk==2.5.7"),
        ("zope.interface~=6.0", "zope-interface~=6.0"),
        ("  numpy>=1.26  ", "numpy>=1.26"),
    ],
)
def test_names_are_normalised_as_pep_503_says(entry: str, normalised: str) -> None:
    assert normalise_entry(entry) == normalised


def test_a_missing_packages_file_allows_nothing(site: Path) -> None:
    (site / "packages.yaml").unlink()
    policy = load_policy(site, DEMO_TODAY)
    assert policy.python == PythonPackages()
    assert allowed_requirements(policy, GBM, DEMO_TODAY) == ()
    assert not can_install(policy, GBM, DEMO_TODAY, "six", "1.17.0")


def test_entries_are_stored_normalised(site: Path) -> None:
    write_packages(site, "python:\n  site:\n    - Python_DateUtil>=2.9\n")
    policy = load_policy(site, DEMO_TODAY)
    assert policy.python.site == ("python-dateutil>=2.9",)
    assert can_install(policy, GBM, DEMO_TODAY, "python-dateutil", "2.9.0.post0")
    assert can_install(policy, GBM, DEMO_TODAY, "Python.DateUtil", "2.9.0.post0")


# --- errors name the file, the line and the entry --------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("lifelines[plot]", "'lifelines[plot]' has extras [plot]; list the extra's packages"),
        ("six @ https://example.org/six.whl", "'six @ https://example.org/six.whl' names a URL"),
        ("'six; python_version < \"3.12\"'", "has an environment marker"),
        ("foo==", "'foo==' is not a valid requirement"),
        ("'numpy >= '", "is not a valid requirement"),
    ],
)
def test_more_than_a_name_and_a_specifier_is_refused(site: Path, entry: str, message: str) -> None:
    write_packages(site, f"python:\n  site:\n    - six\n    - {entry}\n")
    (found,) = errors(site)
    assert found.startswith("packages.yaml:4: error: python.site[1]: ")
    assert message in found


def test_an_index_must_be_an_http_url(site: Path) -> None:
    write_packages(site, "python:\n  index: ftp://mirror.example/simple\n")
    assert errors(site) == [
        "packages.yaml:2: error: python.index: 'ftp://mirror.example/simple' is not an index "
        "URL; expected an http(s) URL of a simple index, e.g. https://pypi.org/simple"
    ]


def test_unknown_field(site: Path) -> None:
    write_packages(site, "python:\n  sites: [six]\n")
    assert errors(site) == [
        "packages.yaml:2: error: python.sites: unknown field 'sites' (allowed: index, site, "
        "permits)"
    ]


def test_the_same_name_twice_in_one_list(site: Path) -> None:
    write_packages(
        site,
        "python:\n"
        "  site:\n"
        "    - six\n"
        "    - Six>=1.16\n"
        "  permits:\n"
        "    gbm-linkage-2026:\n"
        "      - simpleitk\n"
        "      - SimpleITK==2.5.7\n",
    )
    assert errors(site) == [
        "packages.yaml:4: error: python.site[1]: 'six' is listed more than once (first as "
        "'six'); give one entry per package, with all its specifiers",
        "packages.yaml:8: error: python.permits.gbm-linkage-2026[1]: 'simpleitk' is listed "
        "more than once (first as 'simpleitk'); give one entry per package, with all its "
        "specifiers",
    ]


def test_a_permit_may_not_relist_a_site_package(site: Path) -> None:
    write_packages(
        site,
        "python:\n  site: [six>=1.16]\n  permits:\n    gbm-linkage-2026:\n      - six<1.16\n",
    )
    assert errors(site) == [
        "packages.yaml:5: error: python.permits.gbm-linkage-2026[0]: 'six' is on the site "
        "list ('six>=1.16'); a permit may not list it again: change the site entry instead"
    ]


def test_additions_must_name_an_existing_permit(site: Path) -> None:
    write_packages(site, "python:\n  permits:\n    gbm-linkage-2025: [six]\n")
    assert errors(site) == [
        "packages.yaml:3: error: python.permits.gbm-linkage-2025: additions for unknown "
        "permit 'gbm-linkage-2025' (allowed: 'gbm-linkage-2026', 'hf-outcomes-2026')"
    ]


# --- which sources count ---------------------------------------------------------------


def test_sources_combine_by_intersecting_specifiers(demo: Policy) -> None:
    second = demo.permit(GBM_PERMIT)
    assert second is not None
    policy = with_packages(
        with_permit(demo, second.model_copy(update={"id": "gbm-linkage-2027"})),
        ("six",),
        gbm_linkage_2026=("numpy>=1.26", "pandas"),
        gbm_linkage_2027=("numpy<2", "scipy==1.13.1"),
        hf_outcomes_2026=("statsmodels",),
    )
    assert allowed_requirements(policy, GBM, DEMO_TODAY) == (
        "numpy<2,>=1.26",
        "pandas",
        "scipy==1.13.1",
        "six",
    )
    assert can_install(policy, GBM, DEMO_TODAY, "numpy", "1.26.4")
    assert not can_install(policy, GBM, DEMO_TODAY, "numpy", "2.1.0")
    assert not can_install(policy, GBM, DEMO_TODAY, "numpy", "1.25.0")
    assert not can_install(policy, GBM, DEMO_TODAY, "statsmodels", "0.14.4")


def revoked(permit: Permit, on: date) -> Permit:
    return permit.model_copy(
        update={"revoked": Revocation(effective=on, reason="breach of conditions")}
    )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: revoked(p, DEMO_TODAY), id="revoked"),
        pytest.param(lambda p: p.model_copy(update={"archived": True}), id="archived"),
        pytest.param(
            lambda p: p.model_copy(update={"expiry": DEMO_TODAY - timedelta(days=1)}),
            id="expired",
        ),
        pytest.param(
            lambda p: p.model_copy(
                update={
                    "start": DEMO_TODAY + timedelta(days=1),
                    "expiry": DEMO_TODAY + timedelta(days=30),
                }
            ),
            id="not-started",
        ),
    ],
)
def test_a_permit_that_grants_nothing_today_adds_nothing(demo: Policy, change: object) -> None:
    permit = demo.permit(GBM_PERMIT)
    assert permit is not None
    assert callable(change)
    ended = demo.model_copy(
        update={"permits": tuple(change(p) if p.id == GBM_PERMIT else p for p in demo.permits)}
    )
    assert "simpleitk==2.5.7" not in allowed_requirements(ended, GBM, DEMO_TODAY)
    assert not can_install(ended, GBM, DEMO_TODAY, "simpleitk", "2.5.7")
    with pytest.raises(PackageNotAllowed, match="'simpleitk' is not on the allow-list"):
        check_allowed(ended, GBM, DEMO_TODAY, "simpleitk", "2.5.7")
    # The site list stays.
    assert can_install(ended, GBM, DEMO_TODAY, "six", "1.17.0")


def test_a_revocation_counts_from_its_effective_day(demo: Policy) -> None:
    permit = demo.permit(GBM_PERMIT)
    assert permit is not None
    later = DEMO_TODAY + timedelta(days=10)
    policy = demo.model_copy(update={"permits": (revoked(permit, later),)})
    assert can_install(policy, GBM, DEMO_TODAY, "simpleitk", "2.5.7")
    assert not can_install(policy, GBM, later, "simpleitk", "2.5.7")


def test_additions_of_another_projects_permit_do_not_count(demo: Policy) -> None:
    assert not can_install(demo, "hf-outcomes", DEMO_TODAY, "simpleitk", "2.5.7")


# --- check_allowed says why ------------------------------------------------------------


def test_check_allowed_explains_each_refusal(demo: Policy) -> None:
    check_allowed(demo, GBM, DEMO_TODAY, "SimpleITK", "2.5.7")
    with pytest.raises(PackageNotAllowed, match=r"version 2\.5\.6 of 'simpleitk' is not allowed"):
        check_allowed(demo, GBM, DEMO_TODAY, "simpleitk", "2.5.6")
    with pytest.raises(PackageNotAllowed, match=r"allowed: tabulate>=0\.9"):
        check_allowed(demo, GBM, DEMO_TODAY, "tabulate", "0.8.10")
    with pytest.raises(PackageNotAllowed, match="'not-a-version' is not a valid version"):
        check_allowed(demo, GBM, DEMO_TODAY, "six", "not-a-version")
    with pytest.raises(PackageNotAllowed, match="unknown project 'nope'"):
        check_allowed(demo, "nope", DEMO_TODAY, "six", "1.17.0")
    with pytest.raises(PackageNotAllowed, match="unknown project 'nope'"):
        allowed_requirements(demo, "nope", DEMO_TODAY)


@pytest.mark.security
@pytest.mark.parametrize("squat", ["simpleitc", "simple-itk2", "sixx", "idna2", "tabulte"])
def test_a_typo_squat_of_an_allowed_name_is_refused(demo: Policy, squat: str) -> None:
    assert not can_install(demo, GBM, DEMO_TODAY, squat, "2.5.7")
    with pytest.raises(PackageNotAllowed, match="is not on the allow-list"):
        check_allowed(demo, GBM, DEMO_TODAY, squat, "2.5.7")


def test_a_near_miss_gets_a_suggestion(demo: Policy) -> None:
    with pytest.raises(PackageNotAllowed, match="did you mean 'tabulate'"):
        check_allowed(demo, GBM, DEMO_TODAY, "tabulte", "0.9.0")


def test_a_bare_name_allows_any_version_including_prereleases(demo: Policy) -> None:
    assert can_install(demo, GBM, DEMO_TODAY, "six", "1.17.0")
    assert can_install(demo, GBM, DEMO_TODAY, "six", "2.0rc1")


def test_a_site_entry_may_gain_a_specifier(site: Path, edit: Edit) -> None:
    edit("packages.yaml", "- six\n", "- six>=1.16\n")
    assert errors(site) == []
