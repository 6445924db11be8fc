"""Loading a spec's dataset for a run, and saying what loading it skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.data.dataset import load_dataset
from harness.runs.context import Echo

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.spec.schema import ExperimentSpec


INTENDED_SKIPS = frozenset({"class_not_in_set", "blank_image", "duplicate_of_train"})


MAX_NAMED = 5  # unreadable images named one a line; the rest are counted


def load_datasets(
    specs: Sequence[ExperimentSpec], project_root: Path, cache_dir: Path, echo: Echo
) -> dict[str, Dataset]:
    """Every distinct dataset the specs train on, keyed as `run_suite` expects.

    `harness run` loads them before it touches the tracking store, so bad data is reported
    before a store or an MLflow experiment is created.
    """
    datasets: dict[str, Dataset] = {}
    for spec in specs:
        key = spec.data.model_dump_json()
        if key not in datasets:
            datasets[key] = load_data(spec, project_root, cache_dir, echo)
    return datasets


def load_data(spec: ExperimentSpec, project_root: Path, cache_dir: Path, echo: Echo) -> Dataset:
    """Load the spec's dataset through the cache; each reason for skipping is named, with an example."""

    data = load_dataset(spec.data, project_root, cache_dir, progress=True)
    echo(
        f"  data {data.name}: {len(data.y_train)} train / {len(data.y_val)} validation images, "
        f"{data.num_classes} classes"
    )
    for reason, count in sorted(data.quality.items()):
        # Leaving out another class set's images or blank faces is asked for; the rest is damage.
        kind = "note" if reason in INTENDED_SKIPS else "warning"
        example = data.quality_examples.get(reason)
        if reason == "unreadable" and data.unreadable:
            for name, why in list(data.unreadable.items())[:MAX_NAMED]:
                echo(f"  warning: skipped unreadable image {name}: {why}")
            if count > MAX_NAMED:
                echo(f"  warning: skipped {count - MAX_NAMED} more unreadable images (data/quality.json)")
            continue
        echo(f"  {kind}: skipped {count} ({reason})" + (f", e.g. {example}" if example else ""))
    if data.duplicates is not None:
        echo(f"  {data.duplicates.describe()}")
    return data
