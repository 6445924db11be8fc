"""Frozen, typed experiment specs: the sections each stage of the pipeline reads.

An experiment spec is five sections (data, sampler, model, train, augment) plus what describes it.
These classes hold values only: names are checked against the registries, and files are read,
by harness.suite (the suite-file loader), so every stage below it can import them freely.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.core.classes import CLASS_SETS

SECTIONS = ("data", "sampler", "model", "train", "augment")


EXPERIMENT_META = ("description", "paper_val_accuracy", "iteration", "tags", "extends", "ladder")


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



class SamplerSpec(_Strict):
    """Which training images each epoch visits."""

    name: str = "natural"
    per_epoch: int = Field(5000, ge=1)  # the study drew 5,000 images per epoch
    cap: int = Field(5000, ge=1)  # the study's balanced runs: at most 5,000 per class
    class_weighted_loss: bool = False



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


def class_names(spec: DataSpec) -> tuple[str, ...]:
    """The class names a data spec trains on, in output order."""
    return CLASS_SETS[spec.classes]
