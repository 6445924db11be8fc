"""`harness ui`: MLflow's UI on the suite's store, opened where a trainer looks first.

MLflow 3 opens on its GenAI overview unless an experiment says it holds classic model
development; every suite's experiment is tagged so (`mlflow.experimentKind`), and this command
prints (and serves) the address of the suite's training runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from harness.core.errors import HarnessError


def runs_url(host: str, port: int, experiment_id: str) -> str:
    """The address of an experiment's runs table in `mlflow ui`."""
    return f"http://{host}:{port}/#/experiments/{experiment_id}/runs"


def serve_ui(tracking_uri: str, experiment_id: str, *, host: str, port: int, echo: Callable[[str], None]) -> int:
    """Run `mlflow ui` on the store until interrupted; its exit code."""
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host,
               "--port", str(port)]  # fmt: skip
    echo(f"the training runs: {runs_url(host, port, experiment_id)}  (Ctrl-C stops the server)")
    try:
        return subprocess.call(command)
    except OSError as exc:
        raise HarnessError(f"cannot start mlflow ui: {exc}") from None
