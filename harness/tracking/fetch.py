"""Downloading and parsing a run's artifacts for the report, `harness compare` and re-scoring.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from harness.core.errors import TrackingError, first_line

if TYPE_CHECKING:
    import numpy as np


# Artifact path -> keys its JSON must have; a file without them is reported as unreadable rather
# than handed to the report half-formed.
JSON_ARTIFACTS: dict[str, tuple[str, ...]] = {
    "eval/confusion_matrix.json": ("labels", "counts"),
    "eval/classification_report.json": (),
    "data/class_counts.json": ("labels", "train"),
    "data/examples.json": ("labels",),
    "data/quality.json": (),
}


EXAMPLES_PNG = "data/examples.png"


PREDICTIONS_CSV = "eval/predictions.csv"
SPEC_YAML = "spec.yaml"  # the resolved spec: what the report counts an older run's compute from


# A sweep's parent run (docs/design.md, "Sweeps"): JSON artifacts and the type each must have.
SWEEP_ARTIFACTS: dict[str, type] = {
    "optuna/trials.json": list,
    "optuna/importances.json": dict,
    "optuna/best_trial.json": dict,
}


@dataclass(frozen=True)
class RunArtifacts:
    """The JSON and image artifacts the report shows; None where the run lacks one."""

    confusion_matrix: Mapping[str, Any] | None = None
    classification_report: Mapping[str, Any] | None = None
    class_counts: Mapping[str, Any] | None = None
    examples_png: bytes | None = None
    examples: Mapping[str, Any] | None = None
    quality: Mapping[str, Any] | None = None  # skipped inputs by reason, duplicate counts
    # Per validation image, in eval/predictions.csv order: true and predicted class indices.
    predictions: Predictions | None = None
    spec: Mapping[str, Any] | None = None  # the resolved spec (spec.yaml), as a mapping
    # One line per absent or unreadable artifact, e.g. "eval/confusion_matrix.json: not logged".
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Predictions:
    """One run's per-image validation predictions (eval/predictions.csv), as index arrays."""

    y_true: np.ndarray
    y_pred: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        """Per image: whether the prediction was right."""
        return self.y_true == self.y_pred


def load_artifacts(tracking_uri: str, run_id: str) -> RunArtifacts:
    """Download and parse one run's report artifacts (confusion matrix, counts, examples...)."""
    from mlflow import MlflowClient

    try:
        artifact_uri = MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.artifact_uri
        return artifacts_at(artifact_uri, tracking_uri)
    except store_errors() as exc:
        raise TrackingError(f"{tracking_uri}: run {run_id}: {first_line(exc, with_type=False, limit=300)}") from exc


