"""Conformance of the catalogue: our SHACL shapes for HealthDCAT-AP, run with pyshacl.

`check_catalogue` raises `CatalogueError` naming, for each violation, the dataset and the
property; nothing is published unless it passes.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from urllib.parse import unquote

import pyshacl
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import DCTERMS, RDF, SH
from rdflib.term import Node

from .catalogue import DCAT, PREFIXES, CatalogueError


@cache
def _shapes() -> Graph:
    text = files("tre.publish").joinpath("shapes", "healthdcatap.ttl").read_text("utf-8")
    return Graph().parse(data=text, format="turtle")


def check_catalogue(graph: Graph) -> None:
    """Raise `CatalogueError` listing every violation of our HealthDCAT-AP shapes, one a
    line as "dataset <id>: <property>: <problem>"."""
    conforms, results, _ = pyshacl.validate(
        graph, shacl_graph=_shapes(), inference="none", allow_warnings=False
    )
    if conforms:
        return
    if not isinstance(results, Graph):
        raise CatalogueError("the SHACL validator gave no results graph")
    lines = _violations(graph, results)
    raise CatalogueError(
        "the catalogue does not conform to the HealthDCAT-AP shapes "
        f"({len(lines)} violation{'s' if len(lines) != 1 else ''}):\n" + "\n".join(lines)
    )


def can_catalogue(graph: Graph) -> bool:
    try:
        check_catalogue(graph)
    except CatalogueError:
        return False
    return True


def _violations(graph: Graph, results: Graph) -> list[str]:
    found: set[tuple[str, str, Node | None, str]] = set()
    for result in results.subjects(RDF.type, SH.ValidationResult):
        where, via = _locate(graph, results.value(result, SH.focusNode))
        path = "/".join(_curie(step) for step in [*via, *_path(results, result)])
        component = results.value(result, SH.sourceConstraintComponent)
        found.add((where, path, component, _problem(results, result)))
    # Follow-on noise: "dct:temporal: missing" says its sub-paths (and any required value)
    # are missing too, and a value of the wrong datatype cannot be compared with a range
    # or another property.
    missing = {(w, p) for w, p, c, _ in found if c == SH.MinCountConstraintComponent}
    mistyped = {(w, p) for w, p, c, _ in found if c == SH.DatatypeConstraintComponent}
    kept = {
        f"{where}: {path}: {problem}"
        for where, path, component, problem in found
        if not any(w == where and path.startswith(f"{p}/") for w, p in missing)
        and not ((where, path) in missing and component == SH.HasValueConstraintComponent)
        and not (
            (where, path) in mistyped
            and component
            in {SH.MaxInclusiveConstraintComponent, SH.LessThanOrEqualsConstraintComponent}
        )
    }
    return sorted(kept)


def _locate(graph: Graph, focus: Node | None) -> tuple[str, list[Node]]:
    """Who a result is about: a dataset (directly, or a node it links to), or the catalogue."""
    if focus is None:
        return "catalogue", []
    if (focus, RDF.type, DCAT.Catalog) in graph:
        return "catalogue", []
    if (focus, RDF.type, DCAT.Dataset) in graph:
        return f"dataset {_dataset_id(graph, focus)}", []
    for subject, predicate in sorted(graph.subject_predicates(focus)):
        if (subject, RDF.type, DCAT.Dataset) in graph:
            return f"dataset {_dataset_id(graph, subject)}", [predicate]
    return f"node {focus}", []


def _dataset_id(graph: Graph, node: Node) -> str:
    if isinstance(node, URIRef) and "/datasets/" in node:
        return unquote(node.rsplit("/datasets/", 1)[1])
    identifier = graph.value(node, DCTERMS.identifier)
    return str(identifier) if identifier is not None else str(node)


def _path(results: Graph, result: Node) -> list[Node]:
    path = results.value(result, SH.resultPath)
    if path is None:
        return []
    if isinstance(path, BNode) and results.value(path, RDF.first) is not None:
        return list(Collection(results, path))
    return [path]


_PROBLEMS: dict[Node | None, tuple[str, str]] = {
    # constraint component: (the shape's parameter it reads, what is wrong)
    SH.MinCountConstraintComponent: ("minCount", "fewer than {param} values"),
    SH.MaxCountConstraintComponent: ("maxCount", "more than {param} values"),
    SH.DatatypeConstraintComponent: ("datatype", "{value} is not a valid {param}"),
    SH.NodeKindConstraintComponent: ("nodeKind", "{value} is not {param}"),
    SH.ClassConstraintComponent: ("class", "{value} is not a {param}"),
    SH.InConstraintComponent: ("in", "{value} is not in the vocabulary the shapes allow"),
    SH.HasValueConstraintComponent: ("hasValue", "must include {param}"),
    SH.LessThanOrEqualsConstraintComponent: ("lessThanOrEquals", "{value} is greater than {param}"),
    SH.MaxInclusiveConstraintComponent: ("maxInclusive", "{value} is above {param}"),
}
_PLAIN = {"fewer than 1 values": "missing", "more than 1 values": "more than one value"}
_NODE_KINDS: dict[Node | None, str] = {
    SH.IRI: "an IRI",
    SH.Literal: "a literal",
    SH.BlankNodeOrIRI: "an IRI or a blank node",
}


def _problem(results: Graph, result: Node) -> str:
    component = results.value(result, SH.sourceConstraintComponent)
    value = results.value(result, SH.value)
    if component not in _PROBLEMS:
        message = results.value(result, SH.resultMessage)
        return f"{_show(value)}: {message}" if value is not None else str(message)
    name, template = _PROBLEMS[component]
    shape = results.value(result, SH.sourceShape)
    param = results.value(shape, SH[name]) if shape is not None else None
    text = template.format(
        value=_show(value),
        param=_NODE_KINDS[param] if param in _NODE_KINDS else _curie(param),
    )
    return _PLAIN.get(text, text)


def _show(value: Node | None) -> str:
    if isinstance(value, Literal):
        return f'"{value}"'
    return f"<{value}>" if value is not None else "a value"


@cache
def _names() -> Graph:
    names = Graph(bind_namespaces="none")
    for prefix, namespace in PREFIXES.items():
        names.bind(prefix, namespace)
    return names


def _curie(term: Node | None) -> str:
    if isinstance(term, URIRef):
        return _names().namespace_manager.normalizeUri(term)
    return str(term)
