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
NOT_TRAINED: dict[str, set[str]] = {"train": {"seeds", "checkpoint_every"}}
# The automatic checkpoint interval waits at least this long after the last checkpoint (or the
# run's start): one checkpoint of a study model costs ~0.1 s, so at most ~0.2% of a run.
AUTO_CHECKPOINT_MIN_S = 60.0


# Fields added after the study's runs were first recorded (the modern recipe's ingredients). Left
# at their defaults they stay out of the training dict, so every earlier run keeps its spec hash,
# its MLflow params and its skip check: adding an ingredient never re-trains the study.
LATER_FIELDS: dict[str, set[str]] = {
    "train": {"label_smoothing", "schedule", "warmup", "ema", "tta", "budget_tflop", "eval_every"},
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


def _f(default: Any, why: str, **constraints: Any) -> Any:
    """A field with its default and the reason for it (shown in docs/config.md and editors)."""
    return Field(default, description=why, **constraints)


class DataSpec(_Strict):
    """Where images come from and how they are preprocessed."""

    source: str = _f("synthetic", "the dataset adapter: synthetic (the embedded default, generated "
                     "on first use), affectnet, fer2013 or folder; plugins add more")
    path: str = _f("data/synthetic-affectnet", "the dataset's folder or file; relative paths "
                   "resolve against the suite file's folder")
    classes: Literal["all11", "expressions8", "basic7"] = _f(
        "all11", "AffectNet's 11 categories (the study's), its 8 expressions, or the 7 basic ones; "
        "a source with fewer classes keeps those it has")
    image_size: int = _f(32, "faces are cropped and resized to this side (the study used 32)", ge=8, le=512)
    channels: Literal[1, 3] = _f(3, "3 (RGB, grey replicated) as in the study, or 1 (grey, FER2013's own)")
    whitening: Literal["none", "zca"] = _f(
        "none", "the model's first layer: per-channel standardisation, or ZCA whitening fitted on "
        "the training images (the study's future work)")
    val_fraction: float = _f(
        0.1, "sources without a validation split hold out this fraction of each class's training "
        "images: seeded, stratified, saved under the cache folder so it stays fixed (10% keeps "
        "~2,900 FER2013 faces)", gt=0, le=0.5)
    split_seed: int = _f(0, "the seed of that held-out split")
    drop_blank: bool = _f(True, "drop images whose pixels all share one value (FER2013 has 11 "
                          "all-black faces); counted as blank_image in data/quality.json")
    dedupe: Literal["none", "report", "drop"] = _f(
        "report", "duplicates: report counts exact and near copies within training and across "
        "splits; drop also removes from validation every copy of a training image, so a score is "
        "not inflated by memorised faces (training images are never removed)")
    dedupe_distance: int = _f(4, "near copies: perceptual-hash Hamming distance at most this; 4 "
                              "kept only true copies on FER2013, 6 pairs look-alike strangers", ge=0, le=32)
    synth_seed: int = _f(0, "source synthetic only: the generator's seed")
    synth_scale: float = _f(0.02, "source synthetic only: the fraction of AffectNet's training counts "
                            "(2% = ~8,300 images with AffectNet's imbalance)", gt=0, le=1)
    synth_val_per_class: int = _f(100, "source synthetic only: validation images per class "
                                  "(balanced, like AffectNet's)", ge=1)


class SamplerSpec(_Strict):
    """Which training images each epoch visits."""

    name: str = _f("natural", "natural (every image as it comes) or balanced (at most `cap` a "
                   "class, the study's best); plugins add more")
    per_epoch: int = _f(5000, "images drawn per epoch (the study drew 5,000; a number above the "
                        "training set's size means one full pass)", ge=1)
    cap: int = _f(5000, "balanced: at most this many images of a class per epoch (the study's 5,000)", ge=1)
    class_weighted_loss: bool = _f(False, "weight the loss by inverse class frequency instead of "
                                   "(or as well as) resampling")


class ModelSpec(_Strict):
    """A registered model and its fully resolved parameters (defaults filled in)."""

    name: str = _f("cnn", "a registered model (docs/models.md); its builder's keyword parameters "
                   "are this section's other keys")
    params: dict[str, Any] = Field(default_factory=dict, description="the builder's parameters")


class TrainSpec(_Strict):
    """Optimisation settings; the defaults are the study's (Adam, batch 128)."""

    epochs: int = _f(15, "passes of `sampler.per_epoch` images (the study trained ~15)", ge=1)
    batch_size: int = _f(128, "training batch (the study's)", ge=1)
    eval_batch_size: int = _f(512, "evaluation batch: larger is faster and changes no result", ge=1)
    optimizer: str = _f("adam", "adam (the study's), adamw (decoupled weight decay) or sgd "
                        "(Nesterov momentum 0.9)")
    lr: float = _f(1e-3, "learning rate (Keras' Adam default, which the study used); the peak "
                   "of a schedule", gt=0)
    weight_decay: float = _f(0.0, "L2 penalty (adam, sgd) or decoupled decay (adamw)", ge=0)
    precision: Literal["auto", "fp32", "bf16"] = _f(
        "auto", "auto takes bf16 autocast where the hardware computes it natively (CUDA, CPUs with "
        "AVX512-BF16/AMX: ~2x faster), fp32 elsewhere (emulated bf16 is 5-15x slower)")
    channels_last: bool | Literal["auto"] = _f(
        "auto", "NHWC memory layout; auto = exactly when bf16 is on, so fp32 runs keep the "
        "study's layout and numbers")
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "auto picks CUDA when available")
    seed: int = _f(0, "seeds weights, sampling and augmentation: the same seed on the CPU gives "
                   "the same run bit for bit")
    seeds: int = _f(1, "`harness run` trains seed, seed+1, ..., one tracked run each; not part of "
                    "what one run trains, so not in the spec hash", ge=1, le=100)
    label_smoothing: float = _f(0.0, "cross-entropy against targets smoothed by this much "
                                "(Szegedy et al., 2016); 0 = hard labels", ge=0, lt=1)
    schedule: Literal["constant", "onecycle", "cosine"] = _f(
        "constant", "learning rate per step: constant (the study's), onecycle (PyTorch's "
        "OneCycleLR) or cosine (linear warm-up, then cosine to 0)")
    warmup: float = _f(0.0, "fraction of all steps spent warming up (onecycle: 0 means PyTorch's 0.3)", ge=0, lt=1)
    ema: float = _f(0.0, "decay of an exponential moving average of the weights, which is then "
                    "what is evaluated and saved (0 = off; 0.999 suits a few thousand steps)", ge=0, lt=1)
    tta: Literal["none", "flip", "crops"] = _f(
        "none", "test-time augmentation: flip averages each image's softmax with its mirror's; "
        "crops over ten views (the whole image and its four 90% corner crops, each mirrored)")
    budget_tflop: float | None = _f(
        None, "a training budget in TFLOP counted by the harness (forward + backward FLOPs per "
        "image x images seen): the epoch count becomes the largest whole number within it and "
        "wins over `epochs`, so a budget means the same on every machine", gt=0)
    eval_every: int = _f(1, "score the validation split every this many epochs (the final epoch "
                         "always): evaluation compute is logged apart and is not in the budget", ge=1)
    checkpoint_every: int | None = _f(
        None, "save a resumable checkpoint every this many epochs (a killed run started again "
        "continues from it, bit for bit); null = about ten a run (epochs // 10, at least 1), "
        f"none sooner than {AUTO_CHECKPOINT_MIN_S:.0f} s of training after the last (so a short run "
        "pays nothing for it); 0 = never; how a run is kept safe, not what it trains, so not in "
        "the spec hash", ge=0)

    def checkpoint_interval(self) -> int:
        """Epochs between checkpoints (0: none): the field, or about ten a run."""
        return self.checkpoint_every if self.checkpoint_every is not None else max(1, self.epochs // 10)

    def checkpoint_min_seconds(self) -> float:
        """The least training time between two checkpoints: none for an explicit interval; for
        the automatic one, enough that a checkpoint's cost is a small share of what it protects."""
        return AUTO_CHECKPOINT_MIN_S if self.checkpoint_every is None else 0.0


class AugmentSpec(_Strict):
    """Batched on-device training augmentation (harness.train.augment); all off by default, as in the study."""

    crop: tuple[float, float] = _f(
        (1.0, 1.0), "random resized crop: the crop's side as a fraction of the image's, uniform in "
        "[low, high], anywhere inside, resized back; [1, 1] = no crop")
    flip: bool = _f(False, "horizontal flip of half the images")
    rotate: float = _f(0.0, "rotation, uniform in ± this many degrees", ge=0, le=180)
    erasing: float = _f(0.0, "random erasing: probability per image", ge=0, le=1)
    mixup: float = _f(0.0, "mixup's Beta(alpha, alpha); 0 = off", ge=0)
    cutmix: float = _f(0.0, "cutmix's Beta(alpha, alpha); 0 = off", ge=0)

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
    description: str = Field(min_length=1, description="one line: what this experiment is (required)")
    paper_val_accuracy: float | None = _f(None, "the validation accuracy the paper reported, if it "
                                          "did: the report sets ours beside it", ge=0, le=1)
    iteration: int | str | None = _f(None, "the paper's iteration this reproduces (a number, or a "
                                     "word such as 'future')")
    tags: tuple[str, ...] = _f((), "the report's comparison groups this belongs to: imbalance, "
                               "architecture, residual, resnext, normalisation, activation, beyond")
    ladder: int | None = _f(None, "its rung on an ablation ladder (0 = the starting point; each "
                            "rung adds one ingredient to the one before)", ge=0)
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