def load_predictions(tracking_uri: str, run_id: str) -> tuple[Predictions | None, str | None]:
    """One run's eval/predictions.csv alone, or None and why it could not be read."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    try:
        artifact_uri = MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.artifact_uri
        with tempfile.TemporaryDirectory(prefix="harness-predictions-") as tmp, quiet_downloads():
            local = download_artifacts(
                artifact_uri=f"{artifact_uri}/{PREDICTIONS_CSV}", dst_path=tmp, tracking_uri=tracking_uri
            )
            return _parse_predictions(Path(local))
    except (*store_errors(), OSError) as exc:
        return None, first_line(exc, with_type=False, limit=300)


def load_sweep_artifacts(artifact_uri: str, tracking_uri: str) -> tuple[dict[str, Any], list[str]]:
    from mlflow.artifacts import download_artifacts

    present = _listed_files(artifact_uri, tracking_uri, {"optuna"})
    loaded: dict[str, Any] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="harness-sweep-") as tmp, quiet_downloads():
        for path, expected in SWEEP_ARTIFACTS.items():
            if path not in present:
                problems.append(f"{path}: not logged")
                continue
            local = download_artifacts(
                artifact_uri=f"{artifact_uri}/{path}", dst_path=tmp, tracking_uri=tracking_uri
            )
            try:
                data = json.loads(Path(local).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                problems.append(f"{path}: unreadable ({type(exc).__name__})")
                continue
            if not isinstance(data, expected):
                problems.append(f"{path}: not a JSON {expected.__name__}")
                continue
            loaded[path] = data
    return loaded, problems


def artifacts_at(artifact_uri: str, tracking_uri: str) -> RunArtifacts:
    """The report's artifacts of the run whose artifacts live at `artifact_uri`."""
    # Addressing files by the run's artifact URI, not by run id, skips a tracking-store lookup per
    # file: MlflowClient.download_artifacts costs ~0.2 s a file on sqlite, this ~5 ms.
    from mlflow.artifacts import download_artifacts

    wanted = (*JSON_ARTIFACTS, EXAMPLES_PNG, PREDICTIONS_CSV, SPEC_YAML)
    present = _listed_files(artifact_uri, tracking_uri, {_folder(path) for path in wanted})
    problems: list[str] = []
    loaded: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="harness-report-") as tmp, quiet_downloads():
        for path in wanted:
            if path not in present:
                problems.append(f"{path}: not logged")
                continue
            destination = Path(tmp, _folder(path))
            destination.mkdir(exist_ok=True)
            local = Path(
                download_artifacts(
                    artifact_uri=f"{artifact_uri}/{path}",
                    dst_path=str(destination),
                    tracking_uri=tracking_uri,
                )
            )
            if path == EXAMPLES_PNG:
                loaded[path] = local.read_bytes()
                continue
            if path == SPEC_YAML:
                loaded[path] = _parse_yaml(local)
                continue
            if path == PREDICTIONS_CSV:
                loaded[path], problem = _parse_predictions(local)
                if problem:
                    problems.append(f"{path}: {problem}")
                continue
            parsed, problem = _parse_json(local, JSON_ARTIFACTS[path])
            loaded[path] = parsed
            if problem:
                problems.append(f"{path}: {problem}")
    return RunArtifacts(
        confusion_matrix=loaded.get("eval/confusion_matrix.json"),
        classification_report=loaded.get("eval/classification_report.json"),
        class_counts=loaded.get("data/class_counts.json"),
        examples_png=loaded.get(EXAMPLES_PNG),
        examples=loaded.get("data/examples.json"),
        quality=loaded.get("data/quality.json"),
        predictions=loaded.get(PREDICTIONS_CSV),
        spec=loaded.get(SPEC_YAML),
        problems=tuple(problems),
    )


def _listed_files(artifact_uri: str, tracking_uri: str, folders: set[str]) -> set[str]:
    """Paths ("folder/name") of the files directly inside the given artifact folders."""
    from mlflow.artifacts import list_artifacts

    found = set()
    for folder in sorted(folders):
        uri = f"{artifact_uri}/{folder}" if folder else artifact_uri
        for info in list_artifacts(artifact_uri=uri, tracking_uri=tracking_uri):
            # Stores differ in whether listed paths repeat the folder; keep only the file name.
            if not info.is_dir:
                name = PurePosixPath(info.path).name
                found.add(f"{folder}/{name}" if folder else name)
    return found


def _folder(artifact_path: str) -> str:
    """The artifact's folder ('' for a file at the run's top)."""
    return artifact_path.rsplit("/", 1)[0] if "/" in artifact_path else ""


def _parse_yaml(path: Path) -> Mapping[str, Any] | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _parse_predictions(path: Path) -> tuple[Predictions | None, str | None]:
    """eval/predictions.csv (index,y_true,y_pred) as arrays ordered by index."""
    import numpy as np

    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__})"
    if table.shape[1] != 3:
        return None, "expected columns index,y_true,y_pred"
    table = table[np.argsort(table[:, 0], kind="stable")]
    return Predictions(y_true=table[:, 1], y_pred=table[:, 2]), None


def _parse_json(path: Path, required: tuple[str, ...]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"unreadable ({type(exc).__name__})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    missing = [key for key in required if key not in data]
    if missing:
        return None, f"lacks {', '.join(missing)}"
    return data, None


@contextmanager
def quiet_downloads() -> Iterator[None]:
    """Silence MLflow's per-download progress bar: a report fetches dozens of tiny files."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def store_errors() -> tuple[type[Exception], ...]:
    """Exceptions meaning "the store cannot be used"; a corrupt sqlite file raises SQLAlchemy's."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    return (MlflowException, SQLAlchemyError)
