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


@dataclass(frozen=True)
class RunArtifacts:
    """The JSON and image artifacts the report shows; None where the run lacks one."""

    confusion_matrix: Mapping[str, Any] | None = None
    classification_report: Mapping[str, Any] | None = None
    class_counts: Mapping[str, Any] | None = None
    examples_png: bytes | None = None
    examples: Mapping[str, Any] | None = None
    quality: Mapping[str, Any] | None = None  # skipped inputs by reason, duplicate counts
    # One line per absent or unreadable artifact, e.g. "eval/confusion_matrix.json: not logged".
    problems: tuple[str, ...] = ()


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

    def metric(self, key: str) -> float | None:
        """The final (latest) value of a metric, or None if it was never logged."""
        return self.metrics.get(key)


@dataclass(frozen=True)
class Suite:
    """The runs a report covers: per experiment name, the most recent finished training run."""

    tracking_uri: str
    experiment_name: str
    experiment_id: str | None
    runs: tuple[RunRecord, ...]
    # Every run in the experiment (any kind), counted by MLflow status, for the report's footer.
    status_counts: Mapping[str, int] = field(default_factory=dict)
    # Finished training runs not shown because a newer run of the same name exists.
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
        records = tuple(
            sorted(
                (_run_record(client, run, with_artifacts=artifacts) for run in chosen),
                key=run_sort_key,
            )
        )
    except _store_errors() as exc:
        raise TrackingError(f"{tracking_uri}: {_first_line(exc)}") from exc

    notes = () if records else (f"no finished runs for experiment {experiment_name!r}",)
    return Suite(
        tracking_uri=tracking_uri,
        experiment_name=experiment_name,
        experiment_id=experiment.experiment_id,
        runs=records,
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
    """Keep the first (newest) FINISHED training run per experiment name; count the others."""
    chosen: dict[str, Run] = {}
    superseded = 0
    for run in runs_newest_first:
        if run.info.status != "FINISHED" or run.data.tags.get("harness.kind") != TRAIN_KIND:
            continue
        name = _experiment_name_of(run)
        if name in chosen:
            superseded += 1
        else:
            chosen[name] = run
    return list(chosen.values()), superseded


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


def _history(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """Per-epoch metrics as one row per epoch; a metric missing at an epoch is NaN."""
    import pandas as pd

    columns: dict[str, pd.Series] = {}
    for key in EPOCH_METRICS:
        points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        # A resumed run may log an epoch twice; the later value is the one training ended with.
        by_epoch = {int(point.step): float(point.value) for point in points}
        columns[key] = pd.Series(by_epoch, dtype="float64")
    frame = pd.DataFrame(columns, columns=list(EPOCH_METRICS)).sort_index()
    frame.index = frame.index.astype("int64")
    return frame.rename_axis("epoch").reset_index()


def _load_artifacts(artifact_uri: str, tracking_uri: str) -> RunArtifacts:
    # Addressing files by the run's artifact URI, not by run id, skips a tracking-store lookup per
    # file: MlflowClient.download_artifacts costs ~0.2 s a file on sqlite, this ~5 ms.
    from mlflow.artifacts import download_artifacts

    wanted = (*JSON_ARTIFACTS, EXAMPLES_PNG)
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
