"""Run a suite's experiments: skip what finished, re-score what only scores differently, train the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.core.locks import file_lock
from harness.runs.context import RunContext, RunHooks, RunOutcome
from harness.runs.data import load_data
from harness.runs.provenance import describing_tags, run_key, weights_key
from harness.runs.rescore import rescore_and_log
from harness.runs.training import train_and_log

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.spec.schema import ExperimentSpec
    from harness.suite.load import Suite


def run_suite(
    suite: Suite, specs: Sequence[ExperimentSpec], ctx: RunContext, datasets: dict[str, Dataset] | None = None
) -> list[RunOutcome]:
    """Run each spec in order, sharing loaded datasets between specs with the same data section.

    `datasets` (from `load_datasets`) are used where given; the others load on first use.
    """
    reaped = ctx.tracker.reap_stale_runs()
    if reaped:
        ctx.echo(f"marked {len(reaped)} run(s) of dead processes FAILED: {', '.join(reaped)}")
    datasets = dict(datasets or {})
    outcomes = []
    # Repeated seeds become separate runs; their run keys differ because train.seed does.
    seeded = [one for spec in specs for one in spec.seed_specs()]
    for i, spec in enumerate(seeded, start=1):
        repeat = f" (seed {spec.train.seed})" if spec.train.seeds > 1 else ""
        ctx.echo(f"[{i}/{len(seeded)}] {spec.name}{repeat}: {spec.description}")
        key = spec.data.model_dump_json()
        if key not in datasets:
            datasets[key] = load_data(spec, ctx.project_root, ctx.cache_dir, ctx.echo)
        outcomes.append(run_experiment(suite, spec, datasets[key], ctx))
    return outcomes


def run_experiment(
    suite: Suite, spec: ExperimentSpec, data: Dataset, ctx: RunContext, hooks: RunHooks = RunHooks()
) -> RunOutcome:
    """Train and track one spec unless an identical run already FINISHED (or is running now)."""
    key = run_key(spec, data)
    if not ctx.force and (done := ctx.tracker.find_finished(key)):
        ctx.echo(f"  skipped: finished run {done} has the same spec and data (--force retrains)")
        # Descriptions, comparison groups and ladder rungs are not part of what is trained: the
        # suite file may have changed them since, and the report reads them from the run.
        ctx.tracker.refresh_tags(done, describing_tags(spec))
        return RunOutcome(spec.name, "skipped", done, reason="already finished")
    with file_lock(ctx.cache_dir / "locks" / f"{key}.lock", blocking=False) as acquired:
        if not acquired:
            ctx.echo("  skipped: another harness process is training this spec right now")
            return RunOutcome(spec.name, "skipped", None, reason="running elsewhere")
        # Re-check under the lock: a concurrent process may have just finished it.
        if not ctx.force and (done := ctx.tracker.find_finished(key)):
            ctx.echo(f"  skipped: finished run {done} has the same spec and data (finished a moment ago)")
            return RunOutcome(spec.name, "skipped", done, reason="already finished")
        wkey = weights_key(spec, data)
        if not ctx.force and (source := ctx.tracker.find_finished(wkey, tag="weights_key")):
            rescored = rescore_and_log(suite, spec, data, key, source, ctx, hooks)
            if rescored is not None:
                return rescored
        return train_and_log(suite, spec, data, key, ctx, hooks)
