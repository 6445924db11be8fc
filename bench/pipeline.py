"""1b. Input pipeline: the harness's cached uint8 tensors against a per-item PIL DataLoader.

A torch Dataset that opens, crops and resizes every image with PIL in `__getitem__` (2 workers,
shuffle, batch 128) against the harness's epoch on its cache; speed-up = median of (pipeline s /
harness s), target >= 3x, on the suite's synthetic images (128-224 px) and on 400-700 px ones.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from common import (
    REPO,
    median_ratio,
    met,
    rounded,
    time_variants,
)
from PIL import Image
from training_setup import (
    EFFICIENCY_EXPERIMENTS,
    LARGE_PX,
    TARGETS,
    Sizes,
    fresh_optimizer,
    prepared_model,
    synchronize,
    with_settings,
)

from harness.data.dataset import load_dataset
from harness.data.records import ImageRecord
from harness.data.samplers import natural
from harness.suite.load import Suite
from harness.train.device import resolve_precision, to_tensor
from harness.train.loop import train_one_epoch


class PerItemImages(torch.utils.data.Dataset):
    """The usual per-item dataset: open, convert, crop the face, resize, to a float tensor."""

    def __init__(self, records: Sequence[ImageRecord], image_size: int) -> None:
        self.records = list(records)
        self.size = (image_size, image_size)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        record = self.records[i]
        with Image.open(record.path) as im:
            face = im.convert("RGB")
            if record.box is not None:
                x, y, w, h = record.box
                face = face.crop((x, y, x + w, y + h))
            face = face.resize(self.size, Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.array(face, dtype=np.uint8))
        return pixels.permute(2, 0, 1).float().div_(255.0), record.label


def decode_epoch(images: PerItemImages, batch: int) -> int:
    """The per-item side's DataLoader alone: the same 2 workers decoding, no model."""
    loader = torch.utils.data.DataLoader(images, batch_size=batch, shuffle=True, num_workers=2)
    return sum(len(yb) for _, yb in loader)


