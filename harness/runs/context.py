"""What one run end to end needs and returns: where it writes, how a caller adapts it, its outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.tracking.logger import RunLogger
    from harness.tracking.write import Tracker
    from harness.train.history import EpochStats
    from harness.train.loop import FitResult


Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one experiment: trained, or skipped and why."""

    name: str
    status: str  # "finished" | "rescored" (another run's weights, scored as this spec says) | "skipped"
    run_id: str | None
    val_accuracy: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class RunHooks:
    """How a caller (a sweep trial) adapts one tracked training run without a second trainer."""

    kind: str = "train"  # the harness.kind tag: "train" for `harness run`, "trial" for sweeps
    tags: Mapping[str, str] = field(default_factory=dict)  # extra tags, e.g. mlflow.parentRunId
    run_name: str | None = None  # default: the spec's name
    # Called with the open run before training starts (e.g. to note its id on an Optuna trial).
    started: Callable[[RunLogger], None] | None = None
    # Sees each epoch's stats after they are logged; True stops training (Optuna pruning).
    stop: Callable[[EpochStats], bool] | None = None
    # Called with the open run and the fit result just before the run ends FINISHED.
    before_end: Callable[[RunLogger, FitResult], None] | None = None


@dataclass(frozen=True)
class RunContext:
    """Where runs read data from and write results to."""

    tracker: Tracker
    project_root: Path
    cache_dir: Path
    force: bool = False
    echo: Echo = lambda _msg: None
