"""Shared fixtures: a tiny synthetic AffectNet-format dataset and tiny suite files pointing at it."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

# Tests run on 2 cores next to pytest itself: keep torch from oversubscribing them (one thread
# per pytest-xdist worker when `make test` runs two of them).
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")

TINY_SCALE = 0.002  # ~850 training images: enough to train a step, small enough for seconds
TINY_VAL = 4


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic dataset at a tiny scale, generated once per test session."""
    from harness.data.synthetic import ensure_synthetic

    root = tmp_path_factory.mktemp("data") / "synthetic-affectnet"
    ensure_synthetic(root, seed=0, scale=TINY_SCALE, val_per_class=TINY_VAL, progress=False)
    return root


def tiny_suite_text(data: Path, extra: str = "") -> str:
    """A suite of small, fast models over `data`; `extra` is appended to `experiments`."""
    return textwrap.dedent(
        f"""
        suite: tiny
        defaults:
          data:
            source: synthetic
            path: {data}
            synth_scale: {TINY_SCALE}
            synth_val_per_class: {TINY_VAL}
          sampler: {{name: natural, per_epoch: 96, cap: 8}}
          model: {{name: cnn, widths: [8, 16], dense: 32}}
          train: {{epochs: 2, batch_size: 32, precision: fp32, channels_last: true}}
        experiments:
          plain:
            description: a plain CNN
            iteration: 1
            paper_val_accuracy: 0.25
            tags: [imbalance, architecture]
          plain_balanced:
            description: the same, balanced
            extends: plain
            tags: [imbalance]
            sampler: {{name: balanced}}
          residual:
            description: residual blocks
            iteration: 2
            paper_val_accuracy: 0.297
            tags: [architecture]
            model: {{name: residual_cnn, widths: [8, 16], dense: 32, num_blocks: 2}}
        """
    ) + extra


@pytest.fixture
def tiny_suite(tmp_path: Path, tiny_data: Path) -> Path:
    """A suite file in a fresh project folder (so mlflow.db and caches land in tmp_path)."""
    path = tmp_path / "experiments.yaml"
    path.write_text(tiny_suite_text(tiny_data))
    return path
