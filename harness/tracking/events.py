"""One journal event (params, metrics, tags, an artifact, the dataset, the end) sent to MLflow.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.tracking.models import log_model_event


def send(client: Any, run_id: str, event: Mapping[str, Any]) -> None:
    """One journal event, sent to the run through the MLflow client."""
    from mlflow.entities import Param, RunTag

    kind = event["kind"]
    if kind == "params":
        items = [Param(k, v) for k, v in event["params"].items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            client.log_batch(run_id, params=items[i : i + 100], synchronous=True)
    elif kind == "metrics":
        send_metrics(client, run_id, [event])
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in event["tags"].items()], synchronous=True)
    elif kind == "artifact":
        folder, name = os.path.split(event["path"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(event["data"])
            client.log_artifact(run_id, str(path), folder or None)
    elif kind == "model":
        log_model_event(client, run_id, event)
    elif kind == "dataset":
        _log_dataset(client, run_id, event)
    elif kind == "end":
        client.set_terminated(run_id, status=event["status"])
    else:
        raise ValueError(f"unknown journal event {kind!r}")


def send_metrics(client: Any, run_id: str, events: Sequence[Mapping[str, Any]]) -> None:
    """Several "metrics" events (epochs) in one round trip (MLflow takes 1,000 metrics a call)."""
    from mlflow.entities import Metric

    batch = [Metric(k, v, e["timestamp"], e["step"]) for e in events for k, v in e["metrics"].items()]
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i : i + 1000], synchronous=True)


def _log_dataset(client: Any, run_id: str, event: Mapping[str, Any]) -> None:
    """The dataset (name, location, digest) as the run's input, as mlflow.log_input records it."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import DatasetInput, InputTag

    dataset = MetaDataset(LocalArtifactDatasetSource(event["source"]), name=event["name"], digest=event["digest"])
    tag = InputTag(key="mlflow.data.context", value=event["context"])
    client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), [tag])])


def replay(client: Any, run_id: str, events: Sequence[dict[str, Any]], *, only_unsent: bool) -> None:
    """Send the journal's events (those not sent yet, or all) to `run_id`, in order.

    Each event is marked sent as it goes, so a replay cut short resumes without duplicates.
    """
    for event in events:
        if not (only_unsent and event.get("sent")):
            send(client, run_id, event)
            event["sent"] = True
