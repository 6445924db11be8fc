"""Load a suite's training runs from MLflow into frozen records the report can use without mlflow.

The layout read here is the one in docs/DESIGN.md ("MLflow layout of one training run"). Anything
missing from a run (an artifact, a metric) becomes None plus a note, never an exception: a report
over a half-finished study is still worth reading.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from harness.errors import TrackingError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

# Metrics logged once per epoch (step = epoch, from 1), in the order the history frame shows them.
EPOCH_METRICS: tuple[str, ...] = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_macro_f1",
)

TRAIN_KIND = "train"
SWEEP_KIND = "sweep"
RUN_STATUSES: tuple[str, ...] = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")

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
# A sweep's parent run (docs/DESIGN.md, "Sweeps"): JSON artifacts and the type each must have.
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


@dataclass(frozen=True, eq=False)
class RunRecord:
    """One training run: identity, tags, params, final metrics, per-epoch history, artifacts."""

    run_id: str
    experiment: str
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    history: pd.DataFrame
    start_time: datetime
    end_time: datetime | None
    artifacts: RunArtifacts | None = None

    @property
    def comparisons(self) -> tuple[str, ...]:
        """The comparison groups this run belongs to (tag harness.comparisons)."""
        raw = self.tags.get("harness.comparisons", "")
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    @property
    def paper_iteration(self) -> str | None:
        """The paper's iteration number this run reproduces, if it has one."""
        return self.tags.get("harness.paper_iteration") or None

    @property
    def paper_val_accuracy(self) -> float | None:
        """The validation accuracy the paper reports for this iteration, if it gives one."""
        return _as_float(self.tags.get("harness.paper_val_accuracy"))

    @property
    def ladder_rung(self) -> int | None:
        """The run's rung on an ablation ladder (tag harness.ladder_rung), if it is on one."""
        raw = self.tags.get("harness.ladder_rung")
        return int(raw) if raw is not None and raw.isdigit() else None

    def metric(self, key: str) -> float | None:
        """The final (latest) value of a metric, or None if it was never logged."""
        return self.metrics.get(key)

    @property
    def seed(self) -> int | None:
        """The training seed (tag harness.seed), if it is a number."""
        value = _as_float(self.tags.get("harness.seed"))
        return int(value) if value is not None and value.is_integer() else None


@dataclass(frozen=True)
class SweepRecord:
    """The latest parent run of one Optuna study (docs/DESIGN.md, "Sweeps")."""

    run_id: str
    study: str
    experiment: str | None
    objective: str | None
    direction: str | None
    status: str
    start_time: datetime
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    trials: tuple[Mapping[str, Any], ...] = ()
    importances: Mapping[str, float] | None = None
    best_trial: Mapping[str, Any] | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suite:
    """The runs a report covers: per experiment name and seed, the most recent finished run."""

    tracking_uri: str
    experiment_name: str
    experiment_id: str | None
    # One run per experiment name (its lowest seed), ordered by paper iteration.
    runs: tuple[RunRecord, ...]
    # Every seed's run per experiment name, ordered by seed; `runs` holds the first of each.
    seed_runs: Mapping[str, tuple[RunRecord, ...]] = field(default_factory=dict)
    # Per Optuna study, its latest sweep parent run.
    sweeps: tuple[SweepRecord, ...] = ()
    # Every run in the experiment (any kind), counted by MLflow status, for the report's footer.
    status_counts: Mapping[str, int] = field(default_factory=dict)
    # Finished training runs not shown because a newer run of the same name and seed exists.
    n_superseded: int = 0
    # Human-readable lines saying what is missing (no experiment, no finished runs, ...).
    notes: tuple[str, ...] = ()

    @property
    def exists(self) -> bool:
        """Whether the experiment exists in the tracking store."""
        return self.experiment_id is not None


