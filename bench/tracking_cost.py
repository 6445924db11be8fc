"""3. Tracking overhead: one experiment through the tracked run path against the same work untracked.

overhead = median over the tracked runs of (the run's wall time - the untracked work inside it) /
that work; target <= 2 %.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common import (
    REPO,
    median_ratio,
    met,
    rounded,
    time_variants,
)
from training_setup import TARGETS, TRACKED_EXPERIMENT, Sizes, spread, with_settings

import harness.runs.training as harness_training
from harness.data.dataset import Dataset
from harness.models.build import build_model
from harness.suite.load import Suite


class TimedClient:
    """An MlflowClient stand-in that adds up the seconds spent in each of its methods."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
                self.calls[name] = self.calls.get(name, 0) + 1

        return timed


def measure_tracking(suite: Suite, data: Dataset, sizes: Sizes, device: str, tmp: Path) -> tuple[dict, dict]:
    """3: a tracked run (train_and_log, sqlite store) against the same build + fit untracked."""
    from harness.runs.context import RunContext
    from harness.runs.provenance import run_key
    from harness.runs.training import train_and_log
    from harness.tracking.write import connect
    from harness.train.loop import fit

    spec = suite.experiments[TRACKED_EXPERIMENT]
    if sizes.tracking_epochs is not None:
        spec = with_settings(
            suite, spec, train={"epochs": sizes.tracking_epochs, "device": device},
            sampler={"per_epoch": sizes.tracking_per_epoch},
        )  # fmt: skip
    else:
        spec = with_settings(suite, spec, train={"device": device})
    started = time.perf_counter()
    tracker = connect(f"sqlite:///{tmp / 'mlflow.db'}", "bench-tracking")
    connect_s = time.perf_counter() - started
    timed_client = TimedClient(tracker.client)
    tracker = dataclasses.replace(tracker, client=timed_client)
    ctx = RunContext(tracker=tracker, project_root=REPO, cache_dir=tmp / "cache", force=True)
    key = run_key(spec, data)
    client_seconds: list[float] = []
    # Inside each tracked run: the seconds of the model build and the fit it contains, so the
    # rest of its wall time is the tracking work itself, measured within one run (no noise from
    # comparing two runs).
    # The store calls made inside the fit (the per-epoch metrics) are tracking work too, so they
    # move from the fit's seconds to the tracking side of the account.
    inner_seconds: list[float] = []
    store_in_fit: list[float] = []
    accounted: list[float] = []
    cpu: dict[str, list[float]] = {"tracked": [], "untracked": []}

    def store_total() -> float:
        return sum(timed_client.seconds.values())

    def tracked() -> None:
        before = store_total()
        inner_seconds.clear()
        store_in_fit.clear()
        started, cpu_started = time.perf_counter(), time.process_time()
        with (
            _timing(harness_training, "fit", inner_seconds, store_total, store_in_fit),
            _timing(harness_training, "build_model", inner_seconds),
        ):
            train_and_log(suite, spec, data, key, ctx)
        total = time.perf_counter() - started
        cpu["tracked"].append(time.process_time() - cpu_started)
        client_seconds.append(store_total() - before)
        untracked_part = sum(inner_seconds) - sum(store_in_fit)
        accounted.append((total - untracked_part) / untracked_part)

    def untracked() -> None:
        cpu_started = time.process_time()
        fit(build_model(spec, data), data, spec, device=device)
        cpu["untracked"].append(time.process_time() - cpu_started)

    tracked()  # warm-up: MLflow's lazy imports and the store's first writes
    client_seconds.clear()
    accounted.clear()
    cpu["tracked"].clear()
    timed_client.seconds.clear()
    timed_client.calls.clear()
    seconds, _ = time_variants(
        {"tracked": tracked, "untracked": untracked}, sizes.tracking_repeats, alternate=True
    )
    side_by_side = median_ratio(seconds["tracked"], seconds["untracked"]) - 1
    # The figure judged: the tracked run's wall time over the untracked work it contains, both
    # measured within the same run. Identical 20-second runs on this VM differ by ~10% in wall
    # and CPU time (printed below), so side-by-side pairs cannot resolve 2% in a few repeats;
    # the account can, and the side-by-side figures remain as its cross-check. It assumes
    # tracking does not slow the work it wraps: MLflow starts no thread during a run (telemetry
    # is off, see harness.cli) and the collector's time is negligible (bench/RESULTS.md).
    overhead = statistics.median(accounted)
    repeats = sizes.tracking_repeats
    by_call = sorted(timed_client.seconds.items(), key=lambda kv: -kv[1])
    keys = {
        "tracking_overhead": round(overhead, 4),
        "tracking_overhead_target": TARGETS["tracking"],
        "tracking_overhead_met": met(overhead, TARGETS["tracking"], at_most=True),
        "tracking_tracked_s": round(statistics.median(seconds["tracked"]), 2),
        "tracking_untracked_s": round(statistics.median(seconds["untracked"]), 2),
        "tracking_store_s": round(statistics.median(client_seconds), 3),
        # Side by side in wall seconds: median of (tracked run / untracked build + fit) - 1.
        "tracking_overhead_side_by_side": round(side_by_side, 4),
        "tracking_noise_wall": round(spread(seconds["untracked"]), 4),
        "tracking_noise_cpu": round(spread(cpu["untracked"]), 4),
        # Side by side in process CPU seconds (both threads): immune to time the VM is not
        # scheduled, not to the CPU's own speed changes.
        "tracking_overhead_cpu": round(median_ratio(cpu["tracked"], cpu["untracked"]) - 1, 4),
        "tracking_connect_s": round(connect_s, 2),
    }
    details = {
        "experiment": spec.name,
        "epochs": spec.train.epochs,
        "per_epoch": spec.sampler.per_epoch,
        "store": "sqlite (temporary), artifacts on local disk",
        "seconds": rounded(seconds),
        "cpu_seconds": rounded(cpu),
        "accounted_per_run": [round(a, 4) for a in accounted],
        "store_seconds_per_run": [round(s, 3) for s in client_seconds],
        "store_seconds_by_call_per_run": {k: round(v / repeats, 4) for k, v in by_call},
        "store_calls_per_run": {k: timed_client.calls[k] / repeats for k, _ in by_call},
    }
    print(
        f"3  tracking   {spec.name} ({spec.train.epochs} epochs x {spec.sampler.per_epoch}): within each tracked "
        f"run, tracking work = {overhead:+.1%} of the untracked work it contains (median of {repeats}; target <= "
        f"{TARGETS['tracking']:.0%}); store calls {keys['tracking_store_s']:.2f} s/run; connect once {connect_s:.1f} s"
    )
    print(
        f"   side by side: tracked {keys['tracking_tracked_s']:.2f} s, untracked {keys['tracking_untracked_s']:.2f} s -> "
        f"{side_by_side:+.1%} wall, {keys['tracking_overhead_cpu']:+.1%} CPU; identical untracked runs spread "
        f"{keys['tracking_noise_wall']:.1%} (wall), {keys['tracking_noise_cpu']:.1%} (CPU)"
    )
    top = ", ".join(f"{k} {v / repeats:.3f} s" for k, v in by_call[:4])
    print(f"   slowest store calls per run: {top}")
    return keys, details


@contextlib.contextmanager
def _timing(
    module: Any,
    name: str,
    sink: list[float],
    counter: Callable[[], float] | None = None,
    counted: list[float] | None = None,
) -> Iterator[None]:
    """Replace `module.name` with a wrapper that appends each call's seconds to `sink` (and, given
    `counter`, how far `counter()` advanced during the call to `counted`)."""
    original = getattr(module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        before = counter() if counter is not None else 0.0
        try:
            return original(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - started)
            if counter is not None and counted is not None:
                counted.append(counter() - before)

    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, original)
