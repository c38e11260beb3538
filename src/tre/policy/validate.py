"""Loading and validating a site's policy folder.

`validate_policy` never raises for a bad policy: it returns every finding, each
naming the file, the line, the field and what is allowed. `load_policy` is the
strict entry point for services: a policy with any error raises `PolicyError`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .crosschecks import cross_check
from .files import POLICY_FILES, PolicyFileSpec
from .findings import Finding, PolicyError, Severity, format_loc
from .policy import Policy
from .sourcemap import SourceMap

PATTERN_WORDS: dict[str, str] = {
    r"^[a-z0-9][a-z0-9-]{0,62}$": "lower-case letters, digits and hyphens, starting with a "
    "letter or digit, at most 63 characters",
    r"^[a-z0-9][a-z0-9._@-]{0,127}$": "a lower-case login name: letters, digits and . _ @ -",
    r"^[0-9a-f]{64}$": "64 lower-case hexadecimal digits (a SHA-256 digest)",
    r"^[1-9][0-9]*[KMGT]$": "a whole number followed by K, M, G or T, e.g. 8G",
    r"^[A-Z]{2}$": "a two-letter ISO 3166-1 country code in capitals, e.g. BE",
}


@dataclass
class ValidationReport:
    policy_dir: Path
    today: date
    findings: list[Finding] = field(default_factory=list)
    policy: Policy | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.error]

    @property
    def ok(self) -> bool:
        return not self.errors


def load_policy(policy_dir: Path, today: date | None = None) -> Policy:
    """Load a policy for use by a service; raise `PolicyError` listing every error.

    Permits that expired but are not archived yet are warnings here (services simply
    treat them as expired); `tre policy validate` reports them as errors.
    """
    report = validate_policy(policy_dir, today or date.today(), strict=False)
    if not report.ok or report.policy is None:
        raise PolicyError(report.findings)
    return report.policy


def validate_policy(policy_dir: Path, today: date, *, strict: bool = True) -> ValidationReport:
    report = ValidationReport(policy_dir=policy_dir, today=today)
    if not policy_dir.is_dir():
        report.findings.append(
            Finding(
                severity=Severity.error,
                file=str(policy_dir),
                line=None,
                field="(folder)",
                message="policy folder does not exist or is not a folder",
                allowed="a folder holding " + ", ".join(s.name for s in POLICY_FILES),
            )
        )
        return report

    parsed: dict[str, Any] = {}
    maps: dict[str, tuple[str, SourceMap]] = {}
    for spec in POLICY_FILES:
        result = _load_file(policy_dir / spec.name, spec, report.findings)
        if result is not None:
            model, source_map = result
            parsed[spec.key] = getattr(model, spec.key)
            maps[spec.key] = (str(policy_dir / spec.name), source_map)
    for spec in POLICY_FILES:
        if spec.key not in parsed and spec.required:
            return _sorted(report)
    policy = Policy(**parsed)

    for issue in cross_check(policy, today, strict=strict):
        file, source_map = maps.get(issue.key, (str(policy_dir), SourceMap(None)))
        report.findings.append(
            Finding(
                severity=issue.severity,
                file=file,
                line=source_map.line(issue.loc),
                field=format_loc(issue.loc),
                message=issue.message,
                allowed=issue.allowed,
            )
        )
    if not report.errors:
        report.policy = policy
    return _sorted(report)


def _sorted(report: ValidationReport) -> ValidationReport:
    report.findings.sort(key=lambda f: (f.file, f.line or 0, f.field))
    return report


def _load_file(
    path: Path, spec: PolicyFileSpec, findings: list[Finding]
) -> tuple[BaseModel, SourceMap] | None:
    def error(
        message: str, line: int | None = None, field: str = spec.key, allowed: str | None = None
    ) -> None:
        findings.append(
            Finding(
                severity=Severity.error,
                file=str(path),
                line=line,
                field=field,
                message=message,
                allowed=allowed,
            )
        )

    if not path.exists():
        if spec.required:
            error(
                "required policy file is missing",
                allowed=f"a YAML file with the top-level key '{spec.key}'",
            )
            return None
        return spec.model.model_validate({}), SourceMap(None)
    parsed = _parse_yaml(path, error)
    if parsed is None:
        return None
    data, source_map = parsed
    duplicates = list(source_map.duplicate_keys())
    for loc, key, line in duplicates:
        error(
            f"key '{key}' appears more than once; only one value may be given",
            line=line,
            field=format_loc((*loc, key)),
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        error(
            f"expected a mapping with the top-level key '{spec.key}', "
            f"found a {type(data).__name__}",
            line=1,
        )
        return None
    try:
        model = spec.model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            message, allowed = _explain(err, spec.model)
            findings.append(
                Finding(
                    severity=Severity.error,
                    file=str(path),
                    line=source_map.line(err["loc"]),
                    field=format_loc(err["loc"]),
                    message=message,
                    allowed=allowed,
                )
            )
        return None
    return None if duplicates else (model, source_map)


def _parse_yaml(path: Path, error: Callable[..., None]) -> tuple[Any, SourceMap] | None:
    """The file's data and line map, or None after reporting why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        error(f"cannot read file: {exc}")
        return None
    try:
        return yaml.safe_load(text), SourceMap.from_text(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable"
        if exc.context and exc.context_mark and exc.problem:
            problem = f"{exc.context} started on line {exc.context_mark.line + 1}: {problem}"
        error(
            f"not valid YAML: {problem}",
            line=mark.line + 1 if mark else None,
            field="(syntax)",
        )
        return None


def _explain(err: ErrorDetails, root: type[BaseModel]) -> tuple[str, str | None]:
    """A plain message and the allowed values for one pydantic error."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    shown = repr(value) if isinstance(value, str | int | float | bool) or value is None else None
    if kind == "missing":
        return "required field is missing", None
    if kind == "extra_forbidden":
        parent = _model_at(root, err["loc"][:-1])
        fields = ", ".join(parent.model_fields) if parent else None
        return f"unknown field '{err['loc'][-1]}'", fields
    if kind in ("enum", "literal_error"):
        return f"{shown} is not allowed", str(ctx.get("expected"))
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        return f"{shown} is not of the required form", PATTERN_WORDS.get(pattern, pattern)
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, "), None
    message = str(err["msg"])
    return (f"{message} (got {shown})" if shown is not None else message), None


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class found by following `loc` through field annotations."""
    current: Any = root
    for part in loc:
        current = _unwrap_model(current)
        if current is None:
            return None
        if isinstance(part, str):
            info = current.model_fields.get(part)
            if info is None:
                return None
            current = info.annotation
    found = _unwrap_model(current)
    return found


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (tuple, list, typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None
