"""`harness data synth`: write an AffectNet-format dataset of drawn faces, deterministically per seed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.core.classes import AFFECTNET_CLASSES
from harness.core.errors import DataError
from harness.core.locks import atomic_write_text
from harness.data.synth.example import render_example
from harness.data.synth.knobs import (
    CSV_HEADER,
    GENERATOR_VERSION,
    IMAGE_DIR,
    JPEG_QUALITY,
    MIN_TRAIN_PER_CLASS,
    NO_VALENCE_AROUSAL,
    SPLITS,
    SUBDIRS,
    TRAIN_COUNTS_AFFECTNET,
    Task,
)


@dataclass(frozen=True)
class SynthSummary:
    """What `generate` wrote: where, how many images per class and split, and how long it took."""

    root: Path
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    seconds: float


def train_counts(scale: float) -> dict[int, int]:
    """Training images per expression code: AffectNet's counts times `scale`, at least a few each."""
    if not scale > 0:
        raise DataError(f"synthetic dataset: scale must be > 0, got {scale}")
    return {
        code: max(round(n * scale), MIN_TRAIN_PER_CLASS)
        for code, n in TRAIN_COUNTS_AFFECTNET.items()
    }


def generate(
    root: Path,
    *,
    seed: int = 0,
    scale: float = 0.02,
    val_per_class: int = 100,
    min_size: int = 128,
    max_size: int = 224,
    workers: int | None = None,
    progress: bool = False,
) -> SynthSummary:
    """Write the synthetic dataset under `root` (images, SYNTH.json, then the two CSVs)."""
    start = time.perf_counter()
    root = Path(root)
    _check_arguments(seed, val_per_class, min_size, max_size)
    counts = {
        "training": train_counts(scale),
        "validation": dict.fromkeys(TRAIN_COUNTS_AFFECTNET, val_per_class),
    }
    _prepare_root(root)
    meta = {
        "generator": "fer-harness synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "val_per_class": val_per_class,
        "min_size": min_size,
        "max_size": max_size,
        "train_counts": _by_name(counts["training"]),
        "val_counts": _by_name(counts["validation"]),
    }
    # SYNTH.json first marks the folder as ours, so an interrupted run can be redone here.
    atomic_write_text(root / "SYNTH.json", json.dumps(meta, indent=2) + "\n")
    tasks = [t for split in SPLITS for t in _split_tasks(seed, split, counts[split])]
    _make_subdirs(root, tasks)
    render = partial(_render_task, root=str(root), seed=seed, min_size=min_size, max_size=max_size)
    rows = _run_tasks(render, tasks, workers, progress)
    n_train = sum(counts["training"].values())
    # CSVs last: their presence is what marks the dataset complete.
    atomic_write_text(root / "validation.csv", csv_text(rows[n_train:]))
    atomic_write_text(root / "training.csv", csv_text(rows[:n_train]))
    return SynthSummary(
        root=root,
        train_counts=meta["train_counts"],
        val_counts=meta["val_counts"],
        seconds=time.perf_counter() - start,
    )


def _check_arguments(seed: int, val_per_class: int, min_size: int, max_size: int) -> None:
    if seed < 0:
        raise DataError(f"synthetic dataset: seed must be >= 0, got {seed}")
    if val_per_class < 0:
        raise DataError(f"synthetic dataset: val_per_class must be >= 0, got {val_per_class}")
    # Faces need room for their features, and the study resizes to 32 px: keep images larger.
    if not 64 <= min_size <= max_size:
        raise DataError(
            f"synthetic dataset: need 64 <= min_size <= max_size, got {min_size}, {max_size}"
        )


def _by_name(counts: Mapping[int, int]) -> dict[str, int]:
    return {AFFECTNET_CLASSES[code]: n for code, n in sorted(counts.items())}


def _prepare_root(root: Path) -> None:
    """Create `root`, or clear a previous synthetic dataset there; never touch foreign data."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder; cannot write the dataset there")
    if root.exists() and any(root.iterdir()):
        if not (root / "SYNTH.json").is_file():
            raise DataError(
                f"{root}: folder is not empty and holds no SYNTH.json; refusing to overwrite it"
            )
        # Drop the CSVs first so an interrupted regeneration never looks complete.
        for name in ("training.csv", "validation.csv", "SYNTH.json"):
            (root / name).unlink(missing_ok=True)
        shutil.rmtree(root / IMAGE_DIR, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)


def _split_tasks(seed: int, split: str, counts: Mapping[int, int]) -> list[Task]:
    """(relative path, split id, index, code) per image; classes shuffled like AffectNet's CSVs."""
    split_id = SPLITS.index(split)
    codes = np.repeat(np.array(sorted(counts), dtype=np.int64), [counts[c] for c in sorted(counts)])
    np.random.default_rng(np.random.SeedSequence([seed, split_id, 0, 0])).shuffle(codes)
    return [
        (_relative_path(seed, split, i), split_id, i, int(code)) for i, code in enumerate(codes)
    ]


def _relative_path(seed: int, split: str, index: int) -> str:
    # AffectNet names files by a hex digest inside numbered folders; mimic both.
    digest = hashlib.sha224(f"fer-harness-synth/{seed}/{split}/{index}".encode()).hexdigest()
    return f"{int(digest[:8], 16) % SUBDIRS + 1}/{digest}.jpg"


def _make_subdirs(root: Path, tasks: list[Task]) -> None:
    for sub in sorted({t[0].split("/")[0] for t in tasks}):
        (root / IMAGE_DIR / sub).mkdir(parents=True, exist_ok=True)


def _run_tasks(
    render: Callable[[Task], list[str]], tasks: list[Task], workers: int | None, progress: bool
) -> list[list[str]]:
    """Render every task, in a worker pool unless one worker is asked for; rows in task order."""
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    with tqdm(total=len(tasks), disable=not progress, unit="img", desc="synthetic data") as bar:
        if n_workers == 1:
            return _collect(map(render, tasks), bar)
        # spawn, not fork: the parent may hold torch's thread pools, which do not survive fork.
        with multiprocessing.get_context("spawn").Pool(n_workers) as pool:
            chunk = max(1, min(64, len(tasks) // (n_workers * 8)))
            return _collect(pool.imap(render, tasks, chunksize=chunk), bar)


def _collect(rows: Iterable[list[str]], bar: tqdm) -> list[list[str]]:
    collected = []
    for row in rows:
        collected.append(row)
        bar.update(1)
    return collected


def _render_task(task: Task, *, root: str, seed: int, min_size: int, max_size: int) -> list[str]:
    """Render one image to disk and return its CSV row (runs in a worker process)."""
    rel_path, split_id, index, code = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, 1, index]))
    image, landmarks, box, valence, arousal = render_example(rng, code, min_size, max_size)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    image.save(os.path.join(root, IMAGE_DIR, rel_path), "JPEG", quality=quality)
    return [
        rel_path,
        *(str(v) for v in box),
        ";".join(f"{v:.2f}" for v in landmarks.ravel().tolist()),
        str(code),
        _va_text(valence),
        _va_text(arousal),
    ]


def _va_text(value: float) -> str:
    return "-2" if value == NO_VALENCE_AROUSAL else f"{value:.6f}"


def csv_text(rows: list[list[str]]) -> str:
    """AffectNet's CSV (header row, then `rows`) as text, one '\\n'-ended line a row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
    return out.getvalue()
