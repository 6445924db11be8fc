"""The CUDA path, on a GPU machine (`pytest -m cuda`; bench/gpu_check.sh runs these). Skipped
where there is no GPU: the device-selection errors are tested everywhere (tests/test_cli.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def _data(n: int = 512, size: int = 32, channels: int = 3):
    from harness.data.dataset import Dataset

    rng = np.random.default_rng(0)
    faces = lambda k: rng.integers(0, 256, (k, size, size, channels), dtype=np.uint8)  # noqa: E731
    return Dataset("cuda", __import__("pathlib").Path("."), tuple("abcdefg"), faces(n), rng.integers(0, 7, n),
                   faces(128), rng.integers(0, 7, 128), "cuda")  # fmt: skip


def _spec(**train):
    from harness.spec.schema import DataSpec, ExperimentSpec, SamplerSpec, TrainSpec

    return ExperimentSpec(name="c", description="c", data=DataSpec(image_size=32, channels=3),
                          sampler=SamplerSpec(per_epoch=512), train=TrainSpec(epochs=2, batch_size=64, **train))  # fmt: skip


def test_auto_picks_cuda_and_bf16() -> None:
    from harness.train.device import resolve_device, resolve_precision

    assert resolve_device("auto") == "cuda"
    assert resolve_precision("auto", "cuda") == "bf16"


def test_a_fit_trains_on_the_gpu_with_augmentation_there() -> None:
    from harness.models.build import build_model
    from harness.train.loop import fit

    spec = _spec(device="cuda").model_copy(update={"augment": _spec().augment.model_copy(update={"flip": True, "erasing": 0.5})})
    data = _data()
    result = fit(build_model(spec, data), data, spec, device="cuda")
    assert next(result.model.parameters()).is_cuda
    assert len(result.history) == 2 and all(math.isfinite(e.train_loss) for e in result.history)
    assert 0 <= result.evaluation.accuracy <= 1


def test_out_of_memory_names_the_batch_size() -> None:
    from harness.core.errors import HarnessError
    from harness.models.build import build_model
    from harness.train.loop import fit

    free, _ = torch.cuda.mem_get_info()
    batch = int(free // (64 * 32 * 32 * 4)) + 1  # more activations than the card holds
    spec = _spec(device="cuda", batch_size=batch).model_copy(update={"sampler": _spec().sampler.model_copy(update={"per_epoch": batch})})
    data = _data(n=min(batch, 200_000))
    with pytest.raises(HarnessError, match=f"CUDA out of memory at train.batch_size {batch}"):
        fit(build_model(spec, data), data, spec, device="cuda")
