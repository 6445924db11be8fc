"""Sweep studies as frozen specs: which experiment to tune, over what space, judged how.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    import optuna



SEARCHABLE = ("sampler", "model", "train", "augment")


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
    description: str = Field("", description="one line: what the study tunes")
    experiment: str = Field(description="the base: each trial is this experiment plus one point of the space")
    objective: Literal["val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_loss"] = Field(
        "val_balanced_accuracy",  # AffectNet's validation set is balanced: this is what it rewards
        description="an epoch metric on the validation split, reported every epoch so weak trials are pruned",
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="default: minimize for val_loss, else maximize"
    )
    sampler: SamplerChoice = Field(SamplerChoice(), description="Optuna's sampler: {name: tpe|random, seed, n_startup_trials}")
    pruner: PrunerChoice = Field(
        PrunerChoice(), description="when to stop a weak trial: {name: median|hyperband|none, ...}"
    )
    trials: int = Field(20, ge=1, description="the study's default budget (--trials overrides)")
    base: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="sections merged into the base experiment for every trial"
    )
    enqueue: tuple[dict[str, Any], ...] = Field((), description="trials to run first, e.g. the paper's settings")
    space: dict[str, Param] = Field(
        description="section.field -> {type: int|float|categorical, low, high, step, log, choices}"
    )

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
