"""Frozen, typed experiment specs: load a suite file, validate it, resolve overrides.

A suite file (``experiments.yaml``) has four top-level keys::

    suite: fer-study            # the MLflow experiment that holds every run
    defaults: {data, sampler, model, train, augment}
    profiles: {NAME: {data, sampler, model, train, augment,  # optional, e.g. `full` for a GPU
                      experiments: {NAME: {data, sampler, model, train, augment}}}}
    experiments: {NAME: {description, paper_val_accuracy, iteration, tags, extends, ladder,
                         data, sampler, model, train, augment}}
    studies: {NAME: {experiment, objective, direction, sampler, pruner, trials, ...}}  # sweeps

An experiment's settings resolve as: defaults ← its `extends` chain ← its own keys ←
the chosen profile (its shared sections, then its per-experiment ones) ← command-line overrides. Every error names the file, the key path and,
for an unknown name, the nearest valid one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from harness.classes import CLASS_SETS
from harness.errors import SpecError
from harness.registry import did_you_mean

SECTIONS = ("data", "sampler", "model", "train", "augment")
EXPERIMENT_META = ("description", "paper_val_accuracy", "iteration", "tags", "extends", "ladder")
TOP_LEVEL = ("suite", "defaults", "profiles", "experiments", "studies")
# Spec fields that say how many runs to make rather than what one run trains.
NOT_TRAINED: dict[str, set[str]] = {"train": {"seeds"}}
# Fields added after the study's runs were first recorded (the modern recipe's ingredients). Left
# at their defaults they stay out of the training dict, so every earlier run keeps its spec hash,
# its MLflow params and its skip check: adding an ingredient never re-trains the study.
LATER_FIELDS: dict[str, set[str]] = {
    "train": {"label_smoothing", "schedule", "warmup", "ema", "tta"},
    "augment": {"crop", "flip", "rotate", "erasing", "mixup", "cutmix"},
}
# Model parameters added after runs were recorded, with the default that computes what those runs
# computed: at that default they stay out of the training dict too (the spec hash, the MLflow
# params and the skip check), so a store recorded before them still matches.
LATER_MODEL_PARAMS: dict[str, Any] = {"pool_first": False}
# Fields that change how a trained model is scored, not the weights it learns. Specs that differ
# only in these train identical weights, so `harness run` re-scores a finished run's weights
# instead of training them again (runner.rescore_and_log; e.g. the ladder's TTA rung).
EVAL_ONLY: dict[str, set[str]] = {"train": {"tta", "eval_batch_size"}}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where images come from and how they are preprocessed."""

    source: str = "synthetic"
    # Relative paths resolve against the project root (the suite file's folder).
    path: str = "data/synthetic-affectnet"
    classes: Literal["all11", "expressions8", "basic7"] = "all11"
    image_size: int = Field(32, ge=8, le=512)
    channels: Literal[1, 3] = 3
    whitening: Literal["none", "zca"] = "none"
    # Sources without a validation split (image folders, a CSV without PublicTest) hold out this
    # fraction of each class's training images: seeded, stratified, and saved under the cache
    # folder (splits/<key>.json) so it stays fixed across runs. 10% keeps ~2,900 FER2013 faces.
    val_fraction: float = Field(0.1, gt=0, le=0.5)
    split_seed: int = 0
    # Drop images whose pixels all share one value (FER2013 has 11 all-black training faces);
    # those dropped are counted as `blank_image` in the run's data/quality.json.
    drop_blank: bool = True
    # Duplicate hygiene (harness.data.duplicates): "report" counts exact (pixel-identical after
    # preprocessing) and near (perceptual-hash) duplicates within training and across splits;
    # "drop" also removes from validation every image that duplicates a training image, so the
    # score is not inflated by memorised copies. Training images are never removed.
    dedupe: Literal["none", "report", "drop"] = "report"
    # Near duplicates: pHash Hamming distance at most this. 4 bits kept only true copies on
    # FER2013 (re-encoded, shifted, re-cropped); 6 already pairs look-alike strangers.
    dedupe_distance: int = Field(4, ge=0, le=32)
    # Only for source `synthetic`: how the embedded default dataset is generated.
    synth_seed: int = 0
    synth_scale: float = Field(0.02, gt=0, le=1)
    synth_val_per_class: int = Field(100, ge=1)

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        from harness.data.sources import SOURCES

        SOURCES.get(value)
        return value


