"""System metrics while a run is open: MLflow's own monitor (CPU, memory, disk, network; GPU
utilisation and memory through nvidia-ml-py where there is a GPU), logged as `system/*` metrics
that `mlflow ui` shows in a run's System metrics tab.

The monitor samples every `SAMPLING_INTERVAL_S` seconds in a background thread and logs the mean
of every `SAMPLES_PER_LOG` samples: one store write a minute. `bench/` measures what it costs a
run (well under 1%). MLflow's MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL and
MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING override both; HARNESS_SYSTEM_METRICS=0 turns it off.
"""

from __future__ import annotations

import logging
import os
from typing import Any

SAMPLING_INTERVAL_S = 10.0
SAMPLES_PER_LOG = 6
OFF_ENV = "HARNESS_SYSTEM_METRICS"


def start_system_metrics(tracking_uri: str, run_id: str, resumed: bool = False) -> Any:
    """A started monitor for the run (None if turned off or unavailable)."""
    if os.environ.get(OFF_ENV, "1") == "0":
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        for name in ("mlflow.system_metrics", "mlflow.system_metrics.system_metrics_monitor"):
            logging.getLogger(name).setLevel(logging.WARNING)  # not its start/stop chatter
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=SAMPLING_INTERVAL_S, samples_before_logging=SAMPLES_PER_LOG,
            resume_logging=resumed, tracking_uri=tracking_uri,
        )  # fmt: skip
        monitor.start()
        return monitor
    except Exception:  # noqa: BLE001 - the run matters more than its system metrics
        return None


def stop_system_metrics(monitor: Any) -> None:
    """Stop the monitor and log what it holds (nothing if it never started)."""
    if monitor is None:
        return
    try:
        monitor.finish()
    except Exception:  # noqa: BLE001 - the run's end matters more
        pass
