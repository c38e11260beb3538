"""JSON Schemas for the policy files, generated from the models.

The schemas are committed under `policies/schema/`.

Editors use them to check policy files as they are typed; a test fails when the
committed copies drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path

from .files import POLICY_FILES


def render_schemas() -> dict[str, str]:
    """File name → schema text, deterministic (sorted keys, trailing newline)."""
    rendered: dict[str, str] = {}
    for spec in POLICY_FILES:
        schema = spec.model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"jupyter-tre policy file {spec.name}"
        rendered[spec.schema_name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        target = out_dir / name
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        written.append(target)
    return written


def stale_schemas(out_dir: Path) -> list[str]:
    """Names of schema files that are missing or differ from what the models generate."""
    stale = []
    for name, text in render_schemas().items():
        target = out_dir / name
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
