"""The site's policy as typed models: datasets, projects, permits, people, disclosure profiles,
the package allow-list.

This package is the ground floor: it imports no other part of `tre`.
"""

from .datasets import Dataset, DatasetVersion, Modality, Restriction, RestrictionKind
from .disclosure import BUILTIN_PROFILES, DisclosureProfile
from .ehds import HealthCategory, Purpose
from .findings import Finding, PolicyError, Severity
from .packages import (
    PackageNotAllowed,
    PythonPackages,
    allowed_requirements,
    can_install,
    check_allowed,
)
from .people import Person, Role
from .permits import Conditions, DatasetGrant, Permit, PermitError, PermitStatus
from .policy import Policy
from .projects import Member, Project, ProjectRole
from .site import Identity, Site
from .validate import ValidationReport, load_policy, validate_policy

__all__ = [
    "BUILTIN_PROFILES",
    "Conditions",
    "Dataset",
    "DatasetGrant",
    "DatasetVersion",
    "DisclosureProfile",
    "Finding",
    "HealthCategory",
    "Identity",
    "Member",
    "Modality",
    "PackageNotAllowed",
    "Permit",
    "PermitError",
    "PermitStatus",
    "Person",
    "Policy",
    "PolicyError",
    "Project",
    "ProjectRole",
    "Purpose",
    "PythonPackages",
    "Restriction",
    "RestrictionKind",
    "Role",
    "Severity",
    "Site",
    "ValidationReport",
    "allowed_requirements",
    "can_install",
    "check_allowed",
    "load_policy",
    "validate_policy",
]
