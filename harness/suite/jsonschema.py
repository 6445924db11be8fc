"""The suite file's JSON Schema, and its field reference as Markdown: both from the specs.

`harness schema` writes the schema (docs/suite.schema.json in the repository); experiments.yaml and
beyond.yaml name it on their first line (`# yaml-language-server: $schema=...`) so an editor with
the YAML language server validates and completes every key. The model section's keys are each
registered model's builder parameters, so a plugin's model gets the same completion.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import create_model as pydantic_model

from harness.models.registry import model_names, model_params
from harness.spec.claims import ClaimSpec, ReferenceSpec
from harness.spec.schema import EXPERIMENT_META, SECTIONS, ExperimentSpec
from harness.spec.studies import StudySpec

SCHEMA_ID = "https://fer-harness.invalid/suite.schema.json"
# Sections whose fields are the spec's own (the model section's come from the registry).
SECTION_MODELS: dict[str, type[BaseModel]] = {
    name: ExperimentSpec.model_fields[name].annotation for name in SECTIONS if name != "model"
}


def suite_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a suite file."""
    layer = {"type": "object", "additionalProperties": False,
             "properties": {name: {"$ref": f"#/$defs/{name}"} for name in SECTIONS}}  # fmt: skip
    experiment = _experiment_schema()
    profile = {
        "type": "object", "additionalProperties": False, "description": "an override layer: --profile NAME",
        "properties": {**layer["properties"], "suite": {"type": "string", "description": "the MLflow experiment the profile's runs go to (default: the suite's)"}, "experiments": {
            "type": "object", "additionalProperties": {"$ref": "#/$defs/layer"},
            "description": "per-experiment override layers",
        }},
    }  # fmt: skip
    defs: dict[str, Any] = {name: _section_schema(model) for name, model in SECTION_MODELS.items()}
    defs |= {"model": _model_section_schema(), "layer": layer, "profile": profile, "experiment": experiment}
    defs |= {"study": _entry_schema(StudySpec, drop="name"), "claim": _entry_schema(ClaimSpec, drop="key")}
    defs["reference"] = _entry_schema(ReferenceSpec)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "fer-harness suite file",
        "description": "experiments.yaml: the suite's experiments, profiles, sweep studies and claims",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "suite": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
                      "description": "the MLflow experiment that holds every run"},
            "description": {"type": "string", "description": "one line: what the suite is (the MLflow experiment's description)"},
            "defaults": {"$ref": "#/$defs/layer", "description": "settings every experiment starts from"},
            "profiles": {"type": "object", "additionalProperties": {"$ref": "#/$defs/profile"}},
            "experiments": {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/$defs/experiment"}},
            "studies": {"type": "object", "additionalProperties": {"$ref": "#/$defs/study"}},
            "claims": {"type": "object", "additionalProperties": {"$ref": "#/$defs/claim"}},
            "references": {"type": "array", "items": {"$ref": "#/$defs/reference"}},
        },
        "required": ["experiments"],
        "$defs": defs,
    }  # fmt: skip


def schema_text() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(suite_schema(), indent=1, ensure_ascii=False) + "\n"


def _experiment_schema() -> dict[str, Any]:
    fields = ExperimentSpec.model_json_schema(mode="validation")["properties"]
    meta = {key: _clean(fields[key]) for key in EXPERIMENT_META if key in fields}
    meta["extends"] = {"type": "string", "description": "inherit another experiment's sections"}
    sections = {name: {"$ref": f"#/$defs/{name}"} for name in SECTIONS}
    return {"type": "object", "additionalProperties": False, "required": ["description"],
            "properties": {**meta, **sections}}  # fmt: skip


def _section_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A section as a layer writes it: every field optional (a layer sets what it changes)."""
    schema = model.model_json_schema(mode="validation")
    return {"type": "object", "additionalProperties": False, "description": schema.get("description", ""),
            "properties": {key: _clean(value) for key, value in schema["properties"].items()}}  # fmt: skip


def _model_section_schema() -> dict[str, Any]:
    """`name` and the union of every model's parameters; with a name, only that model's."""
    names = model_names()
    per_model = {name: _params_schema(name) for name in names}
    union: dict[str, Any] = {}
    for props in per_model.values():
        union |= props
    cases = [
        {"if": {"properties": {"name": {"const": name}}, "required": ["name"]},
         "then": {"properties": {"name": True, **{k: True for k in props}}, "additionalProperties": False}}
        for name, props in per_model.items()
    ]  # fmt: skip
    return {
        "type": "object", "description": "a registered model and its builder's parameters",
        "properties": {"name": {"enum": names, "description": "a registered model (docs/models.md)"}, **union},
        "additionalProperties": False, "allOf": cases,
    }  # fmt: skip


def _params_schema(name: str) -> dict[str, Any]:
    fields = {key: (annotation, default) for key, (annotation, default) in model_params(name).items()}
    model = pydantic_model(f"{name}_params", __config__=ConfigDict(extra="forbid"), **fields)
    return {key: _clean(value) for key, value in model.model_json_schema()["properties"].items()}


def _entry_schema(model: type[BaseModel], drop: str | None = None) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    inlined = _inline(schema, schema.get("$defs", {}))
    props = {k: _clean(v) for k, v in inlined["properties"].items() if k != drop}
    required = [k for k in inlined.get("required", []) if k != drop]
    out = {"type": "object", "additionalProperties": False, "description": schema.get("description", ""),
           "properties": props}  # fmt: skip
    return out | ({"required": required} if required else {})


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with every local $ref replaced by its definition (the entries use few)."""
    if isinstance(node, dict):
        if "$ref" in node and node["$ref"].startswith("#/$defs/"):
            return _inline(defs[node["$ref"].split("/")[-1]], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _clean(prop: dict[str, Any]) -> dict[str, Any]:
    """A property without pydantic's titles (editors show the key itself)."""
    return {k: _clean(v) if isinstance(v, dict) else v for k, v in prop.items() if k != "title"}
