"""Checkpoints of a running fit: saved every N epochs, found and verified when a run starts again.

A checkpoint is a fit's whole state between two epochs (harness.train.state.FitState) in one
`torch.save` file, beside a small JSON file with its SHA-256, its run key and its run id. Saving
writes both locally first (a temporary file, fsync, rename: never half a file at the name), then
uploads them to the run's one artifact path `checkpoint/` (overwritten each time, so the store
keeps only the latest), then prunes the local folder to the last `KEEP_LOCAL`.

Finding one for a restarted run tries, newest first, the local files of the run that was killed,
then the store's copy (a lost machine has no local files). Each candidate is verified before it is
used: a damaged or truncated file, or one written for another spec (another run key), is named
and skipped, and the next one is tried; with none left the run starts anew. A wrong resume is
never silent.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.errors import HarnessError
from harness.core.locks import atomic_write_bytes, atomic_write_text
from harness.core.testhooks import pause_point
from harness.train.state import FitState

if TYPE_CHECKING:
    from harness.tracking.logger import RunLogger
    from harness.tracking.write import Tracker

CHECKPOINT_DIR = "checkpoint"  # the run's one artifact path in the store
STATE_FILE, INFO_FILE = "state.pt", "state.json"
KEEP_LOCAL = 2  # local checkpoints kept per run: the latest, and one to fall back on
FORMAT = 1

Echo = Callable[[str], None]


class CheckpointError(HarnessError):
    """A checkpoint could not be written (the run fails; the previous checkpoint is intact)."""


@dataclass(frozen=True)
class Resume:
    """Where a restarted run continues: the killed run, its verified state, and where it came from."""

    run_id: str
    state: FitState
    source: str


def local_folder(cache_dir: Path, run_id: str) -> Path:
    """A run's local checkpoints."""
    return cache_dir / "checkpoints" / run_id


class Checkpointer:
    """Saves a fit's state for one open run (see the module docstring)."""

    def __init__(self, folder: Path, key: str, log: RunLogger, min_seconds: float = 0.0) -> None:
        self.folder, self.key, self.log = folder, key, log
        self.min_seconds = min_seconds
        self._last = time.monotonic()  # the run's start counts as the first "checkpoint"

    def due(self) -> bool:
        """Whether `min_seconds` have passed since the last checkpoint (or since the run began)."""
        return time.monotonic() - self._last >= self.min_seconds

    def save(self, state: FitState) -> None:
        """Write the state locally (atomically), upload it, prune; a failure raises CheckpointError."""
        data = _serialise(state, self.key, self.log.run_id)
        info = {"format": FORMAT, "key": self.key, "run_id": self.log.run_id, "epoch": state.epoch,
                "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}  # fmt: skip
        stem = self.folder / f"epoch-{state.epoch:05d}"
        try:
            atomic_write_bytes(stem.with_suffix(".pt"), data)
            atomic_write_text(stem.with_suffix(".json"), json.dumps(info))
        except OSError as exc:
            stem.with_suffix(".pt").unlink(missing_ok=True)
            raise CheckpointError(
                f"{self.folder}: cannot save the checkpoint of epoch {state.epoch}: "
                f"{exc.strerror or exc}; the previous checkpoint is intact"
            ) from None
        self.log.upload_files({STATE_FILE: stem.with_suffix(".pt"), INFO_FILE: stem.with_suffix(".json")}, CHECKPOINT_DIR)
        prune(self.folder, KEEP_LOCAL)
        self._last = time.monotonic()
        pause_point("checkpointed")

    def discard(self) -> None:
        """The run finished: its local checkpoints are no longer needed (the store keeps the latest)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def prune(folder: Path, keep: int) -> None:
    """Keep the newest `keep` local checkpoints (by epoch)."""
    for info in sorted(folder.glob("epoch-*.json"))[:-keep]:
        info.with_suffix(".pt").unlink(missing_ok=True)
        info.unlink(missing_ok=True)


def find_resume(tracker: Tracker, cache_dir: Path, key: str, kind: str, echo: Echo) -> Resume | None:
    """The newest verified checkpoint of a killed or failed run of this run key, if any."""
    for run_id in tracker.unfinished_runs(key, kind):
        for source, pt, info in _candidates(tracker, cache_dir, run_id):
            try:
                state = load_checkpoint(pt, info, key)
            except CheckpointError as exc:
                echo(f"  checkpoint {source}: {exc}; trying an older one")
                continue
            return Resume(run_id, state, source)
    return None


def _candidates(tracker: Tracker, cache_dir: Path, run_id: str) -> Iterator[tuple[str, Path, Path]]:
    """A run's checkpoints, newest first: the local ones, then the store's."""
    for info in sorted(local_folder(cache_dir, run_id).glob("epoch-*.json"), reverse=True):
        yield str(info.with_suffix(".pt")), info.with_suffix(".pt"), info
    with tempfile.TemporaryDirectory(prefix="harness-checkpoint-") as tmp:
        folder = tracker.download_artifacts(run_id, CHECKPOINT_DIR, Path(tmp))
        if folder is not None:
            yield f"runs:/{run_id}/{CHECKPOINT_DIR}", folder / STATE_FILE, folder / INFO_FILE


def load_checkpoint(pt: Path, info_path: Path, key: str) -> FitState:
    """A checkpoint's state, verified: whole (its SHA-256), readable and of this run key."""
    import torch

    try:
        info = json.loads(info_path.read_text())
        data = pt.read_bytes()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"unreadable ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{info_path.name} is not a harness checkpoint description")
    if info.get("key") != key:
        raise CheckpointError(f"written for another spec (run key {info.get('key')}, this spec's is {key}): refused")
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise CheckpointError(f"damaged or truncated ({len(data):,} bytes of {info.get('bytes')}, checksum differs)")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return FitState.from_dict(payload["state"])
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same: unusable
        raise CheckpointError(f"cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from None


def _serialise(state: FitState, key: str, run_id: str) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "key": key, "run_id": run_id, "state": state.to_dict()}, buffer)
    return buffer.getvalue()
