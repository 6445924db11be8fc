"""beyond.yaml end to end on a tiny FER2013 CSV: every rung trains, and the report shows the ladder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
LADDER = ("study_best", "ladder_augment", "ladder_batchnorm", "ladder_schedule", "ladder_smoothing",
          "ladder_tta", "ladder_natural", "ladder_native", "ladder_budget", "modern_cpu")  # fmt: skip


def write_noise_csv(path: Path, per_class: int) -> Path:
    """fer2013.csv with `per_class` training rows of random 48x48 faces per emotion code."""
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for code in range(7):
        for _ in range(per_class):
            pixels = rng.integers(0, 256, 48 * 48)
            lines.append(f"{code},{' '.join(map(str, pixels.tolist()))},Training")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_every_beyond_rung_trains_and_the_report_shows_the_ladder(tmp_path: Path) -> None:
    import mlflow

    config = tmp_path / "beyond.yaml"
    shutil.copy(ROOT / "beyond.yaml", config)
    data = write_noise_csv(tmp_path / "fer2013.csv", per_class=24)
    argv = ["--config", str(config), "--profile", "smoke"]
    assert main(["run", *argv, "--data", f"fer2013:{data}"]) == 0
    out = tmp_path / "beyond.html"
    assert main(["report", *argv, "--out", str(out)]) == 0

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fer-beyond")
    runs = {r.data.tags["harness.experiment"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {*LADDER, *(f"recipe_{v}" for v in ("wide", "wider", "deep", "ema", "mixup")), "modern_gpu"}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    for rung, name in enumerate(LADDER):
        assert runs[name].data.tags["harness.ladder_rung"] == str(rung)
    top = runs["modern_cpu"].data.params
    assert (top["data.image_size"], top["data.channels"], top["train.tta"]) == ("48", "1", "crops")
    assert top["augment.flip"] == "True" and top["model.name"] == "interleaved_cnn"
    assert (top["model.norm"], top["model.pool_first"], top["train.channels_last"]) == ("batch", "True", "True")
    assert "augment.flip" not in runs["study_best"].data.params  # the study's settings, as they were
    # The TTA rung scores the rung before's weights; every other rung trains its own.
    rescored = {name for name, run in runs.items() if "harness.weights_from" in run.data.tags}
    assert rescored == {"ladder_tta"}
    assert runs["ladder_tta"].data.tags["harness.weights_from"] == runs["ladder_smoothing"].info.run_id

    page = out.read_text()
    assert 'id="beyond"' in page
    assert all(name in page for name in LADDER)
    assert "missing: no run" not in page
    assert "human agreement" in page  # the FER2013 reference lines
