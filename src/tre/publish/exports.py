"""The site-wide files of a publication: the public register and the dataset catalogue."""

from __future__ import annotations

from datetime import date

from tre.policy import Policy
from tre.settings import Settings

from .browse import catalogue_entries, catalogue_json
from .catalogue import catalogue_graph, catalogue_jsonld, catalogue_turtle
from .conformance import check_catalogue
from .register import register_csv, register_from_settings, register_json

REGISTER_JSON = "register.json"
REGISTER_CSV = "register.csv"
CATALOGUE_TTL = "catalogue.ttl"
CATALOGUE_JSONLD = "catalogue.jsonld"
CATALOGUE_JSON = "catalogue.json"


def catalogue_base_uri(settings: Settings) -> str:
    return settings.hub.public_url.rstrip("/") + "/services/tre-summaries/catalogue/"


def site_exports(settings: Settings, policy: Policy, today: date) -> dict[str, bytes]:
    """File name -> content of every site-wide export; the catalogue is validated first."""
    register = register_from_settings(settings, today)
    graph = catalogue_graph(policy, catalogue_base_uri(settings))
    check_catalogue(graph)
    return {
        REGISTER_JSON: register_json(register).encode("utf-8"),
        REGISTER_CSV: register_csv(register).encode("utf-8"),
        CATALOGUE_TTL: catalogue_turtle(graph).encode("utf-8"),
        CATALOGUE_JSONLD: catalogue_jsonld(graph).encode("utf-8"),
        CATALOGUE_JSON: catalogue_json(catalogue_entries(policy, today)).encode("utf-8"),
    }
