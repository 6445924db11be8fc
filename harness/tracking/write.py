"""Logging runs to MLflow: one experiment per suite, one run per trained spec.

Everything goes through an explicit `MlflowClient(tracking_uri)`: no global MLflow state.
Per-epoch metrics are sent as one batch per epoch, never per step. A run that raises ends
FAILED, one interrupted by Ctrl-C or SIGTERM ends KILLED; a run whose process was killed
outright (SIGKILL, power loss) is marked FAILED by the next invocation (`reap_stale_runs`).

If the tracking server goes away during a run, training goes on: everything the run logs is
also kept in memory (`RunLogger.journal`), and at the end the harness tries the server once
more, then writes what the server missed to a recovery folder and says how to replay it
(`harness recover FOLDER`, see `harness.tracking.recovery`).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError, TrackingError, first_line
from harness.core.locks import file_lock
from harness.spec.schema import NAME_PATTERN
from harness.tracking.bundle import write_bundle
from harness.tracking.events import replay
from harness.tracking.fetch import quiet_downloads
from harness.tracking.logger import RunLogger
from harness.tracking.read import epoch_values
from harness.tracking.system import start_system_metrics, stop_system_metrics

TAG = "harness."
RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # MLflow run ids: uuid4 hex
KIND_TRAIN = "train"


def default_tracking_uri(project_root: Path) -> str:
    """MLFLOW_TRACKING_URI if set, else `sqlite:///<project root>/mlflow.db` (what `mlflow ui` reads)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(project_root / 'mlflow.db').resolve()}"


def _artifact_location(tracking_uri: str) -> str | None:
    """Artifacts of a local sqlite store live beside the database, not in the caller's cwd."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def _process_identity() -> dict[str, str]:
    """Host, pid and the pid's start time: enough to tell later whether this process still lives."""
    return {f"{TAG}host": socket.gethostname(), f"{TAG}pid": str(os.getpid()), f"{TAG}pid_start": _start_time(os.getpid())}


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or _start_time(pid) == start  # a reused pid is another process


