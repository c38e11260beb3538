"""The files that make up a site's policy folder, each with the model that validates it.

A policy folder is `policies/<site>/` holding one YAML file per kind of object;
the JSON Schemas under `policies/schema/` are generated from these models.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from .base import PolicyModel
from .datasets import Dataset
from .disclosure import DisclosureProfile
from .packages import PythonPackages
from .people import Person
from .permits import Permit
from .projects import Project
from .site import Site


class SiteFile(PolicyModel):
    site: Site


class PeopleFile(PolicyModel):
    people: tuple[Person, ...] = ()


class DatasetsFile(PolicyModel):
    datasets: tuple[Dataset, ...] = ()


class ProjectsFile(PolicyModel):
    projects: tuple[Project, ...] = ()


class PermitsFile(PolicyModel):
    permits: tuple[Permit, ...] = ()


class DisclosureFile(PolicyModel):
    disclosure_profiles: tuple[DisclosureProfile, ...] = ()


class PackagesFile(PolicyModel):
    python: PythonPackages = Field(default_factory=PythonPackages)


@dataclass(frozen=True)
class PolicyFileSpec:
    name: str
    key: str
    model: type[PolicyModel]
    required: bool = True

    @property
    def schema_name(self) -> str:
        return self.name.removesuffix(".yaml") + ".schema.json"


POLICY_FILES: tuple[PolicyFileSpec, ...] = (
    PolicyFileSpec("site.yaml", "site", SiteFile),
    PolicyFileSpec("people.yaml", "people", PeopleFile),
    PolicyFileSpec("datasets.yaml", "datasets", DatasetsFile),
    PolicyFileSpec("projects.yaml", "projects", ProjectsFile),
    PolicyFileSpec("permits.yaml", "permits", PermitsFile),
    PolicyFileSpec("disclosure.yaml", "disclosure_profiles", DisclosureFile, required=False),
    PolicyFileSpec("packages.yaml", "python", PackagesFile, required=False),
)
