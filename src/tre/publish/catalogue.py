"""The dataset catalogue (EHDS Art. 77): the policy's datasets in HealthDCAT-AP (RDF).

The RDF says what the policy says, plus the few values derived from it that the
reference page lists; nothing is published unless `conformance.check_catalogue` found
the graph conforming to our SHACL shapes (`shapes/healthdcatap.ttl`), which require
every HealthDCAT-AP field the site has committed to carry. `browse` gives the same
datasets as plain entries for the catalogue page.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCTERMS, FOAF, ODRL2, RDF, RDFS, SKOS, XSD
from rdflib.term import Node

from tre.policy import Dataset, DatasetVersion, Policy
from tre.policy.datasets import AccessRights, Period, Restriction
from tre.policy.ehds import EHDS_ELI, HealthCategory, Purpose

DCAT = Namespace("http://www.w3.org/ns/dcat#")
"""DCAT 3 (rdflib's closed DCAT namespace lacks dcat:version, dcat:hasVersion, ...)."""
DCATAP = Namespace("http://data.europa.eu/r5r/")
HEALTHDCATAP = Namespace("http://healthdataportal.eu/ns/health#")
"""HealthDCAT-AP's own namespace (Release 5 onwards)."""
DPV = Namespace("https://w3id.org/dpv#")
PD = Namespace("https://w3id.org/dpv/pd#")
"""DPV's personal-data categories: bare words in `has_personal_data` name concepts here."""
ELI = Namespace("http://data.europa.eu/eli/ontology#")
ACCESS_RIGHT = Namespace("http://publications.europa.eu/resource/authority/access-right/")
COUNTRY = Namespace("http://publications.europa.eu/resource/authority/country/")
HEALTH_CATEGORIES = "https://hdeu-dcat.data.health.europa.eu/resource/authority/healthcategories"
"""The HealthData@EU vocabulary of the EHDS Art. 51 categories (a SKOS concept scheme)."""

LANGUAGE = "en"
"""The language of the policy's free text (titles, descriptions, summaries)."""

PREFIXES: dict[str, Namespace] = {
    "dcat": DCAT,
    "dct": Namespace(str(DCTERMS)),
    "dcatap": DCATAP,
    "healthdcatap": HEALTHDCATAP,
    "dpv": DPV,
    "pd": PD,
    "eli": ELI,
    "foaf": Namespace(str(FOAF)),
    "odrl": Namespace(str(ODRL2)),
    "skos": Namespace(str(SKOS)),
    "rdfs": Namespace(str(RDFS)),
    "xsd": Namespace(str(XSD)),
}
"""Prefixes of the Turtle output and terms of the JSON-LD @context."""

_CATEGORY: dict[HealthCategory, tuple[str, str]] = {
    HealthCategory.ehr: ("EHRS", "Electronic health data from EHRs"),
    HealthCategory.health_determinants: (
        "DIOH",
        "Data on factors impacting on health, including socio-economic, environmental "
        "and behavioural determinants of health",
    ),
    HealthCategory.aggregated_needs_resources: (
        "NRPE",
        "Aggregated data on healthcare needs, resources allocated to healthcare, the "
        "provision of and access to healthcare, healthcare expenditure and financing",
    ),
    HealthCategory.pathogens: ("RPDG", "Data on pathogens that impact human health"),
    HealthCategory.administrative: (
        "HRAD",
        "Healthcare-related administrative data, including on dispensations, "
        "reimbursement claims and reimbursements",
    ),
    HealthCategory.genetic: ("HGPD", "Human genetic, epigenomic and genomic data"),
    HealthCategory.other_omics: (
        "HPML",
        "Other human molecular data such as proteomic, transcriptomic, metabolomic, "
        "lipidomic and other omic data",
    ),
    HealthCategory.device_generated: (
        "PGEH",
        "Personal electronic health data automatically generated through medical devices",
    ),
    HealthCategory.wellness_apps: ("WELA", "Data from wellness applications"),
    HealthCategory.professionals: (
        "IDHP",
        "Data on professional status, and on the specialisation and institution of "
        "health professionals involved in the treatment of a natural person",
    ),
    HealthCategory.population_registries: (
        "PHDR",
        "Data from population-based health data registries such as public health registries",
    ),
    HealthCategory.medical_registries: (
        "MRMR",
        "Data from medical registries and mortality registries",
    ),
    HealthCategory.clinical_trials: (
        "EHCT",
        "Data from clinical trials, clinical studies, clinical investigations and "
        "performance studies",
    ),
    HealthCategory.medical_devices: ("EMRD", "Other health data from medical devices"),
    HealthCategory.product_registries: (
        "RMMD",
        "Data from registries for medicinal products and medical devices",
    ),
    HealthCategory.research_cohorts: (
        "RQSH",
        "Data from research cohorts, questionnaires and surveys related to health, after "
        "the first publication of the related results",
    ),
    HealthCategory.biobanks: ("EINS", "Health data from biobanks and associated databases"),
}
"""Each Art. 51(1) category: its code in the HealthData@EU vocabulary and its label."""

_ISO3: dict[str, str] = dict(
    re.findall(
        r"([A-Z]{2}):([A-Z]{3})",
        "AT:AUT BE:BEL BG:BGR HR:HRV CY:CYP CZ:CZE DK:DNK EE:EST FI:FIN FR:FRA DE:DEU GR:GRC "
        "HU:HUN IE:IRL IT:ITA LV:LVA LT:LTU LU:LUX MT:MLT NL:NLD PL:POL PT:PRT RO:ROU SK:SVK "
        "SI:SVN ES:ESP SE:SWE IS:ISL LI:LIE NO:NOR",
    )
)
"""ISO 3166-1 alpha-2 to the EU country authority's alpha-3 codes, for the EU and the EEA."""

ACCESS_LABELS = {
    AccessRights.public: "public",
    AccessRights.restricted: "restricted",
    AccessRights.non_public: "non-public",
}


class CatalogueError(Exception):
    """The catalogue cannot be published as it is; the message lists every reason."""


def health_category_uri(category: HealthCategory) -> URIRef:
    return URIRef(f"{HEALTH_CATEGORIES}/{_CATEGORY[category][0]}")


def health_category_label(category: HealthCategory) -> str:
    return _CATEGORY[category][1]


def dataset_uri(base_uri: str, dataset_id: str) -> URIRef:
    """The IRI of a dataset in the catalogue published under `base_uri`."""
    return URIRef(f"{_base(base_uri)}/datasets/{dataset_id}")


# --- the graph -----------------------------------------------------------------------


def catalogue_graph(policy: Policy, base_uri: str) -> Graph:
    """One dcat:Catalog (the site, published by its access body) with one dcat:Dataset per
    dataset of the policy. Missing fields stay missing: `check_catalogue` names them."""
    base = _base(base_uri)
    graph = Graph()
    for prefix, namespace in PREFIXES.items():
        graph.bind(prefix, namespace, replace=True)
    catalogue = URIRef(f"{base}/catalogue")
    graph.add((catalogue, RDF.type, DCAT.Catalog))
    graph.add((catalogue, DCTERMS.title, Literal(policy.site.name, lang=LANGUAGE)))
    graph.add(
        (
            catalogue,
            DCTERMS.description,
            Literal(
                f"Datasets available for secondary use in {policy.site.name} under a data "
                f"permit of {policy.site.access_body} (EHDS Art. 77).",
                lang=LANGUAGE,
            ),
        )
    )
    graph.add((catalogue, DCTERMS.publisher, _agent(graph, base, policy.site.access_body)))
    graph.add((catalogue, DCTERMS.spatial, _spatial(policy.site.country)))
    for dataset in policy.datasets:
        node = _add_dataset(graph, base, policy, dataset)
        graph.add((catalogue, DCAT.dataset, node))
    return graph


def _add_dataset(graph: Graph, base: str, policy: Policy, dataset: Dataset) -> URIRef:
    node = dataset_uri(base, dataset.id)
    graph.add((node, RDF.type, DCAT.Dataset))
    _add_description(graph, base, node, dataset)
    _add_health(graph, node, dataset)
    _add_coverage(graph, node, dataset, policy.site.country)
    _add_privacy(graph, base, node, dataset)
    latest = latest_version(dataset)
    if latest is not None:
        graph.add((node, DCAT.version, Literal(latest.id)))
    for version in dataset.versions:
        graph.add((node, DCAT.hasVersion, _version(graph, node, version)))
    for restriction in dataset.restrictions:
        graph.add((node, DCTERMS.rights, _restriction(graph, base, node, restriction)))
    return node


def _add_description(graph: Graph, base: str, node: URIRef, dataset: Dataset) -> None:
    graph.add((node, DCTERMS.title, Literal(dataset.title, lang=LANGUAGE)))
    graph.add((node, DCTERMS.description, Literal(dataset.description, lang=LANGUAGE)))
    graph.add((node, DCTERMS.identifier, Literal(dataset.identifier or dataset.id)))
    graph.add((node, DCTERMS.accessRights, ACCESS_RIGHT[dataset.access_rights.value]))
    for eli in dataset.applicable_legislation:
        graph.add((node, DCATAP.applicableLegislation, URIRef(eli)))
        graph.add((URIRef(eli), RDF.type, ELI.LegalResource))
    graph.add((node, DCTERMS.publisher, _agent(graph, base, dataset.data_holder)))
    graph.add((node, HEALTHDCATAP.hdab, _agent(graph, base, dataset.hdab)))


def _add_health(graph: Graph, node: URIRef, dataset: Dataset) -> None:
    for category in dataset.health_category:
        concept = health_category_uri(category)
        graph.add((node, HEALTHDCATAP.healthCategory, concept))
        graph.add((concept, RDF.type, SKOS.Concept))
        graph.add((concept, SKOS.inScheme, URIRef(HEALTH_CATEGORIES)))
        label = Literal(health_category_label(category), lang=LANGUAGE)
        graph.add((concept, SKOS.prefLabel, label))
        graph.add((concept, SKOS.notation, Literal(category.article)))
    for theme in dataset.health_theme:
        graph.add((node, HEALTHDCATAP.healthTheme, URIRef(theme)))
    for system in dataset.has_coding_system:
        graph.add((node, HEALTHDCATAP.hasCodingSystem, URIRef(system)))
        graph.add((URIRef(system), RDF.type, DCTERMS.Standard))


def _add_coverage(graph: Graph, node: URIRef, dataset: Dataset, country: str) -> None:
    """Counts, ages, period, place and retention: who and what the data cover."""
    records, individuals = dataset_counts(dataset)
    for prop, value in (
        (HEALTHDCATAP.numberOfRecords, records),
        (HEALTHDCATAP.numberOfUniqueIndividuals, individuals),
        (HEALTHDCATAP.minTypicalAge, dataset.min_typical_age),
        (HEALTHDCATAP.maxTypicalAge, dataset.max_typical_age),
    ):
        if value is not None:
            graph.add((node, prop, Literal(value, datatype=XSD.nonNegativeInteger)))
    if dataset.temporal is not None:
        period = _period(graph, f"{node}/temporal", dataset.temporal)
        graph.add((node, DCTERMS.temporal, period))
    graph.add((node, DCTERMS.spatial, _spatial(dataset.spatial or country)))
    if dataset.retention_period is not None:
        period = _period(graph, f"{node}/retention", dataset.retention_period)
        graph.add((node, HEALTHDCATAP.retentionPeriod, period))


def _add_privacy(graph: Graph, base: str, node: URIRef, dataset: Dataset) -> None:
    for category_of_data in dataset.has_personal_data:
        graph.add((node, DPV.hasPersonalData, _personal_data(category_of_data)))
    for purpose in dataset.has_purpose:
        graph.add((node, DPV.hasPurpose, _purpose(graph, base, purpose)))
    for basis in dataset.has_legal_basis:
        graph.add((node, DPV.hasLegalBasis, _legal_basis(graph, base, basis)))


def latest_version(dataset: Dataset) -> DatasetVersion | None:
    """The most recently created version (the later-listed one on the same day)."""
    if not dataset.versions:
        return None
    return max(enumerate(dataset.versions), key=lambda item: (item[1].created, item[0]))[1]


def dataset_counts(dataset: Dataset) -> tuple[int | None, int | None]:
    """(numberOfRecords, numberOfUniqueIndividuals): the dataset's own, else its latest
    version's. Never a sum over versions: each version is a whole re-extraction."""
    latest = latest_version(dataset)
    records = dataset.number_of_records
    individuals = dataset.number_of_unique_individuals
    if records is None and latest is not None:
        records = latest.number_of_records
    if individuals is None and latest is not None:
        individuals = latest.number_of_unique_individuals
    return records, individuals


def _base(base_uri: str) -> str:
    parts = urlsplit(base_uri)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
        raise CatalogueError(
            f"base URI {base_uri!r}: must be an absolute http(s) URI without query or fragment"
        )
    return base_uri.rstrip("/")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unnamed"


def _agent(graph: Graph, base: str, name: str) -> URIRef:
    node = URIRef(f"{base}/agents/{_slug(name)}")
    graph.add((node, RDF.type, FOAF.Agent))
    graph.add((node, FOAF.name, Literal(name)))
    return node


def _period(graph: Graph, iri: str, period: Period) -> URIRef:
    node = URIRef(iri)
    graph.add((node, RDF.type, DCTERMS.PeriodOfTime))
    graph.add((node, DCAT.startDate, Literal(period.start, datatype=XSD.date)))
    if period.end is not None:
        graph.add((node, DCAT.endDate, Literal(period.end, datatype=XSD.date)))
    return node


def _spatial(value: str) -> Node:
    """An IRI as given, an EU/EEA country code as the EU country authority's IRI; anything
    else stays a literal, which the shapes reject by name."""
    if "://" in value:
        return URIRef(value)
    if value.upper() in _ISO3:
        return COUNTRY[_ISO3[value.upper()]]
    return Literal(value)


def _personal_data(value: str) -> URIRef:
    if "://" in value:
        return URIRef(value)
    return PD["".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", value) if part)]


def _purpose(graph: Graph, base: str, purpose: Purpose) -> URIRef:
    node = URIRef(f"{base}/purposes/{purpose.value}")
    graph.add((node, RDF.type, DPV.Purpose))
    graph.add((node, RDFS.label, Literal(purpose.label, lang=LANGUAGE)))
    graph.add((node, SKOS.notation, Literal(purpose.article)))
    graph.add((node, DCTERMS.source, URIRef(EHDS_ELI)))
    return node


def _legal_basis(graph: Graph, base: str, basis: str) -> URIRef:
    node = URIRef(basis) if "://" in basis else URIRef(f"{base}/legal-bases/{_slug(basis)}")
    graph.add((node, RDF.type, DPV.LegalBasis))
    graph.add((node, RDFS.label, Literal(basis, lang=LANGUAGE)))
    return node


def _version(graph: Graph, dataset: URIRef, version: DatasetVersion) -> URIRef:
    # A dcat:Resource, not a dcat:Dataset: a version is not a catalogue entry of its own.
    node = URIRef(f"{dataset}/versions/{quote(version.id, safe='')}")
    graph.add((node, RDF.type, DCAT.Resource))
    graph.add((node, DCAT.version, Literal(version.id)))
    graph.add((node, DCAT.isVersionOf, dataset))
    graph.add((node, DCTERMS.issued, Literal(version.created, datatype=XSD.date)))
    if version.description:
        graph.add((node, DCTERMS.description, Literal(version.description, lang=LANGUAGE)))
    for prop, value in (
        (HEALTHDCATAP.numberOfRecords, version.number_of_records),
        (HEALTHDCATAP.numberOfUniqueIndividuals, version.number_of_unique_individuals),
    ):
        if value is not None:
            graph.add((node, prop, Literal(value, datatype=XSD.nonNegativeInteger)))
    return node


def _restriction(graph: Graph, base: str, dataset: URIRef, restriction: Restriction) -> URIRef:
    """A dct:RightsStatement a person can read (rdfs:label, rdfs:comment), with each
    prohibited purpose also as an ODRL prohibition a machine can read."""
    node = URIRef(f"{dataset}/restrictions/{restriction.id}")
    graph.add((node, RDF.type, DCTERMS.RightsStatement))
    graph.add((node, DCTERMS.identifier, Literal(restriction.id)))
    graph.add((node, RDFS.label, Literal(restriction.summary, lang=LANGUAGE)))
    graph.add((node, RDFS.comment, Literal(restriction_in_words(restriction), lang=LANGUAGE)))
    graph.add((node, DCTERMS.rightsHolder, _agent(graph, base, restriction.holder)))
    if restriction.until is not None:
        period = URIRef(f"{node}/in-force")
        graph.add((node, DCTERMS.temporal, period))
        graph.add((period, RDF.type, DCTERMS.PeriodOfTime))
        graph.add((period, DCAT.endDate, Literal(restriction.until, datatype=XSD.date)))
    for purpose in restriction.prohibited_purposes:
        prohibition, constraint = BNode(), BNode()
        graph.add((node, ODRL2.prohibition, prohibition))
        graph.add((prohibition, ODRL2.action, ODRL2.use))
        graph.add((prohibition, ODRL2.constraint, constraint))
        graph.add((constraint, ODRL2.leftOperand, ODRL2.purpose))
        graph.add((constraint, ODRL2.operator, ODRL2.isA))
        graph.add((constraint, ODRL2.rightOperand, _purpose(graph, base, purpose)))
    return node


def restriction_in_words(restriction: Restriction) -> str:
    """Who imposes the restriction, on what ground, what it forbids and until when."""
    ground = [restriction.kind.value.replace("_", " ")] if restriction.kind.value != "other" else []
    ground += [restriction.clause] if restriction.clause else []
    words = [f"Imposed by {restriction.holder}" + (f": {', '.join(ground)}." if ground else ".")]
    if restriction.prohibited_purposes:
        words.append(
            "The data may not be used for: "
            + "; ".join(f"{p.label} (EHDS {p.article})" for p in restriction.prohibited_purposes)
            + "."
        )
    if restriction.until is not None:
        words.append(f"In force until {restriction.until.isoformat()} inclusive.")
    return " ".join(words)


# --- serialisations ------------------------------------------------------------------


def catalogue_turtle(graph: Graph) -> str:
    return graph.serialize(format="turtle")


def catalogue_jsonld(graph: Graph) -> str:
    """JSON-LD compacted with a @context of our prefixes only (nothing fetched to read it)."""
    context = {prefix: str(namespace) for prefix, namespace in PREFIXES.items()}
    return graph.serialize(format="json-ld", context=context, auto_compact=True, indent=2)