@dataclass
class Tracker:
    """A connection to one MLflow experiment (the suite)."""

    tracking_uri: str
    experiment_name: str
    client: Any
    experiment_id: str
    # Where a run's results go when the server went away mid-run (see harness.tracking.recovery).
    recovery_dir: Path | None = None
    # The suite file's profile ("" = none): an experiment name means that profile's runs only,
    # so a proxy's tenth-of-the-compute run never stands in for the full one.
    profile: str = ""

    def find_finished(self, key: str, tag: str = "run_key") -> str | None:
        """The id of a FINISHED training run whose tag `harness.<tag>` is `key`, if there is one.

        `run_key` finds a run of the same spec on the same data; `weights_key` one that trained
        the same weights (the spec may score them differently: see runner.rescore_and_log).
        """
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG}{tag}` = '{key}' and tags.`{TAG}kind` = '{KIND_TRAIN}' "
            "and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time ASC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def training_record(self, run_id: str) -> tuple[dict[str, float], dict[str, dict[int, float]]]:
        """A finished run's final metrics, and each per-epoch metric's values by epoch."""

        try:
            metrics = dict(self.client.get_run(run_id).data.metrics)
            epochs = epoch_values(self.client, run_id)
        except Exception as exc:  # noqa: BLE001 - any store failure is reported the same way
            raise TrackingError(f"run {run_id}: cannot read its metrics: {first_line(exc)}") from None
        return metrics, epochs

    def refresh_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Bring a finished run's descriptive tags up to date with the suite file (see runner)."""
        run = self.client.get_run(run_id)
        for key, value in tags.items():
            if run.data.tags.get(key) != value:
                self.client.set_tag(run_id, key, value)

    def reap_stale_runs(self) -> list[str]:
        """Mark RUNNING runs of dead processes on this host FAILED; returns their ids."""
        host = socket.gethostname()
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`{TAG}host` = '{host}'",
            max_results=1000,
        )
        reaped = []
        for run in runs:
            tags = run.data.tags
            try:
                pid = int(tags.get(f"{TAG}pid", ""))
            except ValueError:
                continue
            if not _alive(pid, tags.get(f"{TAG}pid_start", "")):
                self.client.set_tag(run.info.run_id, f"{TAG}failure", "process died without ending the run")
                self.client.set_terminated(run.info.run_id, status="FAILED")
                reaped.append(run.info.run_id)
        return reaped

    def unfinished_runs(self, key: str, kind: str = KIND_TRAIN) -> list[str]:
        """Ids of FAILED or KILLED runs of this run key and kind, newest first (resume candidates)."""
        runs = self.search(
            f"tags.`{TAG}run_key` = '{key}' and tags.`{TAG}kind` = '{kind}' "
            "and attributes.status != 'FINISHED' and attributes.status != 'RUNNING'",
            max_results=20,
        )
        return [run.info.run_id for run in runs]

    def search(self, where: str, *, max_results: int, order_by: str = "attributes.start_time DESC") -> list[Any]:
        """This experiment's runs matching the filter `where`; a store failure is a TrackingError."""
        try:
            return list(self.client.search_runs([self.experiment_id], filter_string=where,
                                                order_by=[order_by], max_results=max_results))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - any store failure is reported the same way
            raise TrackingError(
                f"{self.tracking_uri}, experiment '{self.experiment_name}': cannot search runs: {first_line(exc)}"
            ) from None

    def download_artifacts(self, run_id: str, artifact_dir: str, folder: Path) -> Path | None:
        """A run's artifact folder downloaded into `folder`, or None if it has none."""
        try:
            if not self.client.list_artifacts(run_id, artifact_dir):
                return None
            with quiet_downloads():
                return Path(self.client.download_artifacts(run_id, artifact_dir, str(folder)))
        except Exception:  # noqa: BLE001 - an unreachable store has no checkpoint to offer
            return None

    @contextmanager
    def run(
        self, run_name: str, tags: Mapping[str, str], params: Mapping[str, str], resume: str | None = None
    ) -> Iterator[RunLogger]:
        """Open a run (or reopen the killed run `resume`, to continue it); it ends FINISHED, FAILED
        (exception) or KILLED (Ctrl-C / SIGTERM). System metrics are sampled while it is open."""
        all_tags = {**tags, **_process_identity(), "mlflow.runName": run_name}
        run_id = self._open(run_name, all_tags, resume)
        logger = RunLogger(self.client, run_id)
        monitor = start_system_metrics(self.tracking_uri, run_id, resumed=resume is not None)
        try:
            if resume is None:
                logger.log_params(params)
            yield logger
        except KeyboardInterrupt:
            stop_system_metrics(monitor)
            logger.flush()
            self._end(run_id, "KILLED", "interrupted (Ctrl-C or SIGTERM)")
            raise
        except BaseException as exc:
            stop_system_metrics(monitor)
            logger.flush()
            self._end(run_id, "FAILED", first_line(exc))
            raise
        stop_system_metrics(monitor)
        logger.finish()
        if logger.lost is not None:
            self._keep_for_recovery(logger, run_name, all_tags)

    def _open(self, run_name: str, tags: Mapping[str, str], resume: str | None) -> str:
        """A new run's id, or `resume` set RUNNING again with this process's tags."""
        from mlflow.entities import RunTag

        try:
            if resume is None:
                return self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id
            self.client.update_run(resume, status="RUNNING")
            self.client.log_batch(resume, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)
            if f"{TAG}failure" in self.client.get_run(resume).data.tags:
                self.client.delete_tag(resume, f"{TAG}failure")  # it is running again
            return resume
        except Exception as exc:  # noqa: BLE001 - any store failure is reported the same way
            raise TrackingError(f"{self.tracking_uri}: cannot open a run: {first_line(exc)}") from None

    def _keep_for_recovery(self, logger: RunLogger, run_name: str, tags: Mapping[str, str]) -> None:
        """The server went away mid-run: replay now if it is back, else save a recovery folder."""

        try:
            replay(self.client, logger.run_id, logger.journal, only_unsent=True)
            return
        except Exception:  # noqa: BLE001 - still down: keep the results locally
            pass
        folder = (self.recovery_dir or Path(".cache/harness/recovery")).resolve() / logger.run_id
        write_bundle(folder, self.tracking_uri, self.experiment_name, logger.run_id, run_name, tags, logger.journal)
        raise TrackingError(
            f"{self.tracking_uri}: the tracking server went away during run '{run_name}' "
            f"({logger.lost}); training finished and its results are kept in {folder}; "
            f"when the server is back, run: harness recover {folder}"
        )

    def find_training_run(self, run_ref: str) -> Any:
        """The run with this id, or the newest FINISHED training run of this experiment name."""
        client = self.client
        where = f"{self.tracking_uri}, experiment '{self.experiment_name}'"
        if RUN_ID.match(run_ref):
            try:
                run = client.get_run(run_ref)
            except Exception as exc:  # noqa: BLE001 - MLflow raises its own error for an unknown id
                raise TrackingError(f"{self.tracking_uri}: no run {run_ref}: {first_line(exc)}") from None
            kind = run.data.tags.get("harness.kind")
            if kind != "train" or run.info.status != "FINISHED":
                raise TrackingError(
                    f"{self.tracking_uri}: run {run_ref} is a {run.info.status} '{kind}' run, "
                    "not a FINISHED training run"
                )
            return run

        # Experiment names never hold quotes, so the name is safe inside the filter string.
        if not NAME_PATTERN.match(run_ref):
            raise HarnessError(f"--run: '{run_ref}' is neither a run id nor an experiment name")
        runs = self.search(
            f"tags.`harness.experiment` = '{run_ref}' and tags.`harness.kind` = 'train' and attributes.status = 'FINISHED'",
            max_results=200,
        )
        for run in runs:
            if run.data.tags.get("harness.profile", "") == self.profile:
                return run
        under = f" under profile '{self.profile}'" if self.profile else " outside any profile"
        others = sorted({run.data.tags.get("harness.profile", "") for run in runs})
        hint = f" (there are runs of profile(s) {', '.join(repr(o or '(none)') for o in others)}: name one by its run id, or pass --profile)" if others else ""
        raise TrackingError(f"{where}: no FINISHED training run of experiment '{run_ref}'{under}{hint}")

    def download_for_eval(self, run_id: str, folder: Path) -> dict[str, Path]:
        """The run's files evaluation needs (the hashes only if logged), downloaded into `folder`."""

        required = ("spec.yaml", "data/class_counts.json", "model/weights.pt")
        files: dict[str, Path] = {}
        try:
            listed = {a.path for a in self.client.list_artifacts(run_id, "data")}
            wanted = [*required, *(["data/train_hashes.npz"] if "data/train_hashes.npz" in listed else [])]
            with quiet_downloads():
                for path in wanted:
                    files[path] = Path(self.client.download_artifacts(run_id, path, str(folder)))
        except Exception as exc:  # noqa: BLE001 - a missing artifact or an unreachable store
            missing = next((p for p in required if p not in files), "an artifact")
            raise TrackingError(f"run {run_id}: cannot download {missing}: {first_line(exc)}") from None
        return files

    def attach(self, run_id: str, local: Path, artifact: str) -> None:
        """Log the file `local` with a (finished) run as `artifact` ("folder/name")."""
        import shutil
        import tempfile

        folder, _, name = artifact.rpartition("/")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / name
                shutil.copyfile(local, copy)
                self.client.log_artifact(run_id, str(copy), folder or None)
        except Exception as exc:  # noqa: BLE001 - any store failure is reported the same way
            raise TrackingError(f"run {run_id}: cannot log {artifact}: {first_line(exc)}") from None

    def add_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Log more metrics on a (finished) run."""
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, float(value))

    def fetch(self, run_id: str, artifact: str, folder: Path) -> Path:
        """Download one artifact of a run into `folder`."""
        with quiet_downloads():
            return Path(self.client.download_artifacts(run_id, artifact, str(folder)))

    def _end(self, run_id: str, status: str, reason: str) -> None:
        try:
            self.client.set_tag(run_id, f"{TAG}failure", reason[:500])
            self.client.set_terminated(run_id, status=status)
        except Exception:  # noqa: BLE001 - the original error matters more than this one
            pass


def _store_lock(tracking_uri: str) -> Any:
    """For a local sqlite store, a lock beside it: MLflow creates and migrates its tables on first
    use, and two processes doing that at once corrupt the schema version (seen in
    tests/test_faults.py). Other stores need none."""
    if not tracking_uri.startswith("sqlite:///"):
        return nullcontext()
    db = Path(tracking_uri[len("sqlite:///") :])
    return file_lock(db.with_name(f"{db.name}.lock"))


def check_reachable(tracking_uri: str) -> None:
    """Fail fast if the tracking store cannot be reached, without creating or changing anything."""
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])
        if not db.exists():  # created on first use: its folder must be writable
            if not db.parent.is_dir() or not os.access(db.parent, os.W_OK):
                raise TrackingError(f"{tracking_uri}: tracking store unavailable: {db.parent} is not a writable folder")
            return
    from mlflow import MlflowClient

    try:
        with _store_lock(tracking_uri):
            MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - unreachable server, locked or corrupt database, ...
        raise TrackingError(f"{tracking_uri}: tracking store unavailable: {first_line(exc)}") from None


def connect(
    tracking_uri: str, experiment_name: str, recovery_dir: Path | None = None, description: str | None = None
) -> Tracker:
    """Open (creating if needed) the suite's experiment; fails fast if the store is unreachable.

    The experiment is tagged as classic model development (so `mlflow ui` opens on its training
    runs, not on MLflow's GenAI overview) and, given one, with the suite's description.
    """
    import logging

    # MLflow's store set-up logs schema migrations at INFO on first use: not the user's concern.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from mlflow import MlflowClient

    try:
        with _store_lock(tracking_uri):
            client = MlflowClient(tracking_uri=tracking_uri)
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                experiment_id = _create_experiment(client, tracking_uri, experiment_name)
            elif experiment.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"{tracking_uri}: experiment '{experiment_name}' is deleted; restore it "
                    "(mlflow experiments restore) or choose another suite name"
                )
            else:
                experiment_id = experiment.experiment_id
            _tag_experiment(client, experiment_id, experiment, description)
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreachable server, locked or corrupt database, ...
        raise TrackingError(f"{tracking_uri}: tracking store unavailable: {first_line(exc)}") from None
    return Tracker(tracking_uri, experiment_name, client, experiment_id, recovery_dir)


# MLflow 3's experiment kinds; this one makes its UI show an experiment's training runs first.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def _tag_experiment(client: Any, experiment_id: str, experiment: Any, description: str | None) -> None:
    """The experiment's kind and description, set where they differ (a new experiment has none)."""
    tags = dict(getattr(experiment, "tags", None) or {})
    wanted = {**EXPERIMENT_KIND, **({"mlflow.note.content": description} if description else {})}
    for key, value in wanted.items():
        if tags.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)


def open_existing(tracking_uri: str, experiment_name: str, profile: str = "") -> Tracker:
    """The suite's experiment in a store that must already hold it: for reading, never creating.
    An experiment name then means the runs of `profile` ("" = none; see Tracker.profile)."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///") :]).is_file():
        raise TrackingError(f"{tracking_uri}: no tracking store there (no such database file)")
    check_reachable(tracking_uri)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        experiment = client.get_experiment_by_name(experiment_name)
    except Exception as exc:  # noqa: BLE001 - any store failure is reported the same way
        raise TrackingError(f"{tracking_uri}: tracking store unavailable: {first_line(exc)}") from None
    if experiment is None or experiment.lifecycle_stage == "deleted":
        raise TrackingError(f"{tracking_uri}: no experiment '{experiment_name}' (the suite's name) in this store")
    return Tracker(tracking_uri, experiment_name, client, experiment.experiment_id, profile=profile)


def _create_experiment(client: Any, tracking_uri: str, name: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name, artifact_location=_artifact_location(tracking_uri))
    except MlflowException:
        # Another process created it a moment ago.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


