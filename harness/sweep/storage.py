"""Optuna storages and studies: where a sweep's trials live, and the study a suite's study becomes.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import HarnessError, first_line
from harness.spec.studies import encode_choice

if TYPE_CHECKING:
    import optuna

    from harness.spec.studies import StudySpec
    from harness.suite.load import Suite


JOURNAL_FILE = "optuna.journal"  # beside mlflow.db
HEARTBEAT_S = 20  # RDB storages: a RUNNING trial refreshes its heartbeat this often ...
GRACE_S = 90  # ... and is failed (then retried) when silent for this long
MAX_RETRY = 2  # re-runs of a trial whose process died, with the same parameters
DONE_STATES = ("COMPLETE", "PRUNED")
# The trial user attributes that tie an Optuna trial to its process and its MLflow runs.
ATTR_HOST = "harness.host"
ATTR_PID = "harness.pid"
ATTR_START = "harness.pid_start"
ATTR_RUN = "mlflow_run_id"
ATTR_PARENT = "mlflow_parent_run_id"


def default_storage_url(project_root: Path) -> str:
    """A journal file beside mlflow.db: safe for several processes on this machine."""
    return f"journal:{(project_root / JOURNAL_FILE).resolve()}"


def open_storage(url: str) -> Any:
    """An Optuna storage: `journal:PATH` (or a bare path) or any SQLAlchemy URL (sqlite, postgresql, mysql)."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    _quiet_optuna()
    try:
        if "://" not in url:
            path = Path(url.removeprefix("journal:")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            # An O_EXCL lock file works on every filesystem; one left by a killed process
            # expires after the grace period.
            return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
        return _rdb_storage(url, RDBStorage, RetryHeartbeatStaleTrialCallback)
    except (optuna.exceptions.OptunaError, ImportError, OSError, ValueError) as exc:
        raise HarnessError(f"cannot open Optuna storage {redact(url)}: {first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy: server down, bad credentials, ...
        raise HarnessError(f"cannot open Optuna storage {redact(url)}: {first_line(exc)}") from None


def _rdb_storage(url: str, rdb: Any, retry: Any, attempts: int = 5) -> Any:
    """RDBStorage, retried: workers starting together race to create Optuna's schema
    ("type ... already exists"); the loser finds it made on its next try."""
    for attempt in range(attempts):
        try:
            return rdb(
                url,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=retry(max_retry=MAX_RETRY),
                engine_kwargs={"pool_pre_ping": True},
            )
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy errors of every driver
            if attempt == attempts - 1 or "already exists" not in str(exc) and "duplicate" not in str(exc).lower():
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def redact(url: str) -> str:
    """A storage URL without its password, fit for logs and tags."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def optuna_study_name(suite: Suite, study: StudySpec) -> str:
    """The study's name inside the storage: one storage can hold several suites' studies."""
    return f"{suite.name}.{study.name}"


def _sampler(spec: StudySpec, salt: int) -> Any:
    """Seeded, yet distinct per worker and per resume, so no two processes repeat a draw."""
    import optuna

    seed = spec.sampler.seed * 1_000_003 + salt
    if spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.sampler.n_startup_trials)


def _pruner(spec: StudySpec, epochs: int) -> Any:
    import optuna

    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource, max_resource=epochs, reduction_factor=p.reduction_factor
        )
    return optuna.pruners.NopPruner()


def load_study(
    storage: Any, suite: Suite, spec: StudySpec, *, salt: int = 0, epochs: int = 1, enqueue: bool = False
) -> optuna.Study:
    """Create the study or load it; a changed space is refused.

    With `enqueue`, a study without trials gets its starting trials: call it under the sweep
    lock, so two invocations starting together do not queue them twice.
    """
    import optuna

    name = optuna_study_name(suite, spec)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction=spec.resolved_direction,
            sampler=_sampler(spec, salt),
            pruner=_pruner(spec, epochs),
            load_if_exists=True,
        )
    except ValueError as exc:  # e.g. an existing study with another direction
        raise HarnessError(f"study '{name}': {exc}") from None
    digest = study.user_attrs.get("harness.space_digest")
    if digest is None:
        study.set_user_attr("harness.space_digest", spec.space_digest())
        study.set_user_attr("harness.objective", spec.objective)
    elif digest != spec.space_digest():
        raise HarnessError(
            f"study '{name}' in the Optuna storage was made with another search space, objective or "
            f"base experiment; give it another name in {suite.path}, or pass --storage to start afresh"
        )
    if enqueue and not study.get_trials(deepcopy=False):
        for values in spec.enqueue:
            study.enqueue_trial({k: encode_choice(v) for k, v in values.items()}, skip_if_exists=True)
    return study