class SamplerSpec(_Strict):
    """Which training images each epoch visits."""

    name: str = "natural"
    per_epoch: int = Field(5000, ge=1)  # the study drew 5,000 images per epoch
    cap: int = Field(5000, ge=1)  # the study's balanced runs: at most 5,000 per class
    class_weighted_loss: bool = False

    @field_validator("name")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        from harness.data.samplers import SAMPLERS

        SAMPLERS.get(value)
        return value


class ModelSpec(_Strict):
    """A registered model and its fully resolved parameters (defaults filled in)."""

    name: str = "cnn"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainSpec(_Strict):
    """Optimisation settings; the defaults are the study's (Adam, batch 128)."""

    epochs: int = Field(15, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(512, ge=1)
    optimizer: str = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    # "auto" takes bf16 autocast where the hardware computes bf16 natively (CUDA, or CPUs with
    # AVX512-BF16/AMX): ~2x faster there. On CPUs without it bf16 is emulated and ~5x slower.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # "auto": NHWC only together with bf16, so the study's fp32 runs keep their layout (and numbers).
    # In fp32 on this AVX2 CPU NHWC measured 1.2-1.35x faster for the study's CNNs at 32-48 px
    # (beyond.yaml sets true); it had measured ~2x slower for other models before.
    channels_last: bool | Literal["auto"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    # Repeated seeds: `harness run` trains seed, seed+1, ..., seed+seeds-1, one tracked run each.
    # Not part of what one run trains, so it stays out of the spec hash (see training_dict).
    seeds: int = Field(1, ge=1, le=100)

    # The modern recipe's ingredients (issue "beyond the study"); the defaults are the study's.
    # Cross-entropy against targets smoothed by this much (Szegedy et al., 2016); 0 = hard labels.
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # Learning rate per step: "constant" (the study's), "onecycle" (OneCycleLR) or "cosine"
    # (linear warm-up, then cosine to 0); see harness.augment.lr_scheduler.
    schedule: Literal["constant", "onecycle", "cosine"] = "constant"
    # Fraction of all steps spent warming up (onecycle: 0 means PyTorch's 0.3).
    warmup: float = Field(0.0, ge=0, lt=1)
    # Decay of an exponential moving average of the weights, which is then what is evaluated and
    # saved (0 = off; 0.999 is usual for a few thousand steps).
    ema: float = Field(0.0, ge=0, lt=1)
    # Test-time augmentation at evaluation: "flip" averages the softmax of each image and its mirror;
    # "crops" the ten-crop average: the whole image and its four corner crops of 90% of the side
    # (resampled to the input size), each with its mirror (see harness.augment.tta_views).
    tta: Literal["none", "flip", "crops"] = "none"

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        from harness.optim import OPTIMIZERS

        OPTIMIZERS.get(value)
        return value


class AugmentSpec(_Strict):
    """Batched on-device training augmentation (harness.augment); all off by default, as in the study."""

    # Random resized crop: the crop's side as a fraction of the image's side, drawn uniformly from
    # [low, high], anywhere inside the image, resized back to the full size. [1, 1] = no crop.
    crop: tuple[float, float] = (1.0, 1.0)
    flip: bool = False  # horizontal flip, half of the images
    rotate: float = Field(0.0, ge=0, le=180)  # rotation, uniform in ± this many degrees
    erasing: float = Field(0.0, ge=0, le=1)  # random erasing: probability per image
    mixup: float = Field(0.0, ge=0)  # mixup's Beta(alpha, alpha); 0 = off
    cutmix: float = Field(0.0, ge=0)  # cutmix's Beta(alpha, alpha); 0 = off

    @field_validator("crop")
    @classmethod
    def _crop_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high <= 1:
            raise ValueError(f"expected 0 < low <= high <= 1, got [{low}, {high}]")
        return value


class ExperimentSpec(_Strict):
    """One fully resolved experiment: everything needed to train and track it."""

    name: str
    description: str = Field(min_length=1)
    paper_val_accuracy: float | None = Field(None, ge=0, le=1)
    iteration: int | str | None = None
    tags: tuple[str, ...] = ()
    # A rung of an ablation ladder (0 = its starting point; each rung adds one ingredient to the
    # one before): the report's "beyond the study" section plots the rungs in this order.
    ladder: int | None = Field(None, ge=0)
    data: DataSpec = DataSpec()
    sampler: SamplerSpec = SamplerSpec()
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    augment: AugmentSpec = AugmentSpec()

    def training_dict(self) -> dict[str, Any]:
        """The settings that change what is trained (not descriptions, tags or the seed count).

        Later fields at their defaults are left out (see LATER_FIELDS), and so is a section left
        empty by that: a spec that uses no modern ingredient has the same dict as before them.
        """
        out: dict[str, Any] = {}
        for s in SECTIONS:
            section = getattr(self, s)
            values = section.model_dump(mode="json", exclude=NOT_TRAINED.get(s, set()))
            defaults = type(section)().model_dump(mode="json")
            for key in LATER_FIELDS.get(s, set()):
                if values.get(key) == defaults.get(key):
                    values.pop(key, None)
            if s == "model":
                values["params"] = {
                    key: value for key, value in values["params"].items()
                    if not (key in LATER_MODEL_PARAMS and value == LATER_MODEL_PARAMS[key])
                }  # fmt: skip
            if values or s not in LATER_FIELDS:
                out[s] = values
        return out

    def seed_specs(self) -> list[ExperimentSpec]:
        """One spec per repeated seed: train.seed, train.seed + 1, ... (`train.seeds` of them)."""
        first = self.train.seed
        return [
            self.model_copy(update={"train": self.train.model_copy(update={"seed": first + i})})
            for i in range(self.train.seeds)
        ]

    def spec_hash(self) -> str:
        """A short stable digest of the training settings: equal hashes train the same thing."""
        return _digest(self.training_dict())

    def weights_hash(self) -> str:
        """A digest of what decides the learned weights: the training settings less EVAL_ONLY."""
        settings = self.training_dict()
        for section, keys in EVAL_ONLY.items():
            for key in keys:
                settings.get(section, {}).pop(key, None)
        return _digest(settings)

    def flat_params(self) -> dict[str, str]:
        """The training settings flattened to `section.key` strings, for MLflow params."""
        flat: dict[str, str] = {}
        for section, values in self.training_dict().items():
            for key, value in values.items():
                if key == "params":
                    for pkey, pvalue in value.items():
                        flat[f"{section}.{pkey}"] = json.dumps(pvalue) if isinstance(pvalue, list) else str(pvalue)
                else:
                    flat[f"{section}.{key}"] = str(value)
        return flat

    def to_yaml(self) -> str:
        """The resolved spec as YAML, as saved beside every run."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _digest(settings: Mapping[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Suite:
    """A validated suite file: its MLflow experiment name and its resolved experiments."""

    path: Path
    name: str
    experiments: dict[str, ExperimentSpec]
    profile: str | None = None
    studies: dict[str, Any] = field(default_factory=dict)  # name -> harness.studies.StudySpec

    @property
    def root(self) -> Path:
        """The folder relative data paths resolve against."""
        return self.path.parent

    def select(self, names: Sequence[str]) -> list[ExperimentSpec]:
        """The named experiments (all when `names` is empty), in file order."""
        if not names:
            return list(self.experiments.values())
        valid = list(self.experiments)
        for name in names:
            if name not in self.experiments:
                raise SpecError(f"{self.path}: no experiment '{name}'{did_you_mean(name, valid)}")
        return [self.experiments[n] for n in names]

    def study(self, name: str) -> Any:
        """The named sweep study (a harness.studies.StudySpec)."""
        if name not in self.studies:
            raise SpecError(f"{self.path}: no study '{name}'{did_you_mean(name, list(self.studies))}")
        return self.studies[name]


# ----------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key (a list as key): let PyYAML report it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with a safe loader; syntax errors become SpecError with a line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: invalid YAML{where}: {problem}") from None


def load_suite(
    path: Path | str,
    profile: str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Suite:
    """Load, resolve and validate a suite file; `overrides` apply last, per section."""
    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: expected a mapping with keys {', '.join(TOP_LEVEL)}")
    _check_keys(path, "", doc, TOP_LEVEL)
    name = doc.get("suite", "fer-study")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SpecError(f"{path}: suite: expected a name of letters, digits, '_', '-', '.'")
    defaults = _mapping(path, "defaults", doc.get("defaults", {}))
    _check_sections(path, "defaults", defaults)
    experiments = _mapping(path, "experiments", doc.get("experiments"))
    if not experiments:
        raise SpecError(f"{path}: experiments: the suite lists no experiments")
    profile_layer = _profile(path, doc.get("profiles", {}), profile)
    per_experiment = profile_layer.get("experiments") or {}
    for exp_name in per_experiment:
        if exp_name not in experiments:
            raise SpecError(
                f"{path}: profiles.{profile}.experiments.{exp_name}: no experiment '{exp_name}'"
                f"{did_you_mean(str(exp_name), list(experiments))}"
            )
    shared = {k: v for k, v in profile_layer.items() if k != "experiments"}
    resolved = {}
    for exp_name in experiments:
        raw = _resolve(path, exp_name, experiments, defaults, [])
        for layer in (shared, per_experiment.get(exp_name) or {}, overrides or {}):
            raw = _merge(raw, layer)
        resolved[exp_name] = _validate(path, exp_name, raw)
    from harness.studies import parse_studies

    studies = parse_studies(path, doc.get("studies"), resolved)
    return Suite(path=path, name=name, experiments=resolved, profile=profile, studies=studies)


def spec_sections(spec: ExperimentSpec) -> dict[str, Any]:
    """A resolved spec back as raw sections (model params inlined), ready for `derive_spec`."""
    raw = spec.model_dump(mode="json", exclude={"name"})
    model = raw.pop("model")
    raw["model"] = {"name": model["name"], **model["params"]}
    return raw


def derive_spec(
    path: Path, base: ExperimentSpec, name: str, layers: Sequence[Mapping[str, Any]], where: str | None = None
) -> ExperimentSpec:
    """`base` with `layers` merged on top (as profiles are), validated like any experiment.

    Errors name `where` (default: experiments.<name>) in `path`.
    """
    raw = spec_sections(base)
    for layer in layers:
        raw = _merge(raw, layer)
    return _validate(path, name, raw, where)


def _mapping(path: Path, where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{path}: {where}: expected a mapping, got {type(value).__name__}")
    return value


def _check_keys(path: Path, where: str, value: dict[str, Any], valid: Sequence[str]) -> None:
    for key in value:
        if key not in valid:
            prefix = f"{where}." if where else ""
            raise SpecError(
                f"{path}: {prefix}{key}: unknown key{did_you_mean(str(key), list(valid))}"
            )


def _check_sections(path: Path, where: str, layer: dict[str, Any]) -> None:
    _check_keys(path, where, layer, SECTIONS)
    for section, value in layer.items():
        _mapping(path, f"{where}.{section}", value)


def _profile(path: Path, profiles: Any, chosen: str | None) -> dict[str, Any]:
    profiles = _mapping(path, "profiles", profiles)
    for pname, layer in profiles.items():
        layer = _mapping(path, f"profiles.{pname}", layer)
        _check_keys(path, f"profiles.{pname}", layer, (*SECTIONS, "experiments"))
        _check_sections(path, f"profiles.{pname}", {k: v for k, v in layer.items() if k != "experiments"})
        for exp_name, exp_layer in _mapping(path, f"profiles.{pname}.experiments", layer.get("experiments")).items():
            _check_sections(
                path, f"profiles.{pname}.experiments.{exp_name}", _mapping(path, f"profiles.{pname}.experiments.{exp_name}", exp_layer)
            )
    if chosen is None:
        return {}
    if chosen not in profiles:
        raise SpecError(f"{path}: no profile '{chosen}'{did_you_mean(chosen, list(profiles))}")
    return profiles[chosen] or {}


def _resolve(
    path: Path, name: str, experiments: dict[str, Any], defaults: dict[str, Any], chain: list[str]
) -> dict[str, Any]:
    """Merge defaults, the `extends` chain and the experiment's own keys (cycles rejected)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SpecError(f"{path}: experiments.{name}: names use letters, digits, '_', '-', '.'")
    if name in chain:
        cycle = " -> ".join([*chain[chain.index(name):], name])
        raise SpecError(f"{path}: experiments.{chain[-1]}.extends: cycle {cycle}")
    own = _mapping(path, f"experiments.{name}", experiments[name])
    _check_keys(path, f"experiments.{name}", own, (*EXPERIMENT_META, *SECTIONS))
    for section in SECTIONS:
        _mapping(path, f"experiments.{name}.{section}", own.get(section))
    parent = own.get("extends")
    if parent is None:
        base = copy.deepcopy(defaults)
    elif not isinstance(parent, str) or parent not in experiments:
        raise SpecError(
            f"{path}: experiments.{name}.extends: no experiment '{parent}'"
            f"{did_you_mean(str(parent), list(experiments))}"
        )
    else:
        base = _resolve(path, parent, experiments, defaults, [*chain, name])
        # Descriptions, paper numbers and tags belong to one experiment, not its children.
        base = {k: v for k, v in base.items() if k in SECTIONS}
    mine = {k: v for k, v in own.items() if k != "extends"}
    return _merge(base, mine)


def _merge(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """Section-wise merge; a model section naming another model starts from scratch."""
    merged = copy.deepcopy(base)
    for key, value in layer.items():
        if key in SECTIONS and isinstance(value, Mapping):
            current = merged.get(key) or {}
            if key == "model" and "name" in value and value["name"] != current.get("name"):
                current = {}
            merged[key] = {**current, **copy.deepcopy(dict(value))}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _validate(path: Path, name: str, raw: dict[str, Any], where: str | None = None) -> ExperimentSpec:
    where = where or f"experiments.{name}"
    model_raw = dict(raw.get("model") or {})
    model_name = model_raw.pop("name", ModelSpec().name)
    try:
        params = _validate_model_params(model_name, model_raw)
        fields = {k: v for k, v in raw.items() if k != "model"}
        if isinstance(fields.get("tags"), list):
            fields["tags"] = tuple(fields["tags"])
        spec = ExperimentSpec(name=name, model=ModelSpec(name=model_name, params=params), **fields)
        _check_model_builds(spec)
        return spec
    except SpecError as exc:
        raise SpecError(f"{path}: {where}.model: {exc}") from None
    except ValidationError as exc:
        raise SpecError(f"{path}: {_describe(where, exc)}") from None


def _validate_model_params(model_name: Any, params: dict[str, Any]) -> dict[str, Any]:
    from harness.models import model_names, model_params

    if not isinstance(model_name, str):
        raise SpecError(f"name: expected a string, got {type(model_name).__name__}")
    if model_name not in model_names():
        raise SpecError(f"name: unknown model '{model_name}'{did_you_mean(model_name, model_names())}")
    declared = model_params(model_name)
    fields = {key: (annotation, default) for key, (annotation, default) in declared.items()}
    params_model = create_model(
        f"{model_name}_params", __config__=ConfigDict(extra="forbid", frozen=True), **fields
    )
    try:
        validated = params_model(**params)
    except ValidationError as exc:
        raise SpecError(_describe("", exc, valid=list(declared))) from None
    except TypeError as exc:  # a non-string key
        raise SpecError(str(exc)) from None
    return validated.model_dump(mode="json")


def _check_model_builds(spec: ExperimentSpec) -> None:
    """Build the model on PyTorch's meta device: value errors surface now, at no memory cost."""
    import torch

    from harness.models import create_model

    with torch.device("meta"):
        create_model(
            spec.model.name,
            num_classes=len(class_names(spec.data)),
            in_channels=spec.data.channels,
            image_size=spec.data.image_size,
            **spec.model.params,
        )


def _describe(where: str, exc: ValidationError, valid: list[str] | None = None) -> str:
    """The first pydantic error as 'key.path: problem', with a suggestion for unknown keys."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    key_path = ".".join(p for p in (where, loc) if p)
    if err["type"] == "extra_forbidden":
        last = str(err["loc"][-1])
        candidates = valid if valid is not None else _fields_at(err["loc"][:-1])
        return f"{key_path}: unknown key{did_you_mean(last, candidates)}"
    return f"{key_path}: {err['msg']} (got {err.get('input')!r})"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The valid keys at a location inside ExperimentSpec, for 'did you mean'."""
    model: type[BaseModel] = ExperimentSpec
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    names = list(model.model_fields)
    return [n for n in names if n not in ("name",)] if model is ExperimentSpec else names


def class_names(spec: DataSpec) -> tuple[str, ...]:
    """The class names a data spec trains on, in output order."""
    return CLASS_SETS[spec.classes]
