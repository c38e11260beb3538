"""Each cross-check of `tre policy validate`, shown by a broken copy of the demo policy."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from tests.support import DEMO_POLICY, DEMO_TODAY, Edit
from tre.policy import Severity, validate_policy


def errors(site: Path, today: date = DEMO_TODAY) -> list[str]:
    report = validate_policy(site, today)
    return [str(f).replace(f"{site}/", "") for f in report.findings if f.severity is Severity.error]


def test_demo_policy_is_valid_and_warns_of_the_permit_expiring_soon() -> None:
    report = validate_policy(DEMO_POLICY, DEMO_TODAY)
    assert report.ok
    assert report.policy is not None
    assert [str(f).replace(f"{DEMO_POLICY}/", "") for f in report.findings] == [
        "permits.yaml:37: warning: permits[1].expiry: permit 'hf-outcomes-2026' expires in "
        "158 day(s), on 2027-04-30"
    ]


def test_unknown_dataset_in_permit(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "{dataset: gbm-variants,", "{dataset: gbm-varients,")
    assert errors(site) == [
        "permits.yaml:18: error: permits[0].datasets[3].dataset: unknown dataset 'gbm-varients' "
        "(allowed: 'clinical-records', 'gbm-alignments', 'gbm-mri', 'gbm-mri-nifti', "
        "'gbm-pathology', 'gbm-single-cell', 'gbm-variants')"
    ]


def test_unknown_version_in_permit(site: Path, edit: Edit) -> None:
    edit("permits.yaml", '{dataset: gbm-mri, version: "1"}', '{dataset: gbm-mri, version: "2"}')
    assert errors(site) == [
        "permits.yaml:16: error: permits[0].datasets[1].version: unknown version '2' of "
        "dataset 'gbm-mri' (allowed: '1')"
    ]


def test_permit_past_expiry(site: Path) -> None:
    assert errors(site, today=date(2027, 5, 1)) == [
        "permits.yaml:37: error: permits[1].expiry: permit 'hf-outcomes-2026' expired at the "
        "end of 2027-04-30 (validated on 2027-05-01); extend the expiry or set archived: true"
    ]


def test_archived_expired_permit_is_kept_for_the_register(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "    expiry: 2027-04-30\n", "    expiry: 2027-04-30\n    archived: true\n")
    assert errors(site, today=date(2027, 5, 1)) == []


def test_member_without_a_role(site: Path, edit: Edit) -> None:
    edit("projects.yaml", "{username: bob, role: analyst}", "{username: bob}")
    assert errors(site) == [
        "projects.yaml:16: error: projects[0].members[1].role: member 'bob' of project "
        "'gbm-linkage' has no role (allowed: 'analyst', 'principal_investigator', "
        "'researcher', 'student')"
    ]


def test_member_without_the_researcher_site_role(site: Path, edit: Edit) -> None:
    edit(
        "people.yaml",
        "organisation: Biostatistics Unit\n    roles: [researcher]",
        "organisation: Biostatistics Unit\n    roles: [admin]",
    )
    assert errors(site) == [
        "projects.yaml:16: error: projects[0].members[1].username: member 'bob' does not have "
        "the site role 'researcher' (has: admin)",
        "projects.yaml:31: error: projects[1].members[1].username: member 'bob' does not have "
        "the site role 'researcher' (has: admin)",
    ]


def test_person_without_any_site_role(site: Path, edit: Edit) -> None:
    edit("people.yaml", "roles: [patient_rep]", "roles: []")
    assert errors(site) == [
        "people.yaml:38: error: people[6].roles: person 'pat' has no site role "
        "(allowed: 'admin', 'output_checker', 'patient_rep', 'researcher')"
    ]


def test_assigned_checker_who_is_a_project_member_is_a_conflict_of_interest(
    site: Path, edit: Edit
) -> None:
    edit(
        "people.yaml",
        "organisation: TRE output checking team\n    roles: [output_checker]\n  - username: oscar",
        "organisation: TRE output checking team\n    roles: [output_checker, researcher]\n"
        "  - username: oscar",
    )
    edit(
        "projects.yaml",
        "      - {username: bob, role: analyst}\n",
        "      - {username: bob, role: analyst}\n      - {username: olivia, role: researcher}\n"
        "    output_checkers: [olivia, oscar]\n",
    )
    assert errors(site) == [
        "permits.yaml:24: error: permits[0].conditions.reviews_required: needs 2 independent "
        "output checkers who are not project members; eligible: 1 (oscar)",
        "projects.yaml:18: error: projects[0].output_checkers[0]: conflict of interest: output "
        "checker 'olivia' is a member of project 'gbm-linkage' and would check its own "
        "project's outputs",
    ]


def test_unassigned_checker_who_is_a_member_is_warned_about(site: Path, edit: Edit) -> None:
    edit(
        "people.yaml",
        "roles: [output_checker]\n  - username: oscar",
        "roles: [output_checker, researcher]\n  - username: oscar",
    )
    edit(
        "projects.yaml",
        "{username: carla, role: principal_investigator}\n",
        "{username: carla, role: principal_investigator}\n"
        "      - {username: olivia, role: researcher}\n",
    )
    report = validate_policy(site, DEMO_TODAY)
    warnings = [
        str(f).replace(f"{site}/", "")
        for f in report.findings
        if f.severity is Severity.warning and f.file.endswith("projects.yaml")
    ]
    assert warnings == [
        "projects.yaml:31: warning: projects[1].members[1].username: output checker 'olivia' is "
        "a member of project 'hf-outcomes' and will never be asked to check its outputs"
    ]
    assert report.ok


def test_restriction_not_acknowledged(site: Path, edit: Edit) -> None:
    edit(
        "permits.yaml",
        "acknowledged_restrictions: [sponsor-ihc-ip, consortium-embargo]",
        "acknowledged_restrictions: [consortium-embargo]",
    )
    assert errors(site) == [
        "permits.yaml:22: error: permits[0].acknowledged_restrictions: dataset 'gbm-pathology' "
        "carries restriction 'sponsor-ihc-ip' (sponsor_contract: The staining protocol and "
        "images are the sponsor's intellectual property; results may not be used to develop "
        "commercial products.) that this permit does not acknowledge"
    ]


def test_lapsed_restriction_needs_no_acknowledgement(site: Path, edit: Edit) -> None:
    edit(
        "permits.yaml",
        "acknowledged_restrictions: [sponsor-ihc-ip, consortium-embargo]",
        "acknowledged_restrictions: [sponsor-ihc-ip]",
    )

    def about_restrictions(today: date) -> list[str]:
        return [e for e in errors(site, today) if "acknowledged_restrictions" in e]

    assert about_restrictions(date(2027, 7, 1)) == []
    assert len(about_restrictions(DEMO_TODAY)) == 1


def test_acknowledging_a_restriction_no_granted_dataset_has(site: Path, edit: Edit) -> None:
    edit(
        "permits.yaml",
        "    conditions:\n      reviews_required: 1",
        "    acknowledged_restrictions: [sponsor-ihc-ip]\n"
        "    conditions:\n      reviews_required: 1",
    )
    assert errors(site) == [
        "permits.yaml:41: error: permits[1].acknowledged_restrictions[0]: 'sponsor-ihc-ip' is "
        "not a restriction of any dataset this permit grants (allowed: (none defined))"
    ]


def test_restriction_that_prohibits_the_permits_purpose(site: Path, edit: Edit) -> None:
    for file in ("projects.yaml", "permits.yaml"):
        edit(file, "purpose: scientific_research", "purpose: algorithm_training")
    assert errors(site) == [
        "permits.yaml:10: error: permits[0].purpose: restriction 'sponsor-ihc-ip' of dataset "
        "'gbm-pathology' prohibits the purpose 'algorithm_training'"
    ]


def test_permit_purpose_must_match_the_project(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "purpose: public_health", "purpose: statistics")
    assert errors(site) == [
        "permits.yaml:35: error: permits[1].purpose: purpose 'statistics' differs from project "
        "'hf-outcomes''s purpose 'public_health' (allowed: 'public_health')"
    ]


def test_permit_names_someone_outside_the_project(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "people: [carla, bob]", "people: [carla, bob, alice]")
    assert errors(site) == [
        "permits.yaml:38: error: permits[1].people[2]: 'alice' is not a member of project "
        "'hf-outcomes' (allowed: 'bob', 'carla')"
    ]


def test_unknown_project_and_disclosure_profile(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "project: hf-outcomes", "project: hf-outcome")
    edit("permits.yaml", "disclosure_profile: opensafely", "disclosure_profile: open-safely")
    assert errors(site) == [
        "permits.yaml:31: error: permits[1].project: unknown project 'hf-outcome' "
        "(allowed: 'gbm-linkage', 'hf-outcomes')",
        "permits.yaml:43: error: permits[1].conditions.disclosure_profile: unknown disclosure "
        "profile 'open-safely' (allowed: 'acro-default', 'datashield', 'opensafely')",
    ]


def test_duplicate_ids_and_duplicate_yaml_keys(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "id: hf-outcomes-2026", "id: gbm-linkage-2026")
    assert errors(site) == [
        "permits.yaml:30: error: permits[1].id: id 'gbm-linkage-2026' is defined more than once"
    ]
    edit(
        "permits.yaml",
        "    issued: 2026-03-01\n",
        "    issued: 2026-03-01\n    issued: 2026-03-01\n",
    )
    assert errors(site) == [
        "permits.yaml:35: error: permits[1].issued: key 'issued' appears more than once; only "
        "one value may be given"
    ]


def test_services_load_a_policy_whose_permit_just_expired() -> None:
    """At run time an expired permit is just expired; only `validate` insists on archiving."""
    from tre.policy import load_policy

    later = date(2027, 5, 1)
    policy = load_policy(DEMO_POLICY, later)
    permit = policy.permit("hf-outcomes-2026")
    assert permit is not None
    assert not permit.can_use(later)
    assert not validate_policy(DEMO_POLICY, later).ok


def test_a_project_cannot_take_the_id_of_the_summaries_network(site: Path, edit: Edit) -> None:
    edit("projects.yaml", "  - id: hf-outcomes\n", "  - id: tre-publish\n")
    assert (
        "projects.yaml:18: error: projects[1].id: 'tre-publish' is reserved by jupyter-tre "
        "(the summaries service's network); give the project another id"
    ) in errors(site)
