"""The dataset catalogue (EHDS Art. 77): every HealthDCAT-AP field for every dataset, the
same graph back from Turtle and JSON-LD, and SHACL failures that name dataset and property."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from datetime import date

import pytest
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import RDF, RDFS, XSD

from tests.support import DEMO_TODAY
from tre.policy import Policy
from tre.publish.browse import CatalogueEntry, catalogue_entries, catalogue_json
from tre.publish.catalogue import (
    CatalogueError,
    catalogue_graph,
    catalogue_jsonld,
    catalogue_turtle,
    dataset_uri,
)
from tre.publish.conformance import can_catalogue, check_catalogue

BASE = "https://tre.example.org/"
DCAT = Namespace("http://www.w3.org/ns/dcat#")
DCT = Namespace("http://purl.org/dc/terms/")
DCATAP = Namespace("http://data.europa.eu/r5r/")
HEALTH = Namespace("http://healthdataportal.eu/ns/health#")
DPV = Namespace("https://w3id.org/dpv#")
FOAF = Namespace("http://xmlns.com/foaf/0.1/")
ODRL = Namespace("http://www.w3.org/ns/odrl/2/")

# The "HealthDCAT-AP fields" of the project's reference, written out here rather than
# imported, so that the module dropping one fails these tests.
REQUIRED = {
    "dct:title": DCT.title,
    "dct:description": DCT.description,
    "dct:identifier": DCT.identifier,
    "dct:accessRights": DCT.accessRights,
    "dcatap:applicableLegislation": DCATAP.applicableLegislation,
    "healthdcatap:hdab": HEALTH.hdab,
    "healthdcatap:healthCategory": HEALTH.healthCategory,
    "healthdcatap:healthTheme": HEALTH.healthTheme,
    "healthdcatap:hasCodingSystem": HEALTH.hasCodingSystem,
    "healthdcatap:numberOfRecords": HEALTH.numberOfRecords,
    "healthdcatap:numberOfUniqueIndividuals": HEALTH.numberOfUniqueIndividuals,
    "healthdcatap:minTypicalAge": HEALTH.minTypicalAge,
    "healthdcatap:maxTypicalAge": HEALTH.maxTypicalAge,
    "dct:temporal": DCT.temporal,
    "dct:spatial": DCT.spatial,
    "healthdcatap:retentionPeriod": HEALTH.retentionPeriod,
    "dpv:hasPersonalData": DPV.hasPersonalData,
    "dpv:hasPurpose": DPV.hasPurpose,
    "dpv:hasLegalBasis": DPV.hasLegalBasis,
}

GBM = "http://www.wikidata.org/entity/Q282142"
DEMO_CALENDAR = {"start": date(2022, 1, 1), "end": date(2025, 6, 30)}
RETENTION = {"start": date(2026, 1, 1), "end": date(2036, 12, 31)}
COMPLETION: dict[str, dict[str, object]] = {
    # What policies/demo/datasets.yaml lacks for a conforming catalogue, with values
    # taken from the demo silos (`tre demo data`, default seed, 200 patients; ages at
    # 2025-06-30). The counts are in VERSION_COUNTS.
    "gbm-mri": {
        "min_typical_age": 39,
        "max_typical_age": 87,
        "retention_period": RETENTION,
    },
    "gbm-mri-nifti": {
        "min_typical_age": 39,
        "max_typical_age": 85,
        "temporal": DEMO_CALENDAR,
        "retention_period": RETENTION,
        "has_coding_system": ("http://dicom.nema.org/resources/ontology/DCM",),
    },
    "gbm-variants": {
        "min_typical_age": 39,
        "max_typical_age": 87,
        "temporal": DEMO_CALENDAR,
        "retention_period": RETENTION,
    },
    "gbm-alignments": {
        "min_typical_age": 67,
        "max_typical_age": 77,
        "temporal": DEMO_CALENDAR,
        "retention_period": RETENTION,
        "health_theme": (GBM,),
        "has_coding_system": (
            "https://hdeu-dcat.data.health.europa.eu/resource/authority/coding-system/HGNC",
        ),
    },
    "gbm-pathology": {
        "min_typical_age": 47,
        "max_typical_age": 85,
        "temporal": DEMO_CALENDAR,
        "retention_period": RETENTION,
        "health_theme": (GBM,),
        "has_coding_system": ("http://snomed.info/sct",),
    },
    "gbm-single-cell": {
        "min_typical_age": 67,
        "max_typical_age": 77,
        "temporal": DEMO_CALENDAR,
        "retention_period": RETENTION,
        "health_theme": (GBM,),
        "has_coding_system": (
            "https://hdeu-dcat.data.health.europa.eu/resource/authority/coding-system/HGNC",
        ),
    },
}

VERSION_COUNTS: dict[str, tuple[int, int | None]] = {
    # (number_of_records, number_of_unique_individuals) of version "1", counted in the
    # same silos: rows of the five EMR tables, DICOM instances, NIfTI files, VCF
    # records, BAM reads, slides, cells. They describe that extraction, so they go on it.
    "clinical-records": (12903, None),
    "gbm-mri": (362, 40),
    "gbm-mri-nifti": (58, 29),
    "gbm-variants": (991, 22),
    "gbm-alignments": (1037, 3),
    "gbm-pathology": (25, 25),
    "gbm-single-cell": (700, 4),
}


def completed(policy: Policy, **dataset_changes: Mapping[str, object]) -> Policy:
    """The policy with what COMPLETION proposes filled in where it is missing, and each
    dataset then changed as asked (by id)."""
    datasets = []
    for dataset in policy.datasets:
        data = dataset.model_dump()
        for field, value in COMPLETION.get(dataset.id, {}).items():
            if data[field] in (None, ()):
                data[field] = value
        records, individuals = VERSION_COUNTS.get(dataset.id, (None, None))
        first = data["versions"][0]
        first["number_of_records"] = first["number_of_records"] or records
        first["number_of_unique_individuals"] = first["number_of_unique_individuals"] or individuals
        data.update(dataset_changes.get(dataset.id, {}))
        datasets.append(data)
    return Policy.model_validate({**policy.model_dump(), "datasets": datasets})


@pytest.fixture(scope="module")
def full_policy(demo_policy: Policy) -> Policy:
    return completed(demo_policy)


@pytest.fixture
def graph(full_policy: Policy) -> Graph:
    return catalogue_graph(full_policy, BASE)


def violations(graph: Graph) -> list[str]:
    with pytest.raises(CatalogueError) as caught:
        check_catalogue(graph)
    assert not can_catalogue(graph)
    return str(caught.value).splitlines()[1:]


def node(dataset_id: str) -> URIRef:
    return dataset_uri(BASE, dataset_id)


def test_the_demo_policy_makes_a_conforming_catalogue(demo_policy: Policy) -> None:
    check_catalogue(catalogue_graph(demo_policy, BASE))


def test_a_complete_policy_makes_a_conforming_catalogue(graph: Graph) -> None:
    check_catalogue(graph)
    assert can_catalogue(graph)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_dataset_carries_every_reference_field(
    graph: Graph, full_policy: Policy, name: str
) -> None:
    for dataset in full_policy.datasets:
        assert graph.value(node(dataset.id), REQUIRED[name]) is not None, (dataset.id, name)


def test_one_catalogue_of_the_site_published_by_its_access_body(
    graph: Graph, full_policy: Policy
) -> None:
    (catalogue,) = graph.subjects(RDF.type, DCAT.Catalog)
    assert graph.value(catalogue, DCT.title) == Literal(full_policy.site.name, lang="en")
    publisher = graph.value(catalogue, DCT.publisher)
    assert graph.value(publisher, FOAF.name) == Literal(full_policy.site.access_body)
    assert set(graph.objects(catalogue, DCAT.dataset)) == {node(d.id) for d in full_policy.datasets}


def test_values_use_the_eu_vocabularies(graph: Graph) -> None:
    records = node("clinical-records")
    assert graph.value(records, DCT.accessRights) == URIRef(
        "http://publications.europa.eu/resource/authority/access-right/NON_PUBLIC"
    )
    assert graph.value(records, DCATAP.applicableLegislation) == URIRef(
        "http://data.europa.eu/eli/reg/2025/327/oj"
    )
    assert graph.value(records, HEALTH.healthCategory) == URIRef(
        "https://hdeu-dcat.data.health.europa.eu/resource/authority/healthcategories/EHRS"
    )
    assert graph.value(node("gbm-single-cell"), HEALTH.healthCategory) == URIRef(
        "https://hdeu-dcat.data.health.europa.eu/resource/authority/healthcategories/HPML"
    )
    assert graph.value(records, DCT.spatial) == URIRef(
        "http://publications.europa.eu/resource/authority/country/BEL"
    )
    hdab = graph.value(records, HEALTH.hdab)
    assert graph.value(hdab, FOAF.name) == Literal("Health Data Access Body (demo)")
    publisher = graph.value(records, DCT.publisher)
    assert graph.value(publisher, FOAF.name) == Literal("Demo University Hospital")
    temporal = graph.value(records, DCT.temporal)
    assert graph.value(temporal, RDF.type) == DCT.PeriodOfTime
    assert graph.value(temporal, DCAT.startDate) == Literal(date(2018, 1, 1), datatype=XSD.date)
    assert graph.value(records, HEALTH.numberOfUniqueIndividuals) == Literal(
        200, datatype=XSD.nonNegativeInteger
    )
    purposes = {graph.value(p, RDFS.label) for p in graph.objects(records, DPV.hasPurpose)}
    assert Literal("Scientific research related to health or care", lang="en") in purposes


def test_derived_values(demo_policy: Policy) -> None:
    versions = [
        {"id": "1", "created": date(2026, 1, 1), "number_of_records": 100},
        {"id": "2", "created": date(2026, 6, 1), "number_of_records": 150},
    ]
    policy = completed(
        demo_policy,
        **{"gbm-mri": {"versions": versions, "spatial": None}},
        **{"gbm-variants": {"identifier": "BE-DEMO-GBM-VCF"}},
    )
    graph = catalogue_graph(policy, BASE)
    mri = node("gbm-mri")
    # The latest version's count, never a sum: each version is a whole re-extraction.
    assert graph.value(mri, HEALTH.numberOfRecords) == Literal(150, datatype=XSD.nonNegativeInteger)
    assert graph.value(mri, DCAT.version) == Literal("2")
    assert len(list(graph.objects(mri, DCAT.hasVersion))) == 2
    assert graph.value(mri, DCT.spatial) == URIRef(
        "http://publications.europa.eu/resource/authority/country/BEL"
    )
    assert graph.value(mri, DCT.identifier) == Literal("gbm-mri")
    assert graph.value(node("gbm-variants"), DCT.identifier) == Literal("BE-DEMO-GBM-VCF")
    # The dataset's own count wins over its versions'.
    assert graph.value(node("clinical-records"), HEALTH.numberOfUniqueIndividuals) == Literal(
        200, datatype=XSD.nonNegativeInteger
    )


def test_turtle_parses_back_to_the_same_graph(graph: Graph) -> None:
    again = Graph().parse(data=catalogue_turtle(graph), format="turtle")
    assert isomorphic(graph, again)


def test_jsonld_parses_back_to_the_same_graph(graph: Graph) -> None:
    text = catalogue_jsonld(graph)
    document = json.loads(text)
    assert document["@context"]["healthdcatap"] == "http://healthdataportal.eu/ns/health#"
    assert all(isinstance(v, str) for v in document["@context"].values())
    assert any(item.get("@type") == "dcat:Dataset" for item in document["@graph"])
    with warnings.catch_warnings():
        # rdflib 7's JSON-LD parser builds a ConjunctiveGraph internally, deprecated by rdflib.
        warnings.filterwarnings("ignore", "ConjunctiveGraph is deprecated", DeprecationWarning)
        again = Graph().parse(data=text, format="json-ld")
    assert isomorphic(graph, again)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_shacl_names_dataset_and_property_of_a_missing_field(graph: Graph, name: str) -> None:
    graph.remove((node("gbm-variants"), REQUIRED[name], None))
    assert violations(graph) == [f"dataset gbm-variants: {name}: missing"]


@pytest.mark.parametrize(
    ("prop", "value", "expected"),
    [
        (
            HEALTH.numberOfRecords,
            Literal("-5", datatype=XSD.nonNegativeInteger),
            'healthdcatap:numberOfRecords: "-5" is not a valid xsd:nonNegativeInteger',
        ),
        (
            HEALTH.minTypicalAge,
            Literal("eighteen"),
            'healthdcatap:minTypicalAge: "eighteen" is not a valid xsd:nonNegativeInteger',
        ),
        (
            HEALTH.minTypicalAge,
            Literal(96, datatype=XSD.nonNegativeInteger),
            'healthdcatap:minTypicalAge: "96" is greater than healthdcatap:maxTypicalAge',
        ),
        (
            DCT.spatial,
            Literal("BE"),
            'dct:spatial: "BE" is not an IRI',
        ),
        (
            HEALTH.healthCategory,
            URIRef("https://example.org/categories/ehr"),
            "healthdcatap:healthCategory: <https://example.org/categories/ehr> "
            "is not in the vocabulary the shapes allow",
        ),
        (
            DCT.accessRights,
            URIRef("http://publications.europa.eu/resource/authority/access-right/OPEN"),
            "dct:accessRights: "
            "<http://publications.europa.eu/resource/authority/access-right/OPEN> "
            "is not in the vocabulary the shapes allow",
        ),
    ],
)
def test_shacl_names_dataset_and_property_of_a_wrong_value(
    graph: Graph, prop: URIRef, value: Literal | URIRef, expected: str
) -> None:
    graph.set((node("clinical-records"), prop, value))
    assert violations(graph) == [f"dataset clinical-records: {expected}"]


def test_shacl_follows_links_back_to_the_dataset(graph: Graph) -> None:
    mri = node("gbm-mri")
    graph.remove((graph.value(mri, DCAT.hasVersion), DCT.issued, None))
    graph.remove((graph.value(mri, DCT.temporal), DCAT.startDate, None))
    restriction = graph.value(node("gbm-pathology"), DCT.rights)
    graph.remove((restriction, DCT.rightsHolder, None))
    assert violations(graph) == [
        "dataset gbm-mri: dcat:hasVersion/dct:issued: missing",
        "dataset gbm-mri: dct:temporal/dcat:startDate: missing",
        "dataset gbm-pathology: dct:rights/dct:rightsHolder: missing",
    ]


def test_the_ehds_must_be_among_the_applicable_legislation(graph: Graph) -> None:
    graph.set(
        (
            node("gbm-mri"),
            DCATAP.applicableLegislation,
            URIRef("http://data.europa.eu/eli/reg/2016/679/oj"),
        )
    )
    assert violations(graph) == [
        "dataset gbm-mri: dcatap:applicableLegislation: "
        "must include <http://data.europa.eu/eli/reg/2025/327/oj>"
    ]


def test_a_bad_base_uri_is_refused(full_policy: Policy) -> None:
    with pytest.raises(CatalogueError, match=r"base URI 'tre\.example\.org'"):
        catalogue_graph(full_policy, "tre.example.org")


def test_restrictions_are_visible_in_the_catalogue(graph: Graph) -> None:
    (ip,) = graph.objects(node("gbm-pathology"), DCT.rights)
    assert graph.value(ip, RDF.type) == DCT.RightsStatement
    assert "sponsor's intellectual property" in str(graph.value(ip, RDFS.label))
    holder = graph.value(ip, DCT.rightsHolder)
    assert graph.value(holder, FOAF.name) == Literal("Demo Pharma SA (study sponsor)")
    comment = str(graph.value(ip, RDFS.comment))
    assert "Clinical trial agreement DP-2019-07, clause 12.3" in comment
    assert "Training, testing and evaluating algorithms (EHDS Art. 53(1)(e)(ii))" in comment
    prohibited = {
        graph.value(graph.value(rule, ODRL.constraint), ODRL.rightOperand)
        for rule in graph.objects(ip, ODRL.prohibition)
    }
    assert prohibited == {
        URIRef(f"{BASE}purposes/product_development"),
        URIRef(f"{BASE}purposes/algorithm_training"),
    }
    (embargo,) = graph.objects(node("gbm-single-cell"), DCT.rights)
    assert graph.value(graph.value(embargo, DCT.temporal), DCAT.endDate) == Literal(
        date(2027, 6, 30), datatype=XSD.date
    )
    assert graph.value(node("clinical-records"), DCT.rights) is None


def test_entries_show_restrictions_and_what_they_leave_permitted(full_policy: Policy) -> None:
    policy = completed(
        full_policy,
        **{"gbm-pathology": {"has_purpose": ("scientific_research", "algorithm_training")}},
    )
    entry = _entry(policy, "gbm-pathology", DEMO_TODAY)
    (restriction,) = entry.restrictions
    assert restriction.holder == "Demo Pharma SA (study sponsor)"
    assert [p.code for p in restriction.prohibited_purposes] == [
        "product_development",
        "algorithm_training",
    ]
    assert restriction.in_force
    assert [p.code for p in entry.access_conditions.permitted_purposes] == ["scientific_research"]
    assert entry.access_conditions.access_body == "Health Data Access Body (demo)"
    assert entry.access_conditions.legal_basis == ("GDPR Art. 9(2)(j)", "EHDS Art. 68")
    assert entry.health_categories[0].article == "Art. 51(1)(q)"
    assert entry.health_categories[0].label == "Health data from biobanks and associated databases"
    assert entry.access_rights_label == "non-public"
    assert [
        (v.id, v.number_of_records, v.number_of_unique_individuals) for v in entry.versions
    ] == [("1", 25, 25)]
    assert (entry.min_typical_age, entry.max_typical_age) == (47, 85)

    embargo = _entry(policy, "gbm-single-cell", date(2027, 6, 30)).restrictions[0]
    lapsed = _entry(policy, "gbm-single-cell", date(2027, 7, 1)).restrictions[0]
    assert (embargo.until, embargo.in_force, lapsed.in_force) == (date(2027, 6, 30), True, False)


@pytest.mark.parametrize(
    ("today", "counts"),
    [
        (date(2026, 1, 14), {"clinical-records": 0, "gbm-mri": 0}),
        (date(2026, 1, 15), {"clinical-records": 1, "gbm-mri": 1}),
        (DEMO_TODAY, {"clinical-records": 2, "gbm-mri": 1}),
        (date(2027, 5, 1), {"clinical-records": 1, "gbm-mri": 1}),
        (date(2028, 1, 15), {"clinical-records": 0, "gbm-mri": 0}),
    ],
)
def test_entries_count_the_permits_active_that_day(
    full_policy: Policy, today: date, counts: dict[str, int]
) -> None:
    entries = {e.id: e.active_permits for e in catalogue_entries(full_policy, today)}
    assert {k: entries[k] for k in counts} == counts


def test_revoked_and_archived_permits_are_not_counted(full_policy: Policy) -> None:
    permits = [p.model_dump() for p in full_policy.permits]
    permits[0]["revoked"] = {"effective": date(2026, 6, 1), "reason": "breach of conditions"}
    permits[1]["archived"] = True
    policy = Policy.model_validate({**full_policy.model_dump(), "permits": permits})
    assert {e.id: e.active_permits for e in catalogue_entries(policy, DEMO_TODAY)} == {
        d.id: 0 for d in policy.datasets
    }


def test_catalogue_json_is_the_entries(full_policy: Policy) -> None:
    entries = catalogue_entries(full_policy, DEMO_TODAY)
    assert json.loads(catalogue_json(entries)) == [e.model_dump(mode="json") for e in entries]


def _entry(policy: Policy, dataset_id: str, today: date) -> CatalogueEntry:
    return next(e for e in catalogue_entries(policy, today) if e.id == dataset_id)
