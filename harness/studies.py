"""Sweep studies as frozen specs: which experiment to tune, over what space, judged how.

A study in the suite file::

    studies:
      residual:
        experiment: cnn_residual_balanced     # the base: every trial is this spec plus suggestions
        objective: val_balanced_accuracy      # an epoch metric; reported each epoch for pruning
        direction: maximize                   # default: minimize for val_loss, else maximize
        sampler: {name: tpe, seed: 0}
        pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 3}
        trials: 20                            # default budget (--trials overrides)
        base: {train: {epochs: 8}}            # optional: sections merged into the base first
        enqueue: [{train.lr: 0.001}]          # optional: trials to run first (e.g. the paper's)
        space:
          model.num_blocks: {type: int, low: 0, high: 8}
          train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
          model.widths: {type: categorical, choices: [[32, 64, 128, 128], [32, 64, 128, 256]]}

Space keys are `section.field` for the sampler, model, train and augment sections. Every range is
checked when the suite loads: each bound and each choice must give a valid spec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import SpecError
from harness.registry import did_you_mean

if TYPE_CHECKING:
    import optuna

    from harness.spec import ExperimentSpec

SEARCHABLE = ("sampler", "model", "train", "augment")
OBJECTIVES = ("val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_loss")
Scalar = bool | int | float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Param(_Strict):
    """One dimension of a search space."""

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0)
    log: bool = False
    # Scalars, or lists (e.g. a model's per-stage widths): Optuna sees those as JSON strings.
    choices: tuple[Scalar | tuple[Scalar, ...], ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Param:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("categorical takes only 'choices'")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high (and step or log), not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("use either 'log' or 'step', not both")
        if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError("int ranges need whole-number low, high and step")
        return self

    def corners(self) -> list[Any]:
        """The values to validate: both bounds, or every choice."""
        if self.type == "categorical":
            return [_plain(c) for c in self.choices or ()]
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Ask Optuna for a value of this dimension."""
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.type == "float":
            return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)
        encoded = [encode_choice(c) for c in self.choices or ()]
        return decode_choice(trial.suggest_categorical(name, encoded))


class SamplerChoice(_Strict):
    """Optuna's sampler: TPE (default) or random; seeded so a study is repeatable."""

    name: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    n_startup_trials: int = Field(4, ge=0)  # TPE: random trials before it models the space


class PrunerChoice(_Strict):
    """When to stop an unpromising trial, judged on the objective reported each epoch."""

    name: Literal["median", "hyperband", "none"] = "median"
    # median: no pruning until this many trials completed, nor before this many epochs
    n_startup_trials: int = Field(2, ge=0)
    n_warmup_steps: int = Field(2, ge=0)
    # hyperband: the smallest budget (epochs) a trial gets, and the halving rate
    min_resource: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)


class StudySpec(_Strict):
    """A resolved study: its base experiment spec, objective and search space."""

    name: str
    description: str = ""
    experiment: str
    objective: Literal["val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_loss"] = (
        "val_balanced_accuracy"  # AffectNet's validation set is balanced: this is what it rewards
    )
    direction: Literal["maximize", "minimize"] | None = None
    sampler: SamplerChoice = SamplerChoice()
    pruner: PrunerChoice = PrunerChoice()
    trials: int = Field(20, ge=1)
    base: dict[str, dict[str, Any]] = Field(default_factory=dict)
    enqueue: tuple[dict[str, Any], ...] = ()
    space: dict[str, Param]

    @field_validator("space")
    @classmethod
    def _non_empty(cls, value: dict[str, Param]) -> dict[str, Param]:
        if not value:
            raise ValueError("the search space is empty")
        return value

    @property
    def resolved_direction(self) -> str:
        """The direction to optimise: given, or implied by the objective."""
        return self.direction or ("minimize" if self.objective == "val_loss" else "maximize")

    def space_digest(self) -> str:
        """A digest of what defines the trials: a stored study with another digest is another study."""
        import hashlib

        blob = json.dumps(
            {"experiment": self.experiment, "objective": self.objective, "base": self.base,
             "space": {k: v.model_dump(mode="json") for k, v in sorted(self.space.items())}},
            sort_keys=True, default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def encode_choice(value: Any) -> Scalar:
    """A categorical value as Optuna stores it: lists become JSON strings."""
    return json.dumps(list(value)) if isinstance(value, tuple | list) else value


def decode_choice(value: Any) -> Any:
    """The inverse of `encode_choice`."""
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return value


def layers_for(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{'train.lr': 0.01, 'model.num_blocks': 3} → {'train': {'lr': 0.01}, 'model': {'num_blocks': 3}}."""
    layer: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, _, field = key.partition(".")
        layer.setdefault(section, {})[field] = value
    return layer


def trial_spec(path: Path, study: StudySpec, base: ExperimentSpec, name: str, values: Mapping[str, Any]) -> ExperimentSpec:
    """The base experiment with the study's `base` layer and one trial's values: a normal spec."""
    from harness.spec import derive_spec

    return derive_spec(path, base, name, [study.base, layers_for(values)], where=f"studies.{study.name}")


# ----------------------------------------------------------------------------- loading


def parse_studies(path: Path, raw: Any, experiments: Mapping[str, ExperimentSpec]) -> dict[str, StudySpec]:
    """Validate the suite's `studies` section against its experiments; errors name the key."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: studies: expected a mapping of study names, got {type(raw).__name__}")
    return {str(name): _parse_study(path, str(name), body, experiments) for name, body in raw.items()}


def _parse_study(path: Path, name: str, body: Any, experiments: Mapping[str, ExperimentSpec]) -> StudySpec:
    from harness.spec import NAME_PATTERN

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
    from harness.models import model_params
    from harness.spec import SamplerSpec, TrainSpec

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