def load_suite(tracking_uri: str, experiment_name: str, *, artifacts: bool = True) -> Suite:
    """Load, per spec name, the newest FINISHED training run in MLflow experiment `experiment_name`.

    `artifacts=False` skips downloading artifacts (RunRecord.artifacts is then None; fetch them
    later with load_artifacts).
    """
    store_file = _sqlite_file(tracking_uri)
    if store_file is not None and not store_file.exists():
        # Opening a missing sqlite store would create an empty one; a report must not do that.
        return _missing_suite(
            tracking_uri, experiment_name, f"tracking store {store_file} does not exist"
        )

    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None or experiment.lifecycle_stage != "active":
            return _missing_suite(
                tracking_uri,
                experiment_name,
                f"experiment {experiment_name!r} does not exist in tracking store {tracking_uri}",
            )
        all_runs = _all_runs(client, experiment.experiment_id)
        chosen, n_superseded = _latest_finished_train_runs(all_runs)
        records = [_run_record(client, run, with_artifacts=artifacts) for run in chosen]
        sweeps = tuple(
            _sweep_record(client, run, with_artifacts=artifacts)
            for run in latest_sweep_runs(all_runs)
        )
    except _store_errors() as exc:
        raise TrackingError(f"{tracking_uri}: {_first_line(exc)}") from exc

    seed_runs = _by_experiment(records)
    notes = () if records else (f"no finished runs for experiment {experiment_name!r}",)
    return Suite(
        tracking_uri=tracking_uri,
        experiment_name=experiment_name,
        experiment_id=experiment.experiment_id,
        runs=tuple(sorted((group[0] for group in seed_runs.values()), key=run_sort_key)),
        seed_runs=seed_runs,
        sweeps=sweeps,
        status_counts=dict(Counter(run.info.status for run in all_runs)),
        n_superseded=n_superseded,
        notes=notes,
    )


def load_artifacts(tracking_uri: str, run_id: str) -> RunArtifacts:
    """Download and parse one run's report artifacts (confusion matrix, counts, examples...)."""
    from mlflow import MlflowClient

    try:
        artifact_uri = MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.artifact_uri
        return _load_artifacts(artifact_uri, tracking_uri)
    except _store_errors() as exc:
        raise TrackingError(f"{tracking_uri}: run {run_id}: {_first_line(exc)}") from exc


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
    except (*_store_errors(), OSError) as exc:
        return None, _first_line(exc)


def run_sort_key(run: RunRecord) -> tuple[float, str, str]:
    """Order runs by paper iteration (numerically where possible), then by name."""
    iteration = run.paper_iteration or ""
    number = _as_float(iteration)
    return (number if number is not None else float("inf"), iteration, run.experiment)


def _missing_suite(tracking_uri: str, experiment_name: str, note: str) -> Suite:
    return Suite(
        tracking_uri=tracking_uri,
        experiment_name=experiment_name,
        experiment_id=None,
        runs=(),
        notes=(note,),
    )


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The database file behind a sqlite:/// URI, or None for any other kind of store."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    path = tracking_uri[len(prefix) :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _all_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Every active run of the experiment, newest first, across all result pages."""
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            [experiment_id], order_by=["attributes.start_time DESC"], page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _latest_finished_train_runs(runs_newest_first: list[Run]) -> tuple[list[Run], int]:
    """Keep the newest FINISHED training run per (experiment name, seed); count the others."""
    chosen: dict[tuple[str, str], Run] = {}
    superseded = 0
    for run in runs_newest_first:
        if run.info.status != "FINISHED" or run.data.tags.get("harness.kind") != TRAIN_KIND:
            continue
        key = (_experiment_name_of(run), run.data.tags.get("harness.seed", ""))
        if key in chosen:
            superseded += 1
        else:
            chosen[key] = run
    return list(chosen.values()), superseded


