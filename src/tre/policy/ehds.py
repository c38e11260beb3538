"""Vocabularies of the European Health Data Space Regulation (EU) 2025/327.

Each member carries the article it comes from, so the public register and the
catalogue can cite the legal ground next to the plain-language label.
"""

from __future__ import annotations

from enum import StrEnum

EHDS_ELI = "http://data.europa.eu/eli/reg/2025/327/oj"
"""European Legislation Identifier of the EHDS Regulation."""


class Purpose(StrEnum):
    """Purposes for which health data may be processed for secondary use (Art. 53(1))."""

    public_health = "public_health"
    policy_making = "policy_making"
    statistics = "statistics"
    education = "education"
    scientific_research = "scientific_research"
    product_development = "product_development"
    algorithm_training = "algorithm_training"
    care_improvement = "care_improvement"

    @property
    def article(self) -> str:
        return _PURPOSE_ARTICLE[self]

    @property
    def label(self) -> str:
        return _PURPOSE_LABEL[self]


_PURPOSE_ARTICLE: dict[Purpose, str] = {
    Purpose.public_health: "Art. 53(1)(a)",
    Purpose.policy_making: "Art. 53(1)(b)",
    Purpose.statistics: "Art. 53(1)(c)",
    Purpose.education: "Art. 53(1)(d)",
    Purpose.scientific_research: "Art. 53(1)(e)",
    Purpose.product_development: "Art. 53(1)(e)(i)",
    Purpose.algorithm_training: "Art. 53(1)(e)(ii)",
    Purpose.care_improvement: "Art. 53(1)(f)",
}

_PURPOSE_LABEL: dict[Purpose, str] = {
    Purpose.public_health: "Public interest in public and occupational health",
    Purpose.policy_making: "Policy-making and regulatory activities",
    Purpose.statistics: "Official statistics",
    Purpose.education: "Education or teaching in health or care",
    Purpose.scientific_research: "Scientific research related to health or care",
    Purpose.product_development: "Development and innovation of products or services",
    Purpose.algorithm_training: "Training, testing and evaluating algorithms",
    Purpose.care_improvement: "Improving the delivery of care and treatment",
}


class HealthCategory(StrEnum):
    """Categories of electronic health data for secondary use (Art. 51(1))."""

    ehr = "ehr"
    health_determinants = "health_determinants"
    aggregated_needs_resources = "aggregated_needs_resources"
    pathogens = "pathogens"
    administrative = "administrative"
    genetic = "genetic"
    other_omics = "other_omics"
    device_generated = "device_generated"
    wellness_apps = "wellness_apps"
    professionals = "professionals"
    population_registries = "population_registries"
    medical_registries = "medical_registries"
    clinical_trials = "clinical_trials"
    medical_devices = "medical_devices"
    product_registries = "product_registries"
    research_cohorts = "research_cohorts"
    biobanks = "biobanks"

    @property
    def article(self) -> str:
        letter = "abcdefghijklmnopq"[list(HealthCategory).index(self)]
        return f"Art. 51(1)({letter})"
