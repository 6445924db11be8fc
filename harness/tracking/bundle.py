"""A recovery folder: a run's journal saved when its tracking server went away, and read back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.core.errors import TrackingError


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
        elif event["kind"] == "model":  # a model directory: its files under artifacts/NNNN/
            stored = Path("artifacts") / f"{i:04d}"
            for name, data in event.pop("files").items():
                (tmp / stored / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / stored / name).write_bytes(data)
            event["folder"] = str(stored)
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
                elif event["kind"] == "model":
                    stored = folder / event.pop("folder")
                    event["files"] = {str(f.relative_to(stored)): f.read_bytes() for f in sorted(stored.rglob("*")) if f.is_file()}
                events.append(event)
        for key in ("tracking_uri", "experiment", "run_id", "run_name", "tags"):
            meta[key]  # noqa: B018 - a missing key is a damaged folder
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrackingError(f"{folder}: not a usable recovery folder ({type(exc).__name__}: {exc})") from None
    return meta, events