def _by_experiment(records: list[RunRecord]) -> dict[str, tuple[RunRecord, ...]]:
    """Runs grouped by experiment name, each group ordered by seed (unknown seeds last)."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.experiment, []).append(record)
    return {
        name: tuple(sorted(group, key=_seed_order))
        for name, group in groups.items()
    }


def _seed_order(run: RunRecord) -> tuple[int, int, str]:
    seed = run.seed
    return (0, seed, run.run_id) if seed is not None else (1, 0, run.run_id)


def latest_sweep_runs(runs_newest_first: list[Run]) -> list[Run]:
    """Per study, the newest FINISHED sweep parent run, else the newest of any status."""
    finished: dict[str, Run] = {}
    any_status: dict[str, Run] = {}
    for run in runs_newest_first:
        tags = run.data.tags
        if tags.get("harness.kind") != SWEEP_KIND:
            continue
        study = tags.get("harness.study") or run.info.run_name or run.info.run_id
        any_status.setdefault(study, run)
        if run.info.status == "FINISHED":
            finished.setdefault(study, run)
    return [finished.get(study, run) for study, run in sorted(any_status.items())]


def _sweep_record(client: MlflowClient, run: Run, *, with_artifacts: bool) -> SweepRecord:
    tags = run.data.tags
    loaded: dict[str, Any] = {}
    problems: list[str] = []
    if with_artifacts:
        loaded, problems = _load_sweep_artifacts(run.info.artifact_uri, client.tracking_uri)
    trials = loaded.get("optuna/trials.json") or []
    return SweepRecord(
        run_id=run.info.run_id,
        study=tags.get("harness.study") or run.info.run_name or run.info.run_id,
        experiment=tags.get("harness.experiment"),
        objective=tags.get("harness.objective"),
        direction=tags.get("harness.direction"),
        status=run.info.status,
        start_time=_from_millis(run.info.start_time),
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        trials=tuple(trial for trial in trials if isinstance(trial, dict)),
        importances=loaded.get("optuna/importances.json"),
        best_trial=loaded.get("optuna/best_trial.json"),
        problems=tuple(problems),
    )


def _load_sweep_artifacts(artifact_uri: str, tracking_uri: str) -> tuple[dict[str, Any], list[str]]:
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


def _experiment_name_of(run: Run) -> str:
    return run.data.tags.get("harness.experiment") or run.info.run_name or run.info.run_id


def _run_record(client: MlflowClient, run: Run, *, with_artifacts: bool) -> RunRecord:
    info = run.info
    artifacts = _load_artifacts(info.artifact_uri, client.tracking_uri) if with_artifacts else None
    return RunRecord(
        run_id=info.run_id,
        experiment=_experiment_name_of(run),
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        history=_history(client, info.run_id),
        start_time=_from_millis(info.start_time),
        end_time=_from_millis(info.end_time) if info.end_time else None,
        artifacts=artifacts,
    )


def epoch_values(client: MlflowClient, run_id: str) -> dict[str, dict[int, float]]:
    """Each per-epoch metric's values by epoch. A resumed run may log an epoch twice; the
    later value is the one training ended with, and the one kept."""
    values = {}
    for key in EPOCH_METRICS:
        points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        values[key] = {int(point.step): float(point.value) for point in points}
    return values


def _history(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """Per-epoch metrics as one row per epoch; a metric missing at an epoch is NaN."""
    import pandas as pd

    values = epoch_values(client, run_id)
    columns = {key: pd.Series(by_epoch, dtype="float64") for key, by_epoch in values.items()}
    frame = pd.DataFrame(columns, columns=list(EPOCH_METRICS)).sort_index()
    frame.index = frame.index.astype("int64")
    return frame.rename_axis("epoch").reset_index()


def _load_artifacts(artifact_uri: str, tracking_uri: str) -> RunArtifacts:
    # Addressing files by the run's artifact URI, not by run id, skips a tracking-store lookup per
    # file: MlflowClient.download_artifacts costs ~0.2 s a file on sqlite, this ~5 ms.
    from mlflow.artifacts import download_artifacts

    wanted = (*JSON_ARTIFACTS, EXAMPLES_PNG, PREDICTIONS_CSV)
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
        problems=tuple(problems),
    )


def _listed_files(artifact_uri: str, tracking_uri: str, folders: set[str]) -> set[str]:
    """Paths ("folder/name") of the files directly inside the given artifact folders."""
    from mlflow.artifacts import list_artifacts

    found = set()
    for folder in sorted(folders):
        for info in list_artifacts(
            artifact_uri=f"{artifact_uri}/{folder}", tracking_uri=tracking_uri
        ):
            # Stores differ in whether listed paths repeat the folder; keep only the file name.
            if not info.is_dir:
                found.add(f"{folder}/{PurePosixPath(info.path).name}")
    return found


def _folder(artifact_path: str) -> str:
    return artifact_path.rsplit("/", 1)[0]


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


def _store_errors() -> tuple[type[Exception], ...]:
    """Exceptions meaning "the store cannot be used"; a corrupt sqlite file raises SQLAlchemy's."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    return (MlflowException, SQLAlchemyError)


def _first_line(exc: Exception, limit: int = 300) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _as_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
