"""Validation of a resolved experiment: the schema, the registries' names, the model's build.

Every problem is reported at the key where the user wrote the value (harness.suite.resolve keeps
each key's origin), and as many as can be found at once: pydantic's every error, the model's
parameters, the names of the data source, sampler and optimizer, and, when all of those are
sound, the model built on PyTorch's meta device (value errors such as a negative width).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic import create_model as pydantic_model

from harness.core.errors import SpecError
from harness.core.registry import Registry, did_you_mean
from harness.data.samplers import SAMPLERS
from harness.data.sources import SOURCES
from harness.models.build import build_network
from harness.models.registry import model_names, model_params
from harness.spec.schema import SECTIONS, ExperimentSpec, ModelSpec, class_names
from harness.suite.problems import Problems
from harness.suite.resolve import Resolved, merge_layers, spec_sections
from harness.train.optim import OPTIMIZERS

# The spec fields that name a registered thing, and the registry that knows the names.
NAMED: tuple[tuple[str, str, Registry[Any]], ...] = (
    ("data", "source", SOURCES),
    ("sampler", "name", SAMPLERS),
    ("train", "optimizer", OPTIMIZERS),
)
SECTION_MODELS: dict[str, type[BaseModel]] = {
    name: ExperimentSpec.model_fields[name].annotation for name in SECTIONS if name != "model"
}


def validate_experiment(name: str, resolved: Resolved, problems: Problems, where: str) -> ExperimentSpec | None:
    """The spec of experiment `name`, or None after adding every problem found to `problems`."""
    found = problems.count
    model_raw = dict(resolved.raw.get("model") or {})
    model_name = model_raw.pop("name", ModelSpec().name)
    params = _model_params(model_name, model_raw, resolved, problems, where)
    fields = {k: v for k, v in resolved.raw.items() if k != "model"}
    if isinstance(fields.get("tags"), list):
        fields["tags"] = tuple(fields["tags"])
    for section, key, registry in NAMED:
        value = (resolved.raw.get(section) or {}).get(key)
        if value is not None and (not isinstance(value, str) or value not in registry):
            problems.add(resolved.origin((section, key), where), unknown(registry, value))
    try:
        spec = ExperimentSpec(name=name, model=ModelSpec(name=str(model_name), params=params or {}), **fields)
    except ValidationError as exc:
        for err in exc.errors():
            problems.add(resolved.origin(err["loc"], where), describe(err, _fields_at(err["loc"][:-1])))
        return None
    except TypeError as exc:  # a non-string key
        problems.add(where, str(exc))
        return None
    if problems.count > found:
        return None
    try:
        check_builds(spec)
    except SpecError as exc:
        problems.add(resolved.section_origin("model", where), str(exc))
        return None
    return spec


def check_layer(section: str, values: Mapping[str, Any], where: str, problems: Problems) -> None:
    """One section of a layer on its own (a profile not chosen this time): keys, types, names."""
    if section == "model":
        if "name" in values:
            params = {k: v for k, v in values.items() if k != "name"}
            _model_params(values["name"], params, Resolved(), problems, f"{where}.model")
        return
    try:
        SECTION_MODELS[section](**values)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            candidates = list(SECTION_MODELS[section].model_fields)
            problems.add(f"{where}.{section}.{loc}", describe(err, candidates))
    except TypeError as exc:
        problems.add(f"{where}.{section}", str(exc))
    for named_section, key, registry in NAMED:
        if named_section == section and key in values and values[key] not in registry:
            problems.add(f"{where}.{section}.{key}", unknown(registry, values[key]))


def derive_spec(
    path: Path, base: ExperimentSpec, name: str, layers: Sequence[Mapping[str, Any]], where: str | None = None
) -> ExperimentSpec:
    """`base` with `layers` merged on top (as profiles are), validated like any experiment.

    Errors name `where` (default: experiments.<name>) in `path`.
    """
    where = where or f"experiments.{name}"
    resolved = Resolved(spec_sections(base), {})
    for layer in layers:
        resolved = merge_layers(resolved, layer, where)
    problems = Problems(path)
    spec = validate_experiment(name, resolved, problems, where)
    problems.check()
    assert spec is not None
    return spec


def check_builds(spec: ExperimentSpec) -> None:
    """Build the model on PyTorch's meta device: value errors surface now, at no memory cost."""
    import torch

    with torch.device("meta"):
        build_network(spec.model, num_classes=len(class_names(spec.data)), data=spec.data)


def unknown(registry: Registry[Any], name: Any) -> str:
    """The message for a name no registry entry has."""
    return f"unknown {registry.kind} '{name}'{did_you_mean(str(name), registry.names())}"


def describe(err: Mapping[str, Any], candidates: Sequence[str]) -> str:
    """One pydantic error as a problem's text, with a suggestion for an unknown key."""
    if err["type"] == "extra_forbidden":
        return f"unknown key{did_you_mean(str(err['loc'][-1]), list(candidates))}"
    if err["type"] == "missing":
        return "required, but not given"
    return f"{err['msg']} (got {err.get('input')!r})"


def _model_params(
    model_name: Any, params: dict[str, Any], resolved: Resolved, problems: Problems, where: str
) -> dict[str, Any] | None:
    """The model's parameters validated against its builder's signature (None after a problem)."""
    name_at = resolved.origin(("model", "name"), where)
    if not isinstance(model_name, str):
        problems.add(name_at, f"expected a model name, got {type(model_name).__name__}")
        return None
    if model_name not in model_names():
        problems.add(name_at, f"unknown model '{model_name}'{did_you_mean(model_name, model_names())}")
        return None
    declared = model_params(model_name)
    fields = {key: (annotation, default) for key, (annotation, default) in declared.items()}
    params_model = pydantic_model(f"{model_name}_params", __config__=ConfigDict(extra="forbid", frozen=True), **fields)
    try:
        return params_model(**params).model_dump(mode="json")
    except ValidationError as exc:
        for err in exc.errors():
            problems.add(resolved.origin(("model", *err["loc"]), where), describe(err, list(declared)))
    except TypeError as exc:  # a non-string key
        problems.add(f"{where}.model", str(exc))
    return None


def _fields_at(loc: Sequence[Any]) -> list[str]:
    """The valid keys at a location inside ExperimentSpec, for 'did you mean'."""
    model: type[BaseModel] = ExperimentSpec
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    names = list(model.model_fields)
    return [n for n in names if n != "name"] if model is ExperimentSpec else names
