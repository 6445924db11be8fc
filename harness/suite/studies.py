"""The suite file's `studies:` section, validated against its experiments (harness.spec.studies).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from harness.core.errors import SpecError
from harness.core.registry import did_you_mean
from harness.models.registry import model_params
from harness.spec.schema import NAME_PATTERN, SamplerSpec, TrainSpec
from harness.spec.studies import SEARCHABLE, Param, StudySpec, layers_for
from harness.suite.problems import Problems
from harness.suite.validate import derive_spec

if TYPE_CHECKING:
    from harness.spec.schema import ExperimentSpec


def trial_spec(path: Path, study: StudySpec, base: ExperimentSpec, name: str, values: Mapping[str, Any]) -> ExperimentSpec:
    """The base experiment with the study's `base` layer and one trial's values: a normal spec."""
    return derive_spec(path, base, name, [study.base, layers_for(values)], where=f"studies.{study.name}")


def parse_studies(
    path: Path, raw: Any, experiments: Mapping[str, ExperimentSpec], problems: Problems
) -> dict[str, StudySpec]:
    """Validate the suite's `studies` section against its experiments; each study's error is
    added to `problems` at its key, and the other studies are still read."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add("studies", f"expected a mapping of study names, got {type(raw).__name__}")
        return {}
    studies = {}
    for name, body in raw.items():
        with problems.collecting():
            studies[str(name)] = _parse_study(path, str(name), body, experiments)
    return studies


def _parse_study(path: Path, name: str, body: Any, experiments: Mapping[str, ExperimentSpec]) -> StudySpec:
    where = f"studies.{name}"
    if not NAME_PATTERN.match(name):
        raise SpecError(f"{path}: {where}: names use letters, digits, '_', '-', '.'")
    if not isinstance(body, dict):
        raise SpecError(f"{path}: {where}: expected a mapping, got {type(body).__name__}")
    try:
        study = StudySpec(name=name, **body)
    except ValidationError as exc:
        raise SpecError(f"{path}: {_describe_study(where, exc)}") from None
    except TypeError as exc:  # a non-string key
        raise SpecError(f"{path}: {where}: {exc}") from None
    if study.experiment not in experiments:
        raise SpecError(
            f"{path}: {where}.experiment: no experiment '{study.experiment}'"
            f"{did_you_mean(study.experiment, list(experiments))}"
        )
    base = experiments[study.experiment]
    for section in study.base:
        if section not in SEARCHABLE:
            raise SpecError(f"{path}: {where}.base.{section}: only {', '.join(SEARCHABLE)} can change per study")
    try:
        trial_spec(path, study, base, f"{name}-base", {})
    except SpecError as exc:
        raise SpecError(f"{exc} (in {where}.base)") from None
    for key, param in study.space.items():
        _check_key(path, where, key, study, base)
        for value in param.corners():
            try:
                trial_spec(path, study, base, f"{name}-check", {key: value})
            except SpecError as exc:
                raise SpecError(f"{path}: {where}.space.{key}: the value {value!r} gives an invalid spec: "
                                f"{_tail(str(exc), path)}") from None
    for i, values in enumerate(study.enqueue):
        unknown = [k for k in values if k not in study.space]
        if unknown:
            raise SpecError(f"{path}: {where}.enqueue[{i}].{unknown[0]}: not in the study's space"
                            f"{did_you_mean(unknown[0], list(study.space))}")
        try:
            trial_spec(path, study, base, f"{name}-check", values)
        except SpecError as exc:
            raise SpecError(f"{path}: {where}.enqueue[{i}]: {_tail(str(exc), path)}") from None
    return study


def _describe_study(where: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    key_path = ".".join(p for p in (where, loc) if p)
    if err["type"] == "extra_forbidden":
        fields = _study_fields(err["loc"][:-1])
        return f"{key_path}: unknown key{did_you_mean(str(err['loc'][-1]), fields)}"
    message = err["msg"].removeprefix("Value error, ")
    shown = err.get("input")
    return f"{key_path}: {message}" + (f" (got {shown!r})" if not isinstance(shown, dict) else "")


def _study_fields(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = StudySpec
    if loc and loc[0] == "space":
        return list(Param.model_fields)
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return [n for n in model.model_fields if n != "name"]


def _check_key(path: Path, where: str, key: str, study: StudySpec, base: ExperimentSpec) -> None:
    section, dot, field = key.partition(".")
    if not dot or section not in SEARCHABLE:
        raise SpecError(f"{path}: {where}.space.{key}: keys are section.field with section one of "
                        f"{', '.join(SEARCHABLE)}")
    model_name = study.base.get("model", {}).get("name", base.model.name)
    valid = {
        "sampler": [f for f in SamplerSpec.model_fields if f != "name"],
        "train": list(TrainSpec.model_fields),
        "model": list(model_params(model_name)),
    }[section]
    if field not in valid:
        raise SpecError(f"{path}: {where}.space.{key}: unknown {section} field"
                        f"{did_you_mean(field, valid)}")


def _tail(message: str, path: Path) -> str:
    """A nested spec error without its repeated file prefix."""
    return message.removeprefix(f"{path}: ")
