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

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import TrackingError, first_line
from harness.tracking.bundle import read_bundle
from harness.tracking.events import replay
from harness.tracking.write import connect

RUN_KEY_TAG = "harness.run_key"
FAILURE_TAG = "harness.failure"
RECOVERED_TAG = "harness.recovered_from"


@dataclass(frozen=True)
class Recovered:
    """What `recover` did: the run that now holds the results, and how it got there."""

    run_id: str
    how: str  # "completed" (the original run) | "recreated" (a new run) | "already finished"


def recover(folder: Path, tracking_uri: str | None = None) -> Recovered:
    """Replay a recovery folder into the tracking store (see the module docstring); then remove it."""

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
