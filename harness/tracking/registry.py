"""The model registry: a run's photo-level model registered under a name, with an alias; and any
model reference (a run, an experiment, `runs:/`, `models:/NAME@alias`, `models:/NAME/3`) resolved
to the run whose weights it holds.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import HarnessError, TrackingError, first_line
from harness.tracking.models import CONTRACT, PHOTO, ModelCard, log_model_event
from harness.tracking.pyfunc import photo_model_files

if TYPE_CHECKING:
    from harness.tracking.write import Tracker

# --best takes a validation metric (the final epoch's); a test split never selects a model.
BEST_METRICS = {
    "val_accuracy": "final_val_accuracy", "val_balanced_accuracy": "final_val_balanced_accuracy",
    "val_macro_f1": "final_val_macro_f1",
}  # fmt: skip
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))?$")


@dataclass(frozen=True)
class Registered:
    """A registered model version: its name, number and alias, and the run it came from."""

    name: str
    version: str
    alias: str | None
    run_id: str
    model_id: str


def best_run(tracker: Tracker, metric: str, experiment: str | None = None) -> Any:
    """The FINISHED training run with the highest validation `metric` in the suite's MLflow
    experiment (of one experiment name, if given): every experiment name and seed competes."""
    key = BEST_METRICS.get(metric, metric if metric in BEST_METRICS.values() else None)
    if key is None:
        raise HarnessError(f"--best {metric}: choose a validation metric: {', '.join(BEST_METRICS)}")
    where = "tags.`harness.kind` = 'train' and attributes.status = 'FINISHED'"
    if experiment:
        where += f" and tags.`harness.experiment` = '{experiment}'"
    runs = tracker.search(where, max_results=1, order_by=f"metrics.`{key}` DESC")
    if not runs or key not in runs[0].data.metrics:
        raise TrackingError(f"{tracker.tracking_uri}: no FINISHED training run with {key} in '{tracker.experiment_name}'")
    return runs[0]


def resolve_run(tracker: Tracker, ref: str) -> Any:
    """The training run a model reference names (see the module docstring)."""
    client = tracker.client
    match = MODEL_URI.match(ref)
    if match:
        return client.get_run(_registered_version(client, ref, match).run_id)
    if ref.startswith("runs:/"):
        return tracker.find_training_run(ref.removeprefix("runs:/").split("/", 1)[0])
    if ref.startswith("models:/"):
        raise HarnessError(f"{ref}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    return tracker.find_training_run(ref)


def register(
    tracker: Tracker, run: Any, name: str, files: dict[str, Path], card: ModelCard, *, alias: str | None, force: bool
) -> Registered:
    """Log `run`'s photo-level model and register it as a new version of `name` (with `alias`).

    A name whose versions hold a model of other classes or another input is refused unless
    `force`: a `models:/NAME@alias` must keep meaning the same kind of model.
    """
    client = tracker.client
    _check_clash(client, name, card, force)
    event = {"name": PHOTO, "files": photo_model_files(files, card.class_names, card.metadata()),
             "tags": card.tags(), "timestamp": int(time.time() * 1000)}  # fmt: skip
    try:
        model_id = log_model_event(client, run.info.run_id, event)
        try:
            client.create_registered_model(name, description=f"fer-harness photo model: {card.experiment}")
        except Exception as exc:  # noqa: BLE001 - it exists already (MLflow raises its own error)
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                raise
        # The logged model's own artifact location, not "models:/<id>": that would resolve through
        # MLflow's global tracking URI, which need not be this store.
        source = client.get_logged_model(model_id).artifact_location
        version = client.create_model_version(name, source=source, run_id=run.info.run_id,
                                              tags=card.tags(), model_id=model_id)  # fmt: skip
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 - a registry the store does not support, a bad name
        raise TrackingError(f"{tracker.tracking_uri}: cannot register '{name}': {first_line(exc)}") from None
    return Registered(name, str(version.version), alias, run.info.run_id, model_id)


def _check_clash(client: Any, name: str, card: ModelCard, force: bool) -> None:
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except Exception:  # noqa: BLE001 - no such registered model yet
        return
    new = card.tags()
    for version in versions:
        old = {key: version.tags.get(key) for key in CONTRACT}
        differing = [key.removeprefix("harness.") for key in CONTRACT if old[key] is not None and old[key] != new[key]]
        if differing and not force:
            raise HarnessError(
                f"registered model '{name}' version {version.version} is a model of other "
                f"{' and '.join(differing)} ({', '.join(f'{k}: {old[k]}' for k in CONTRACT if old[k])}); "
                "registering this one there would change what its aliases mean (a name clash): "
                "choose another --name, or --force"
            )


def _registered_version(client: Any, ref: str, match: re.Match[str]) -> Any:
    name, alias, number = match.group("name"), match.group("alias"), match.group("version")
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        if number:
            return client.get_model_version(name, number)
        versions = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"], max_results=1)
        if versions:
            return versions[0]
    except Exception as exc:  # noqa: BLE001 - MLflow's own "not found" error
        raise TrackingError(f"{ref}: no such registered model, version or alias ({first_line(exc, limit=200)})") from None
    raise TrackingError(f"{ref}: the registered model has no version")
