"""The modern recipe's ingredients (harness.augment and the spec fields) and the beyond suite."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.core.errors import SpecError
from harness.spec.schema import AugmentSpec, TrainSpec
from harness.suite.load import load_suite
from harness.train.augment import augment_batch, mix_batch
from harness.train.schedules import ModelEma, lr_scheduler

ROOT = Path(__file__).resolve().parents[1]
# What the study's runs trained on, key by key, before the modern ingredients existed: these keys
# (and only these) make up their spec hash, so stores recorded earlier keep matching.
STUDY_TRAIN_KEYS = {
    "epochs", "batch_size", "eval_batch_size", "optimizer", "lr", "weight_decay", "precision",
    "channels_last", "device", "seed",
}  # fmt: skip


def batch(n: int = 16, size: int = 12, channels: int = 1) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(n, channels, size, size)


def test_default_ingredients_are_the_study_and_use_no_randomness() -> None:
    x = batch()
    y = torch.arange(16) % 3
    state = torch.get_rng_state()
    assert augment_batch(x, AugmentSpec()) is x
    mixed, y_same, partner, lam = mix_batch(x, y, AugmentSpec())
    assert mixed is x and y_same is y and partner is None and lam == 1.0
    assert torch.equal(torch.get_rng_state(), state)  # the study's random stream is untouched


def test_study_specs_keep_their_training_keys_and_hashes() -> None:
    suite = load_suite(ROOT / "experiments.yaml")
    for name, spec in suite.experiments.items():
        trained = spec.training_dict()
        if name == "modern":
            assert trained["augment"]["flip"] is True and trained["train"]["tta"] == "flip"
            continue
        assert "augment" not in trained, name
        assert set(trained["train"]) == STUDY_TRAIN_KEYS, name
    base = suite.experiments["cnn_residual_balanced"]
    changed = base.model_copy(update={"train": base.train.model_copy(update={"label_smoothing": 0.1})})
    assert changed.spec_hash() != base.spec_hash()


# Spec hashes of study runs as recorded before the later model parameters (pool_first) existed,
# computed at commit 676402d: a store recorded then must still skip these runs.
RECORDED_HASHES = {
    "cnn_baseline": "cdb2ffb4a0702848",
    "cnn_interleaved": "58e2b26868ad5e44",
    "cnn_residual_balanced": "bcb505b0d80d070a",
    "cnn_residual_balanced_batchnorm": "58f1eda40d44e10d",
    "resnext": "ae24390a732f45a0",
    "modern": "0a106dd0b0dcc9c2",
}


def test_later_model_params_at_their_default_keep_recorded_hashes() -> None:
    suite = load_suite(ROOT / "experiments.yaml")
    assert {name: suite.experiments[name].spec_hash() for name in RECORDED_HASHES} == RECORDED_HASHES
    base = suite.experiments["cnn_baseline"]
    assert base.model.params["pool_first"] is False  # resolved in the spec, left out of the hash
    assert "model.pool_first" not in base.flat_params()
    moved = base.model_copy(update={"model": base.model.model_copy(update={"params": {**base.model.params, "pool_first": True}})})
    assert moved.spec_hash() != base.spec_hash() and moved.flat_params()["model.pool_first"] == "True"


def test_flip_only_gives_each_image_or_its_exact_mirror() -> None:
    x = batch(64)
    out = augment_batch(x, AugmentSpec(flip=True))
    same = (out - x).abs().amax(dim=(1, 2, 3)) < 1e-5
    mirrored = (out - x.flip(3)).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert bool((same | mirrored).all())
    assert 10 < int(mirrored.sum()) < 54  # about half


def test_crop_and_rotation_stay_inside_the_image_without_black_edges() -> None:
    x = torch.ones(32, 1, 24, 24)
    for spec in (AugmentSpec(crop=(0.6, 0.9)), AugmentSpec(rotate=30), AugmentSpec(crop=(0.8, 1.0), rotate=10)):
        assert torch.allclose(augment_batch(x, spec), x, atol=1e-5), spec  # edges repeat, never black
    # A rotation turns a vertical edge: the top and bottom rows then differ at the middle column.
    edge = torch.zeros(16, 1, 24, 24)
    edge[..., 12:] = 1.0
    rotated = augment_batch(edge, AugmentSpec(rotate=30))
    tilt = (rotated[:, 0, 2, 9:15] - rotated[:, 0, -3, 9:15]).abs().sum(1)
    assert float(tilt.max()) > 1.0 and float((edge[:, 0, 2] - edge[:, 0, -3]).abs().sum()) == 0
    # A crop zooms in: a left-to-right ramp keeps its direction but spans less of its range.
    ramp = torch.linspace(0, 1, 24).expand(8, 1, 24, 24).contiguous()
    zoomed = augment_batch(ramp, AugmentSpec(crop=(0.5, 0.5)))
    span = zoomed[:, 0, 12, -1] - zoomed[:, 0, 12, 0]
    assert bool(((span > 0.4) & (span < 0.6)).all())


def test_random_erasing_zeroes_one_rectangle_per_chosen_image() -> None:
    x = torch.ones(64, 1, 20, 20)
    erased = augment_batch(x, AugmentSpec(erasing=1.0))
    zero = erased[:, 0] == 0
    assert bool(zero.flatten(1).any(1).all())
    for mask in zero[:8]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        # The zeros fill exactly the box they span: one rectangle.
        assert int(mask.sum()) == len(rows) * len(cols)
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)
    assert torch.equal(augment_batch(x, AugmentSpec(erasing=0.0)), x)


def test_mixup_and_cutmix_mix_with_a_permutation_and_weigh_the_labels() -> None:
    torch.manual_seed(0)
    x, y = batch(8), torch.arange(8)
    torch.manual_seed(3)
    mixed, ya, yb, lam = mix_batch(x, y, AugmentSpec(mixup=0.4))
    assert 0 <= lam <= 1 and torch.equal(ya, y)
    assert yb is not None and sorted(yb.tolist()) == list(range(8))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[yb])
    torch.manual_seed(4)
    cut, _, yb, lam = mix_batch(x, y, AugmentSpec(cutmix=1.0))
    assert yb is not None
    moved = yb != torch.arange(8)  # images paired with themselves are unchanged
    assert bool(moved.any())
    from_partner = (cut[moved] == x[yb][moved]) & (cut[moved] != x[moved])
    # One rectangle, the same for the whole batch, whose area is exactly 1 - lam.
    assert float(from_partner.float().mean()) == pytest.approx(1 - lam, abs=1e-6)


def test_ema_follows_the_weights_with_a_warmed_up_decay() -> None:
    model = torch.nn.Linear(3, 2)
    ema = ModelEma(model, decay=0.9)
    start = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    d = min(0.9, 2 / 11)  # the first update's warmed-up decay
    assert torch.allclose(ema.module.weight, d * start + (1 - d) * model.weight)
    assert not ema.module.weight.requires_grad


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_schedules_warm_up_peak_and_anneal_over_exactly_the_steps(schedule: str) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1, momentum=0.9, nesterov=True)
    total = 100
    sched = lr_scheduler(opt, TrainSpec(lr=0.1, schedule=schedule, warmup=0.2), total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert 15 <= peak <= 21 and max(lrs) == pytest.approx(0.1, rel=1e-3)
    assert lrs[0] < 0.03 and lrs[-1] < 0.002
    assert lr_scheduler(opt, TrainSpec(), total) is None


def test_flip_tta_averages_the_softmax_of_both_views() -> None:
    from harness.train.scoring import predict

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))
    x = torch.randint(0, 256, (10, 2, 4, 4), dtype=torch.uint8)
    y = torch.zeros(10, dtype=torch.long)

    class Spec:
        train = TrainSpec(tta="flip", precision="fp32")

    loss, pred = predict(model, x, y, Spec(), "cpu")  # type: ignore[arg-type]
    xf = x.float() / 255
    with torch.no_grad():
        probs = (model(xf).softmax(1) + model(xf.flip(3)).softmax(1)) / 2
    assert np.array_equal(pred, probs.argmax(1).numpy())
    assert loss == pytest.approx(float(-probs[:, 0].log().mean()), rel=1e-5)


def test_ten_crop_tta_averages_whole_image_and_corner_crops_with_mirrors() -> None:
    import torch.nn.functional as F

    from harness.train.augment import TTA_CROP, tta_views
    from harness.train.scoring import predict

    x = torch.arange(2 * 1 * 10 * 10, dtype=torch.float32).reshape(2, 1, 10, 10)
    views = tta_views(x, "crops")
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x) and torch.equal(views[5], x.flip(3))
    # A corner crop of 90% of the side: the top-left view, sampled back at the input size, is
    # bilinearly resizing the top-left 9x9 pixels to 10x10 (but for the last row and column,
    # which read the crop's outer half pixel from the image rather than repeating the crop's edge).
    expected = F.interpolate(x[:, :, :9, :9], size=(10, 10), mode="bilinear", align_corners=False)
    assert TTA_CROP == 0.9 and torch.allclose(views[1][..., :-1, :-1], expected[..., :-1, :-1], atol=1e-4)
    assert torch.allclose(views[6], views[1].flip(3))
    # The four corners differ from each other and from the whole image.
    assert len({tuple(v.flatten().tolist()) for v in views[:5]}) == 5

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10 * 10, 3))
    xb = torch.randint(0, 256, (6, 1, 10, 10), dtype=torch.uint8)

    class Spec:
        train = TrainSpec(tta="crops", precision="fp32")

    _, pred = predict(model, xb, None, Spec(), "cpu")  # type: ignore[arg-type]
    with torch.no_grad():
        probs = sum(model(v).softmax(1) for v in tta_views(xb.float() / 255, "crops")) / 10
    assert np.array_equal(pred, probs.argmax(1).numpy())


def test_bad_recipe_fields_name_the_key(tmp_path: Path) -> None:
    def suite(section: str) -> Path:
        path = tmp_path / "s.yaml"
        path.write_text(textwrap.dedent(f"""
            suite: t
            defaults: {{data: {{source: synthetic, path: data/x}}}}
            experiments:
              a: {{description: x, {section}}}
        """))
        return path

    cases = {
        "augment: {crop: [0.5, 1.2]}": "experiments.a.augment.crop",
        "augment: {flipp: true}": "did you mean 'flip'",
        "train: {schedule: linear}": "experiments.a.train.schedule",
        "train: {label_smoothing: 1.5}": "experiments.a.train.label_smoothing",
        "ladder: -1": "experiments.a.ladder",
    }
    for section, expected in cases.items():
        with pytest.raises(SpecError, match=expected.replace(".", r"\.")):
            load_suite(suite(section))


def test_beyond_ladder_adds_one_ingredient_per_rung() -> None:
    suite = load_suite(ROOT / "beyond.yaml")
    ladder = sorted((s for s in suite.experiments.values() if s.ladder is not None), key=lambda s: s.ladder)
    assert [s.ladder for s in ladder] == list(range(10))
    assert ladder[0].name == "study_best" and ladder[-1].name == "modern_cpu"
    assert ladder[0].model.name == "residual_cnn" and ladder[0].augment == AugmentSpec()
    changed = []
    for before, after in zip(ladder, ladder[1:], strict=False):
        a, b = before.training_dict(), after.training_dict()
        changed.append({s for s in a.keys() | b.keys() if a.get(s) != b.get(s)})
    # augmentation, batch norm (the model), schedule, smoothing, TTA, sampling, input size: one
    # section each; then the 300 TFLOP budget with the regularisation a long run needs (dropout
    # in the model, stronger augmentation), and depth.
    assert changed == [{"augment"}, {"model"}, {"train"}, {"train"}, {"train"}, {"sampler"}, {"data"},
                       {"model", "augment", "train"}, {"model"}]  # fmt: skip
    assert ladder[-2].train.budget_tflop == ladder[-1].train.budget_tflop == 300
    top = ladder[-1]
    assert (top.data.image_size, top.data.channels, top.data.dedupe) == (48, 1, "drop")
    for spec in suite.experiments.values():
        assert "beyond" in spec.tags and spec.data.source == "fer2013"
    gpu = load_suite(ROOT / "beyond.yaml").experiments["modern_gpu"]
    assert gpu.train.ema > 0 and gpu.augment.erasing > 0


def test_fit_with_every_ingredient_is_deterministic(tmp_path: Path, tiny_data: Path) -> None:
    from harness.data.dataset import load_dataset
    from harness.models.registry import create_model
    from harness.train.loop import fit

    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(f"""
        suite: t
        defaults:
          data: {{source: synthetic, path: {tiny_data}, synth_scale: 0.002, synth_val_per_class: 4}}
          sampler: {{name: natural, per_epoch: 64}}
          train: {{epochs: 2, batch_size: 16, precision: fp32}}
        experiments:
          m:
            description: every ingredient
            model: {{name: resnet, depths: [1, 1], widths: [8, 16], stem_width: 8}}
            augment: {{crop: [0.8, 1.0], flip: true, rotate: 10, erasing: 0.5, mixup: 0.2, cutmix: 1.0}}
            train: {{optimizer: sgd, lr: 0.05, schedule: onecycle, label_smoothing: 0.1, ema: 0.9, tta: flip}}
    """))
    spec = load_suite(path).experiments["m"]
    data = load_dataset(spec.data, tmp_path, tmp_path / "cache")

    def train() -> tuple[list[float], dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = create_model("resnet", num_classes=data.num_classes, in_channels=3, image_size=32, **spec.model.params)
        result = fit(model, data, spec)
        assert len(result.history) == 2 and all(math.isfinite(e.train_loss) for e in result.history)
        return [e.val_loss for e in result.history], result.model.state_dict()

    losses_a, weights_a = train()
    losses_b, weights_b = train()
    assert losses_a == losses_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