def pipeline_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: PerItemImages,
    batch: int,
    device: str,
    *,
    bf16: bool,
    channels_last: bool,
) -> int:
    """One epoch the per-item way: a fresh DataLoader with 2 workers, the same steps as the bare loop."""
    loader = torch.utils.data.DataLoader(
        images, batch_size=batch, shuffle=True, num_workers=2, pin_memory=device.startswith("cuda")
    )
    model.train()
    seen = 0
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        loss = torch.nn.functional.cross_entropy(logits.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(yb)
    return seen


def measure_pipeline_input(
    name: str, suite: Suite, root: Path, cache_dir: Path, sizes: Sizes, device: str
) -> tuple[dict, dict]:
    """1b on one dataset folder: the per-item pipeline against the harness's epoch."""
    from harness.core.classes import CLASS_SETS
    from harness.data.affectnet import list_affectnet

    base = suite.experiments[EFFICIENCY_EXPERIMENTS["cnn"]]
    spec = with_settings(
        suite, base, data={"source": "affectnet", "path": str(root)}, sampler={"per_epoch": sizes.pipeline_images}
    )
    started = time.perf_counter()
    load_dataset(spec.data, REPO, cache_dir)  # builds the cache if needed: not what is timed
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    data = load_dataset(spec.data, REPO, cache_dir)
    x, y = to_tensor(data.x_train, device), torch.from_numpy(data.y_train).to(device)
    synchronize(device)
    one_off_s = time.perf_counter() - started
    model, channels_last = prepared_model(spec, data, device)
    bf16 = resolve_precision(spec.train.precision, device) == "bf16"
    sides = {name: copy.deepcopy(model) for name in ("harness", "pipeline")}
    optimizers = {side: fresh_optimizer(m, spec) for side, m in sides.items()}
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    records = list_affectnet(data.root, CLASS_SETS[spec.data.classes]).train
    pick = rng.permutation(len(records))[: sizes.pipeline_images]
    images = PerItemImages([records[i] for i in pick], spec.data.image_size)
    batch = spec.train.batch_size

    def harness_side() -> int:
        # What fit does per epoch: draw the epoch's indices, then train on the cached tensors.
        indices = natural(data.y_train, len(images), 0, rng)
        train_one_epoch(sides["harness"], optimizers["harness"], loss_fn, x, y, indices, spec, device, channels_last)
        return len(indices)

    def pipeline_side() -> int:
        return pipeline_epoch(
            sides["pipeline"], optimizers["pipeline"], images, batch, device, bf16=bf16, channels_last=channels_last
        )

    harness_side(), pipeline_side()  # warm-up: allocator, kernels, the page cache for the files
    seconds, outputs = time_variants(
        {"harness": harness_side, "pipeline": pipeline_side}, sizes.pipeline_repeats,
        alternate=True, before=lambda: synchronize(device),
    )  # fmt: skip
    assert outputs["harness"] == outputs["pipeline"], outputs
    n = outputs["harness"]
    # The ceiling of the speed-up: the per-item side decodes on the same two cores that train, so
    # its epoch costs about the harness's (the training) plus its DataLoader's alone (decoding).
    decode_s, _ = time_variants({"decode": lambda: decode_epoch(images, batch)}, sizes.pipeline_repeats)
    predicted = 1 + statistics.median(decode_s["decode"]) / statistics.median(seconds["harness"])
    keys = _pipeline_keys(f"train_pipeline_{name}", n, seconds, decode_s, predicted, one_off_s)
    details = {
        "root": str(data.root), "training_images_on_disk": len(records), "cache_build_or_load_s": round(build_s, 2),
        "one_off_load_s": round(one_off_s, 3), "seconds": rounded(seconds), "decode_only_seconds": rounded(decode_s),
    }  # fmt: skip
    _print_pipeline(name, keys, f"train_pipeline_{name}", one_off_s)
    return keys, details


def _pipeline_keys(prefix: str, n: int, seconds: dict[str, list[float]], decode_s: dict[str, list[float]],
                   predicted: float, one_off_s: float) -> dict[str, float]:  # fmt: skip
    speedup = median_ratio(seconds["pipeline"], seconds["harness"])
    return {
        f"{prefix}_images": n,
        f"{prefix}_harness_img_s": round(n / statistics.median(seconds["harness"]), 1),
        f"{prefix}_per_item_img_s": round(n / statistics.median(seconds["pipeline"]), 1),
        f"{prefix}_speedup": round(speedup, 2),
        f"{prefix}_target": TARGETS["pipeline"],
        f"{prefix}_met": met(speedup, TARGETS["pipeline"], at_most=False),
        f"{prefix}_one_off_load_s": round(one_off_s, 3),
        f"{prefix}_decode_only_img_s": round(n / statistics.median(decode_s["decode"]), 1),
        f"{prefix}_ceiling": round(predicted, 2),
    }


def _print_pipeline(name: str, keys: dict[str, float], prefix: str, one_off_s: float) -> None:
    print(
        f"1b pipeline  {name}: harness {keys[f'{prefix}_harness_img_s']:.0f} img/s, per-item DataLoader "
        f"{keys[f'{prefix}_per_item_img_s']:.0f} img/s -> {keys[f'{prefix}_speedup']:.2f}x (target >= "
        f"{TARGETS['pipeline']:.0f}x); one-off cache load {one_off_s:.2f} s"
    )
    print(
        f"   its DataLoader alone (decoding, no training) {keys[f'{prefix}_decode_only_img_s']:.0f} img/s: "
        f"ceiling 1 + decode s / harness s = {keys[f'{prefix}_ceiling']:.2f}x"
    )


def measure_pipeline(
    suite: Suite, suite_data_root: Path, cache_dir: Path, sizes: Sizes, device: str, tmp: Path
) -> tuple[dict, dict]:
    """1b on the suite's own images and on AffectNet-sized ones generated for this run."""
    from harness.data.synth.generator import generate

    keys, details = measure_pipeline_input("suite", suite, suite_data_root, cache_dir, sizes, device)
    large = tmp / "affectnet-large"
    low, high = LARGE_PX
    summary = generate(large, seed=0, scale=sizes.large_scale, val_per_class=2, min_size=low, max_size=high)
    # Its cache goes to the temporary folder too, not into the project's cache.
    more_keys, more_details = measure_pipeline_input("large", suite, large, tmp / "cache", sizes, device)
    more_details["generate_s"] = round(summary.seconds, 1)
    more_details["image_px"] = [low, high]
    return {**keys, **more_keys}, {"suite": details, "large": more_details}
