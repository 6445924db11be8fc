"""A run's identity and provenance: its keys, the code version, the tags every run carries.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from harness.tracking.write import KIND_TRAIN
from harness.train.device import machine

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.spec.schema import ExperimentSpec
    from harness.suite.load import Suite


def code_version(root: Path) -> str:
    """The git commit of the code (with '-dirty' if it has uncommitted changes), or 'unknown'."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def run_key(spec: ExperimentSpec, dataset: Dataset) -> str:
    """Identity of a training run: same spec on the same data → same key → skipped if finished."""
    return hashlib.sha256(f"{spec.spec_hash()}:{dataset.digest}".encode()).hexdigest()[:16]


def weights_key(spec: ExperimentSpec, dataset: Dataset) -> str:
    """Identity of the weights a run trains: its run key less the evaluation-only settings."""
    return hashlib.sha256(f"{spec.weights_hash()}:{dataset.digest}".encode()).hexdigest()[:16]


def describing_tags(spec: ExperimentSpec) -> dict[str, str]:
    """The tags that describe an experiment (from the suite file) rather than what it trained."""
    tags = {"harness.comparisons": ",".join(spec.tags), "harness.description": spec.description}
    if spec.iteration is not None:
        tags["harness.paper_iteration"] = str(spec.iteration)
    if spec.paper_val_accuracy is not None:
        tags["harness.paper_val_accuracy"] = str(spec.paper_val_accuracy)
    if spec.ladder is not None:
        tags["harness.ladder_rung"] = str(spec.ladder)
    return tags


def run_tags(suite: Suite, spec: ExperimentSpec, data: Dataset, key: str, root: Path) -> dict[str, str]:
    """Every tag a training run carries (docs/design.md): its identity, data, code and origin."""
    commit = code_version(root)
    tags = {
        "harness.experiment": spec.name,
        "harness.spec_hash": spec.spec_hash(),
        "harness.run_key": key,
        "harness.weights_key": weights_key(spec, data),
        "harness.git_commit": commit,
        "harness.dataset": data.name,
        "harness.dataset_digest": data.digest,
        "harness.eval_split": "validation",
        "harness.seed": str(spec.train.seed),
        "harness.kind": KIND_TRAIN,
        "harness.suite_file": str(suite.path),
    }
    tags.update(describing_tags(spec))
    tags.update(source_tags(suite.path, commit))
    if suite.profile:
        tags["harness.profile"] = suite.profile
    return tags


def source_tags(suite_file: Path, commit: str) -> dict[str, str]:
    """MLflow's own source tags, which `mlflow ui` shows as the run's Source and Version."""
    import getpass

    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": f"harness ({suite_file.name})"}
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        pass
    return tags


def machine_tags(device: str) -> dict[str, str]:
    """The machine a run trained on, as harness.* tags (a time is read beside them)."""
    return {f"harness.{key}": value for key, value in machine(device).items()}
