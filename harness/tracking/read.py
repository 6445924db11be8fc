"""Load a suite's training runs from MLflow into frozen records the report can use without mlflow.

The layout read here is the one in docs/design.md ("MLflow layout of one training run"). Anything
missing from a run (an artifact, a metric) becomes None plus a note, never an exception: a report
over a half-finished study is still worth reading.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import TrackingError, first_line
from harness.tracking.fetch import RunArtifacts, artifacts_at, load_sweep_artifacts, store_errors

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
SWEEP_KIND = "sweep"
RUN_STATUSES: tuple[str, ...] = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")


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
    """The latest parent run of one Optuna study (docs/design.md, "Sweeps")."""

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
class Results:
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
    # The suite file's profile these runs ran under (None: none), and the finished runs of
    # every other profile in the experiment, by profile ("" = none), which are not shown.
    profile: str | None = None
    other_profiles: Mapping[str, int] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        """Whether the experiment exists in the tracking store."""
        return self.experiment_id is not None


def load_results(
    tracking_uri: str, experiment_name: str, *, artifacts: bool = True, profile: str | None = None
) -> Results:
    """Load, per spec name and seed, the newest FINISHED training run of `profile` (the suite
    file's profile it ran under; None: no profile) in MLflow experiment `experiment_name`.

    Runs of other profiles (a proxy's tenth-of-the-compute runs, a smoke test's) are counted in
    `other_profiles`, never mixed in. `artifacts=False` skips downloading artifacts
    (RunRecord.artifacts is then None; fetch them later with load_artifacts).
    """
    store_file = _sqlite_file(tracking_uri)
    if store_file is not None and not store_file.exists():
        # Opening a missing sqlite store would create an empty one; a report must not do that.
        return _missing_results(
            tracking_uri, experiment_name, f"tracking store {store_file} does not exist"
        )

    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None or experiment.lifecycle_stage != "active":
            return _missing_results(
                tracking_uri,
                experiment_name,
                f"experiment {experiment_name!r} does not exist in tracking store {tracking_uri}",
            )
        all_runs = _all_runs(client, experiment.experiment_id)
        chosen, n_superseded, others = _latest_finished_train_runs(all_runs, profile or "")
        records = [_run_record(client, run, with_artifacts=artifacts) for run in chosen]
        sweeps = tuple(
            _sweep_record(client, run, with_artifacts=artifacts)
            for run in latest_sweep_runs(all_runs)
        )
    except store_errors() as exc:
        raise TrackingError(f"{tracking_uri}: {first_line(exc, with_type=False, limit=300)}") from exc

    seed_runs = _by_experiment(records)
    notes = () if records else (f"no finished runs for experiment {experiment_name!r}" + (f" under profile {profile!r}" if profile else ""),)
    notes += tuple(
        f"{n} finished run(s) of profile {name or '(none)'!r} not shown: harness report"
        + (f" --profile {name}" if name else " without --profile") + " shows them"
        for name, n in sorted(others.items())
    )
    return Results(
        tracking_uri=tracking_uri,
        experiment_name=experiment_name,
        experiment_id=experiment.experiment_id,
        runs=tuple(sorted((group[0] for group in seed_runs.values()), key=run_sort_key)),
        seed_runs=seed_runs,
        sweeps=sweeps,
        status_counts=dict(Counter(run.info.status for run in all_runs)),
        n_superseded=n_superseded,
        notes=notes,
        profile=profile,
        other_profiles=others,
    )


def run_sort_key(run: RunRecord) -> tuple[float, str, str]:
    """Order runs by paper iteration (numerically where possible), then by name."""
    iteration = run.paper_iteration or ""
    number = _as_float(iteration)
    return (number if number is not None else float("inf"), iteration, run.experiment)


def _missing_results(tracking_uri: str, experiment_name: str, note: str) -> Results:
    return Results(
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


def _latest_finished_train_runs(runs_newest_first: list[Run], profile: str) -> tuple[list[Run], int, dict[str, int]]:
    """Keep the newest FINISHED training run of `profile` per (experiment name, seed); count the
    superseded ones, and the finished runs of each other profile."""
    chosen: dict[tuple[str, str], Run] = {}
    superseded = 0
    others: dict[str, int] = {}
    for run in runs_newest_first:
        if run.info.status != "FINISHED" or run.data.tags.get("harness.kind") != TRAIN_KIND:
            continue
        ran_under = run.data.tags.get("harness.profile", "")
        if ran_under != profile:
            others[ran_under] = others.get(ran_under, 0) + 1
            continue
        key = (_experiment_name_of(run), run.data.tags.get("harness.seed", ""))
        if key in chosen:
            superseded += 1
        else:
            chosen[key] = run
    return list(chosen.values()), superseded, others


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
        loaded, problems = load_sweep_artifacts(run.info.artifact_uri, client.tracking_uri)
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


def _experiment_name_of(run: Run) -> str:
    return run.data.tags.get("harness.experiment") or run.info.run_name or run.info.run_id


def _run_record(client: MlflowClient, run: Run, *, with_artifacts: bool) -> RunRecord:
    info = run.info
    artifacts = artifacts_at(info.artifact_uri, client.tracking_uri) if with_artifacts else None
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


# MLflow's system metrics (harness.tracking.system) the report draws, with their axis titles.
SYSTEM_METRICS: tuple[tuple[str, str], ...] = (
    ("system/cpu_utilization_percentage", "CPU %"),
    ("system/system_memory_usage_megabytes", "memory (MB)"),
    ("system/gpu_0_utilization_percentage", "GPU %"),
    ("system/gpu_0_memory_usage_megabytes", "GPU memory (MB)"),
)


def system_history(tracking_uri: str, run_id: str) -> pd.DataFrame:
    """A run's system metrics: one row per logged sample, `minutes` since the first, one column
    per metric of SYSTEM_METRICS it has (empty if it has none)."""
    import pandas as pd
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    columns = {}
    for key, _ in SYSTEM_METRICS:
        points = client.get_metric_history(run_id, key)
        if points:
            columns[key] = pd.Series({p.timestamp: p.value for p in points}, dtype="float64")
    if not columns:
        return pd.DataFrame()
    frame = pd.DataFrame(columns).sort_index()
    frame.insert(0, "minutes", (frame.index - frame.index.min()) / 60_000)
    return frame.reset_index(drop=True)


def _history(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """Per-epoch metrics as one row per epoch; a metric missing at an epoch is NaN."""
    import pandas as pd

    values = epoch_values(client, run_id)
    columns = {key: pd.Series(by_epoch, dtype="float64") for key, by_epoch in values.items()}
    frame = pd.DataFrame(columns, columns=list(EPOCH_METRICS)).sort_index()
    frame.index = frame.index.astype("int64")
    return frame.rename_axis("epoch").reset_index()


def _from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _as_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
