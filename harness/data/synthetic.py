"""Make sure the embedded synthetic dataset exists before it is read (generated once, under a lock)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.core.errors import DataError
from harness.core.locks import file_lock
from harness.data.affectnet import find_csv
from harness.data.synth.generator import generate


def ensure_synthetic(
    root: Path, *, seed: int, scale: float, val_per_class: int, progress: bool = True
) -> bool:
    """Generate the synthetic dataset at `root` unless it is already there; True if generated.

    A folder generated with other settings is an error rather than silently reused, so a
    run's recorded settings always describe the images it trained on.
    """
    with file_lock(root.parent / f".{root.name}.lock"):
        if find_csv(root, "training.csv") and find_csv(root, "validation.csv"):
            _check_settings(root, seed=seed, scale=scale, val_per_class=val_per_class)
            return False

        generate(root, seed=seed, scale=scale, val_per_class=val_per_class, progress=progress)
        return True


def _check_settings(root: Path, *, seed: int, scale: float, val_per_class: int) -> None:
    meta_path = root / "SYNTH.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return  # a dataset in AffectNet format placed here by hand: read it as it is
    wanted = {"seed": seed, "scale": scale, "val_per_class": val_per_class}
    found = {k: meta.get(k) for k in wanted}
    if any(found[k] is not None and found[k] != v for k, v in wanted.items()):
        raise DataError(
            f"{root}: holds synthetic data generated with {found}, but the spec asks for {wanted}; "
            "point data.path elsewhere or delete the folder to regenerate it"
        )
