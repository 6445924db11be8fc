"""Results of a run whose tracking server went away: a recovery folder, and its replay.

`RunLogger` sends each event (params, metrics of one step, tags, an artifact, the dataset, the
end) to MLflow and keeps it in its journal, marked sent or not. When the server is gone at the
end of a run, `write_bundle` saves the journal as a folder::

    meta.json       tracking URI, experiment, run id and name, the run's tags
    events.jsonl    one event a line, in order, each marked "sent" or not
    artifacts/...   the bytes of every artifact event

`recover` replays it: into the original run when the server still has it (only the events it
missed, then FINISHED), else into a new run with the same tags, so `harness run` sees the spec as
finished and never trains it again. A spec that FINISHED elsewhere in the meantime is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import TrackingError

RUN_KEY_TAG = "harness.run_key"
FAILURE_TAG = "harness.failure"
RECOVERED_TAG = "harness.recovered_from"


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


def write_bundle(
    folder: Path,
    tracking_uri: str,
    experiment: str,
    run_id: str,
    run_name: str,
    tags: Mapping[str, str],
    journal: Sequence[Mapping[str, Any]],
) -> None:
    """Save a journal as a recovery folder, written beside it and renamed: never half there."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    lines = []
    for i, event in enumerate(journal):
        event = dict(event)
        if event["kind"] == "artifact":
            stored = Path("artifacts") / f"{i:04d}" / Path(event["path"]).name
            (tmp / stored).parent.mkdir(parents=True)
            (tmp / stored).write_bytes(event.pop("data"))
            event["file"] = str(stored)
        lines.append(json.dumps(event))
    (tmp / "events.jsonl").write_text("\n".join(lines) + "\n")
    meta = {"tracking_uri": tracking_uri, "experiment": experiment, "run_id": run_id,
            "run_name": run_name, "tags": dict(tags)}  # fmt: skip
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def read_bundle(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A recovery folder's meta and events, artifact bytes loaded; TrackingError if unusable."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        events = []
        for line in (folder / "events.jsonl").read_text().splitlines():
            if line.strip():
                event = json.loads(line)
                if event["kind"] == "artifact":
                    event["data"] = (folder / event.pop("file")).read_bytes()
                events.append(event)
        for key in ("tracking_uri", "experiment", "run_id", "run_name", "tags"):
            meta[key]  # noqa: B018 - a missing key is a damaged folder
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrackingError(f"{folder}: not a usable recovery folder ({type(exc).__name__}: {exc})") from None
    return meta, events


@dataclass(frozen=True)
class Recovered:
    """What `recover` did: the run that now holds the results, and how it got there."""

    run_id: str
    how: str  # "completed" (the original run) | "recreated" (a new run) | "already finished"


def recover(folder: Path, tracking_uri: str | None = None) -> Recovered:
    """Replay a recovery folder into the tracking store (see the module docstring); then remove it."""
    from harness.tracking.write import connect, first_line

    meta, events = read_bundle(folder)
    uri = tracking_uri or meta["tracking_uri"]
    try:
        tracker = connect(uri, meta["experiment"])
    except TrackingError as exc:
        raise TrackingError(f"{exc}; {folder} is kept: run this again when the store is back") from None
    client = tracker.client
    key = meta["tags"].get(RUN_KEY_TAG)
    try:
        done = tracker.find_finished(key) if key else None
        original = _existing_run(client, meta["run_id"])
        if done and done != meta["run_id"]:
            # Trained again (and finished) since: keep that run, do not count the spec twice.
            if original is not None and original.info.status != "FINISHED":
                client.set_tag(meta["run_id"], FAILURE_TAG, f"tracking server went away; the spec finished as run {done}")
                client.set_terminated(meta["run_id"], status="FAILED")
            result = Recovered(done, "already finished")
        elif original is not None:
            if original.data.tags.get(FAILURE_TAG):  # reaped as FAILED while the server was back
                client.delete_tag(meta["run_id"], FAILURE_TAG)
            replay(client, meta["run_id"], events, only_unsent=True)
            result = Recovered(meta["run_id"], "completed")
        else:
            tags = {**meta["tags"], RECOVERED_TAG: meta["run_id"]}
            run = client.create_run(tracker.experiment_id, run_name=meta["run_name"], tags=tags)
            replay(client, run.info.run_id, events, only_unsent=False)
            result = Recovered(run.info.run_id, "recreated")
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - the server went away again: the folder stays
        raise TrackingError(
            f"{uri}: cannot replay {folder}: {first_line(exc)}; {folder} is kept: run this again when the store is back"
        ) from None
    shutil.rmtree(folder)
    return result


def _existing_run(client: Any, run_id: str) -> Any:
    """The run, or None if this store has no such run (another server, a lost database)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
