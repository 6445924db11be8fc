"""Writing to one open MLflow run, with a journal of every call so a lost server loses nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.core.errors import first_line
from harness.tracking.events import send, send_metrics

# Epoch metrics reach the store at most this often (the first epoch at once): one sqlite commit
# costs ~17 ms here, which for 2-second epochs would be ~1% of a run; `mlflow ui` lags <= 10 s.
METRICS_INTERVAL_S = 10.0


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # free on the same file system
    except OSError:
        shutil.copyfile(source, target)


class RunLogger:
    """Writes to one open run, and keeps a journal of every call so a lost server loses nothing.

    After the first failed call (`lost` says why) nothing more is sent: the rest of the run goes
    to the journal only, and `Tracker.run` replays it or saves it for `harness recover`.
    """

    def __init__(self, client: Any, run_id: str, metrics_interval: float = METRICS_INTERVAL_S) -> None:
        self.client = client
        self.run_id = run_id
        self.journal: list[dict[str, Any]] = []
        self.lost: str | None = None
        self.metrics_interval = metrics_interval
        self._pending: list[dict[str, Any]] = []  # epoch metrics not sent yet (see log_epoch)
        self._last_flush = float("-inf")

    def log_params(self, params: Mapping[str, str]) -> None:
        """All params in batches (MLflow takes at most 100 per call)."""
        self._send({"kind": "params", "params": {k: str(v)[:6000] for k, v in params.items()}})

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Several metrics at one step in a single round trip."""
        event = {"kind": "metrics", "metrics": {k: float(v) for k, v in metrics.items()}, "step": step}
        self._send({**event, "timestamp": int(time.time() * 1000)})

    def log_epoch(self, metrics: Mapping[str, float], step: int) -> None:
        """One epoch's metrics, sent with any held back in one round trip, but at most once every
        `metrics_interval` seconds (the first epoch at once): short epochs then cost one store
        commit per interval, not one each. Any other call, and the run's end, sends them first."""
        event = {"kind": "metrics", "metrics": {k: float(v) for k, v in metrics.items()}, "step": step}
        self._pending.append({**event, "timestamp": int(time.time() * 1000)})
        if time.monotonic() - self._last_flush >= self.metrics_interval:
            self.flush()

    def flush(self) -> None:
        """Send the epoch metrics held back, if any, in one round trip."""

        pending, self._pending = self._pending, []
        if not pending:
            return
        self._last_flush = time.monotonic()
        if self.lost is None:
            try:
                send_metrics(self.client, self.run_id, pending)
            except Exception as exc:  # noqa: BLE001 - whatever the store's failure, keep the events
                self.lost = first_line(exc)
        for event in pending:
            event["sent"] = self.lost is None
            self.journal.append(event)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Several tags in one round trip."""
        self._send({"kind": "tags", "tags": {k: str(v) for k, v in tags.items()}})

    def log_text(self, text: str, artifact_file: str) -> None:
        """A text artifact (YAML, CSV, HTML)."""
        self.log_bytes(text.encode("utf-8"), artifact_file)

    def log_json(self, data: Any, artifact_file: str) -> None:
        """A JSON artifact."""
        self.log_text(json.dumps(data, indent=1), artifact_file)

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        """A binary artifact (PNG, model weights), written through a temporary file."""
        self._send({"kind": "artifact", "path": artifact_file, "data": data})

    def log_model(self, name: str, files: Mapping[str, bytes], tags: Mapping[str, str]) -> None:
        """An MLflow Model (a saved model directory's files) as a LoggedModel of this run."""
        self._send({"kind": "model", "name": name, "files": dict(files), "tags": dict(tags),
                    "timestamp": int(time.time() * 1000)})  # fmt: skip

    def upload_files(self, files: Mapping[str, Path], artifact_dir: str) -> None:
        """Files uploaded under `artifact_dir` as the given names, replacing what is there, and kept
        out of the journal (a checkpoint: large, and only its latest matters). Not sent once the
        server is lost; the local file stays."""
        self.flush()
        if self.lost is not None:
            return
        try:
            with tempfile.TemporaryDirectory(prefix="harness-upload-") as tmp:
                for name, path in files.items():
                    _link_or_copy(path, Path(tmp) / name)
                self.client.log_artifacts(self.run_id, tmp, artifact_dir)
        except Exception as exc:  # noqa: BLE001 - whatever the store's failure, training goes on
            self.lost = first_line(exc)

    def log_dataset(self, name: str, source: str, digest: str, context: str = "training") -> None:
        """Record the dataset (name, location, digest) as the run's input, as mlflow.log_input does."""
        self._send({"kind": "dataset", "name": name, "source": source, "digest": digest, "context": context})

    def finish(self) -> None:
        """End the run FINISHED."""
        self._send({"kind": "end", "status": "FINISHED"})

    def _send(self, event: dict[str, Any]) -> None:
        self.flush()  # epoch metrics held back go first, so the journal keeps the order
        if self.lost is None:
            try:
                send(self.client, self.run_id, event)
            except Exception as exc:  # noqa: BLE001 - whatever the store's failure, keep the event
                self.lost = first_line(exc)
        event["sent"] = self.lost is None
        self.journal.append(event)
