"""Errors in single policy files: each names the file, the line, the field and what is allowed."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.support import DEMO_POLICY, DEMO_TODAY, REPO, Edit
from tre.policy import PolicyError, load_policy, validate_policy
from tre.policy.files import POLICY_FILES
from tre.policy.schema import render_schemas, stale_schemas


def findings(site: Path) -> list[str]:
    return [str(f).replace(f"{site}/", "") for f in validate_policy(site, DEMO_TODAY).findings]


def test_unknown_field_lists_the_allowed_fields(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "reviews_required: 2", "reviews: 2")
    assert findings(site) == [
        "permits.yaml:24: error: permits[0].conditions.reviews: unknown field 'reviews' "
        "(allowed: reviews_required, disclosure_profile, terminals_allowed, cpu_limit, mem_limit)"
    ]


def test_value_outside_an_enumeration(site: Path, edit: Edit) -> None:
    edit("datasets.yaml", "modality: nifti", "modality: mri")
    assert findings(site) == [
        "datasets.yaml:66: error: datasets[2].modality: 'mri' is not allowed (allowed: 'emr', "
        "'dicom', 'nifti', 'vcf', 'bam', 'tissue' or 'single-cell')"
    ]


def test_reviews_required_is_one_or_two(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "reviews_required: 2", "reviews_required: 3")
    assert findings(site) == [
        "permits.yaml:24: error: permits[0].conditions.reviews_required: 3 is not allowed "
        "(allowed: 1 or 2)"
    ]


def test_identifier_of_the_wrong_form(site: Path, edit: Edit) -> None:
    edit("projects.yaml", "id: hf-outcomes", "id: HF_Outcomes")
    assert findings(site) == [
        "projects.yaml:18: error: projects[1].id: 'HF_Outcomes' is not of the required form "
        "(allowed: lower-case letters, digits and hyphens, starting with a letter or digit, "
        "at most 63 characters)"
    ]


def test_missing_required_field(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "    access_body_reference: HDAB-DEMO-2026-0057\n", "")
    assert findings(site) == [
        "permits.yaml:30: error: permits[1].access_body_reference: required field is missing"
    ]


def test_dates_out_of_order(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "expiry: 2027-04-30", "expiry: 2026-02-01")
    assert findings(site) == [
        "permits.yaml:30: error: permits[1]: expiry 2026-02-01 is before start 2026-03-01"
    ]


def test_dataset_location_must_stay_inside_the_datasets_folder(site: Path, edit: Edit) -> None:
    edit(
        "datasets.yaml",
        '      - id: "1"\n        created: 2026-11-01\n        source: emr\n',
        '      - id: "1"\n        location: ../../etc\n        created: 2026-11-01\n'
        "        source: emr\n",
    )
    assert findings(site) == [
        "datasets.yaml:32: error: datasets[0].versions[0].location: must be a relative path "
        "below the datasets directory, without '..' or '//'"
    ]


def test_source_must_stay_inside_the_silos_folder(site: Path, edit: Edit) -> None:
    edit("datasets.yaml", "        source: emr\n", "        source: /etc/shadow\n")
    assert findings(site) == [
        "datasets.yaml:33: error: datasets[0].versions[0].source: must be a relative path "
        "below the silos directory, without '..' or '//'"
    ]


def test_unknown_placeholder_in_location(site: Path, edit: Edit) -> None:
    edit(
        "datasets.yaml",
        '      - id: "1"\n        created: 2026-11-01\n        source: emr\n',
        '      - id: "1"\n        location: "{site}/{dataset}"\n        created: 2026-11-01\n'
        "        source: emr\n",
    )
    assert findings(site) == [
        "datasets.yaml:32: error: datasets[0].versions[0].location: unknown placeholder {site}; "
        "allowed: {dataset}, {project}, {version}"
    ]


def test_yaml_syntax_error_names_the_line(site: Path, edit: Edit) -> None:
    edit("people.yaml", "roles: [admin]", "roles: [admin")
    assert findings(site) == [
        "people.yaml:34: error: (syntax): not valid YAML: while parsing a flow sequence started "
        "on line 33: expected ',' or ']', but got ':'"
    ]


def test_file_that_is_not_a_mapping(site: Path) -> None:
    (site / "projects.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    assert findings(site) == [
        "projects.yaml:1: error: projects: expected a mapping with the top-level key "
        "'projects', found a list"
    ]


def test_missing_required_file(site: Path) -> None:
    (site / "people.yaml").unlink()
    assert findings(site) == [
        "people.yaml: error: people: required policy file is missing (allowed: a YAML file "
        "with the top-level key 'people')"
    ]


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert [str(f) for f in validate_policy(missing, DEMO_TODAY).findings] == [
        f"{missing}: error: (folder): policy folder does not exist or is not a folder "
        "(allowed: a folder holding site.yaml, people.yaml, datasets.yaml, projects.yaml, "
        "permits.yaml, disclosure.yaml, packages.yaml)"
    ]


def test_site_profiles_extend_but_never_redefine_the_builtins(site: Path) -> None:
    (site / "disclosure.yaml").write_text(
        "disclosure_profiles:\n"
        "  - {id: datashield, title: DataSHIELD nfilter.tab, safe_threshold: 3}\n"
        "  - {id: opensafely, title: weaker copy, safe_threshold: 2}\n",
        encoding="utf-8",
    )
    assert findings(site)[:1] == [
        "disclosure.yaml:3: error: disclosure_profiles[1].id: 'opensafely' is a built-in "
        "profile and cannot be redefined; give the site's profile its own id"
    ]
    (site / "disclosure.yaml").write_text(
        "disclosure_profiles:\n  - {id: datashield, title: DataSHIELD, safe_threshold: 3}\n",
        encoding="utf-8",
    )
    policy = load_policy(site, DEMO_TODAY)
    assert sorted(policy.profiles()) == ["acro-default", "datashield", "opensafely"]
    assert policy.profiles()["datashield"].safe_threshold == 3


def test_rounding_without_redaction_is_refused(site: Path) -> None:
    (site / "disclosure.yaml").write_text(
        "disclosure_profiles:\n  - {id: rounding, title: Rounding only, round_to: 5}\n",
        encoding="utf-8",
    )
    assert findings(site)[:1] == [
        "disclosure.yaml:2: error: disclosure_profiles[0]: round_to needs redact_at_or_below: "
        "rounding alone does not hide low counts"
    ]


def test_load_policy_raises_with_every_error(site: Path, edit: Edit) -> None:
    edit("permits.yaml", "project: hf-outcomes", "project: nope")
    edit("permits.yaml", "disclosure_profile: opensafely", "disclosure_profile: nope")
    with pytest.raises(PolicyError) as caught:
        load_policy(site, DEMO_TODAY)
    assert len(caught.value.findings) == 3  # two errors and the expiry warning
    assert str(caught.value).startswith("2 error(s) in policy:\n")


def test_builtin_disclosure_profiles_carry_the_published_defaults() -> None:
    profiles = load_policy(DEMO_POLICY, DEMO_TODAY).profiles()
    acro = profiles["acro-default"]
    assert (
        acro.safe_threshold,
        acro.safe_dof_threshold,
        acro.safe_nk_n,
        acro.safe_nk_k,
        acro.safe_pratio_p,
        acro.check_missing_values,
        acro.survival_safe_threshold,
        acro.zeros_are_disclosive,
    ) == (10, 10, 2, 0.9, 0.1, False, 10, True)
    opensafely = profiles["opensafely"]
    assert (
        opensafely.redact_at_or_below,
        opensafely.round_to,
        opensafely.min_individuals_per_statistic,
    ) == (7, 5, 6)


def test_committed_schemas_match_the_models() -> None:
    assert stale_schemas(REPO / "policies" / "schema") == [], "run `tre policy schema`"


def test_schema_drift_is_detected(tmp_path: Path) -> None:
    for name, text in render_schemas().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "permits.schema.json").write_text("{}\n", encoding="utf-8")
    assert stale_schemas(tmp_path) == ["permits.schema.json"]


@pytest.mark.parametrize("spec", POLICY_FILES, ids=lambda s: s.name)
def test_demo_files_validate_against_the_committed_schemas(spec: object) -> None:
    from tre.policy.files import PolicyFileSpec

    assert isinstance(spec, PolicyFileSpec)
    path = DEMO_POLICY / spec.name
    schema = json.loads((REPO / "policies" / "schema" / spec.schema_name).read_text())
    # YAML gives dates as date objects; JSON Schema sees the text as an editor would.
    data = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
    jsonschema.validate(data, schema, format_checker=jsonschema.FormatChecker())


def test_a_schema_rejects_what_the_model_rejects() -> None:
    schema = json.loads((REPO / "policies" / "schema" / "permits.schema.json").read_text())
    bad = {"permits": [{"id": "x", "unknown_field": 1}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_a_future_date_still_validates_the_demo_files_structurally() -> None:
    report = validate_policy(DEMO_POLICY, date(2030, 1, 1))
    assert {f.field for f in report.errors} == {"permits[0].expiry", "permits[1].expiry"}


def test_dicom_options_that_exclude_each_other(site: Path, edit: Edit) -> None:
    edit(
        "datasets.yaml",
        "    modality: dicom\n",
        "    modality: dicom\n    deidentification:\n      dicom_options:\n"
        "        [retain_longitudinal_full_dates, retain_longitudinal_modified_dates]\n",
    )
    assert findings(site) == [
        "datasets.yaml:44: error: datasets[1].deidentification: dicom_options: "
        "retain_longitudinal_full_dates and retain_longitudinal_modified_dates exclude each other"
    ]


def test_safe_private_tags_must_name_creator_and_element(site: Path, edit: Edit) -> None:
    edit(
        "datasets.yaml",
        "    modality: dicom\n",
        "    modality: dicom\n    deidentification:\n"
        "      safe_private_tags: ['SIEMENS CSA HEADER/0029,xx08', '0028,0010']\n",
    )
    assert findings(site) == [
        "datasets.yaml:44: error: datasets[1].deidentification.safe_private_tags: "
        "'0028,0010' is not '<private creator>/<gggg>,xx<ee>', e.g. "
        "'SIEMENS CSA HEADER/0029,xx08'"
    ]
