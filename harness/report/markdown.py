"""The report's numbers as a Markdown page: results rendered from a store, never typed by hand.

`harness report --format markdown --out docs/results/fer2013.md` writes it. The page opens with
where every number comes from (store, experiment, dataset and digest, code commits, machines) and
the command that regenerates it, then the same statistics the HTML report computes: each
experiment's scores over its seeds, the claims' verdicts, the ablation ladder and the compute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from harness import __version__
from harness.analysis.claims import ComparisonResult, compare
from harness.analysis.stats import bracket_text, p_text, pp_text
from harness.report.beyond import chain, ladder
from harness.report.compute import pareto_front, spent_by
from harness.report.protocol import protocol_lines, synthetic_warning
from harness.report.ranking import Ranking, profile_rankings
from harness.report.summary import HEADLINE_METRICS, headline_cell, headlines, seed_list
from harness.spec.claims import ClaimSpec
from harness.tracking.read import Results, RunRecord


def markdown_page(results: Results, claims: Sequence[ClaimSpec], command: str, generated: datetime) -> str:
    """The whole page."""
    parts = [f"# Results: {results.experiment_name}", "", _provenance(results, command, generated)]
    if not results.runs:
        parts += ["", "No finished training runs in this store: nothing to show.", *_notes(results)]
        return "\n".join(parts) + "\n"
    parts += ["", "## Protocol", "", *(f"- {line}" for line in protocol_lines(results))]
    parts += ["", "## Scores", "", _scores(results)]
    if claims:
        parts += ["", "## Claims", "", _claims(results, claims)]
    steps = chain(ladder(results))
    if len(steps) > 1:  # one rung alone is no ladder (e.g. the claims runs hold only rung 0)
        parts += ["", "## Ablation ladder", "", _ladder(results, steps)]
    for ranking in profile_rankings(results):
        parts += ["", f"## The `{ranking.profile}` profile's ranking against these runs", "", _ranking(ranking)]
    parts += ["", "## Compute", "", _compute(results), *_notes(results)]
    return "\n".join(parts) + "\n"


def _provenance(results: Results, command: str, generated: datetime) -> str:
    runs = _all_runs(results)
    digests = _distinct(f"{r.tags.get('harness.dataset')} ({(r.tags.get('harness.dataset_digest') or '')[:12]})" for r in runs)
    machines = _distinct(_machine(r) for r in runs)
    rows = [
        ("Store", f"`{results.tracking_uri}`"),
        ("MLflow experiment", f"`{results.experiment_name}`"),
        ("Data", f"{digests}; scores on the **{_distinct(r.tags.get('harness.eval_split') for r in runs)}** split"),
        ("Code", _distinct(f"`{(r.tags.get('harness.git_commit') or 'unknown')[:12]}`" for r in runs)),
        ("Machines", machines),
        ("Runs", f"{len(runs)} finished training run(s) of {len(results.runs)} experiment(s): per experiment and seed, the newest"),
        ("Generated", f"{generated.astimezone(UTC):%Y-%m-%d %H:%M} UTC by fer-harness {__version__}: `{command}`"),
    ]
    return _table(("", ""), rows, header=False)


def _scores(results: Results) -> str:
    table = headlines(results)
    head = ("experiment", "seeds", *(label for _, label in HEADLINE_METRICS), "train TFLOP", "train time")
    rows = []
    for run in results.runs:
        seeds = results.seed_runs.get(run.experiment) or (run,)
        cells = [headline_cell(table[(run.experiment, key)]) or "—" for key, _ in HEADLINE_METRICS]
        tflop = _mean(spent_by(r).train_tflop for r in seeds)
        seconds = _mean(r.metric("train_seconds") for r in seeds)
        rows.append((f"`{run.experiment}`", seed_list(seeds), *cells, _num(tflop), _seconds(seconds)))
    note = ("Mean ± sd [95% interval] over seeds (Student-t); with one seed, a bootstrap over the "
            "validation images (“img”). Train time is wall-clock on the machine above.")  # fmt: skip
    return _table(head, rows) + "\n\n" + note


def _claims(results: Results, claims: Sequence[ClaimSpec]) -> str:
    head = ("claim", "A − B, pp [95% CI]", "McNemar p", "verdict")
    rows = [_claim_row(compare(claim, results.seed_runs)) for claim in claims]
    note = ("A − B on the claim's metric over the same validation images (paired bootstrap), and "
            "McNemar's exact test (the largest p over seed pairs). Rules: docs/report.md.")  # fmt: skip
    warning = synthetic_warning(results)
    return (f"**{warning}**\n\n" if warning else "") + _table(head, rows) + "\n\n" + note


def _claim_row(result: ComparisonResult) -> tuple[str, ...]:
    claim = result.comparison
    title = f"{claim.title}: {claim.claim}" + ("" if claim.study_claim else " *(supporting)*")
    if result.difference is None:
        return (title, "—", "—", f"not tested: {result.missing}")
    interval = getattr(result.difference, claim.metric)
    metric = "" if claim.metric == "accuracy" else " (balanced acc.)"
    return (title, f"{pp_text(interval.estimate)} {bracket_text(interval)}{metric}", p_text(result.p_value), result.verdict)


def _ladder(results: Results, steps: dict[int, Any]) -> str:
    head = ("rung", "experiment", "adds", "accuracy", "step gain, pp [95% CI]", "train TFLOP")
    rows = []
    for number in sorted(steps):
        rung = steps[number]
        gain = "—"
        if number - 1 in steps:
            previous = steps[number - 1].experiment
            claim = ClaimSpec(key="step", title="step", a=rung.experiment, b=previous, claim="-", study_claim=False)
            result = compare(claim, results.seed_runs)
            if result.difference is not None:
                gain = f"{pp_text(result.difference.accuracy.estimate)} {bracket_text(result.difference.accuracy)}"
        accuracy = _mean(r.metric("final_val_accuracy") for r in rung.seeds)
        tflop = _mean(spent_by(r).train_tflop for r in rung.seeds)
        rows.append((str(number), f"`{rung.experiment}`", rung.ingredient, _pct(accuracy), gain, _num(tflop)))
    return _table(head, rows)


def _compute(results: Results) -> str:
    spent = [spent_by(run) for run in _all_runs(results)]
    placed = [(s.train_tflop, s.accuracy) for s in spent if s.train_tflop is not None and s.accuracy is not None]
    front = set(pareto_front(placed))
    head = ("experiment", "seed", "accuracy", "train TFLOP", "compute", "on the Pareto front")
    rows = [
        (f"`{s.run.experiment}`", str(s.run.seed), _pct(s.accuracy), _num(s.train_tflop), s.source,
         "yes" if (s.train_tflop, s.accuracy) in front else "")
        for s in sorted(spent, key=lambda s: (s.train_tflop or math.inf, s.run.experiment))
    ]  # fmt: skip
    return _table(head, rows)


def _ranking(ranking: Ranking) -> str:
    rows = [(f"`{r.experiment}`", _pct(r.full), _num(r.full_tflop), str(r.full_rank), _pct(r.other), _num(r.other_tflop),
             str(r.other_rank)) for r in ranking.rows]  # fmt: skip
    head = ("Experiment", "Val. accuracy", "Train TFLOP", "Rank", f"{ranking.profile}: val. accuracy", "Train TFLOP", "Rank")
    verdict = "the same order" if ranking.same_order else "a different order"
    return (_table(head, rows) + f"\n\nOn these {len(ranking.rows)} experiments the `{ranking.profile}` profile gives "
            f"{verdict} (Kendall's tau {ranking.kendall_tau:+.2f}; 1 = identical order).")


def _notes(results: Results) -> list[str]:
    return ["", *(f"- Note: {note}" for note in results.notes)] if results.notes else []


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], header: bool = True) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    rows = list(rows)
    if not header:
        return "\n".join([line(("", "")), line(("---", "---")), *(line(r) for r in rows)])
    return "\n".join([line(head), line(["---"] * len(head)), *(line(r) for r in rows)])


def _all_runs(results: Results) -> list[RunRecord]:
    return [run for group in results.seed_runs.values() for run in group] or list(results.runs)


def _machine(run: RunRecord) -> str | None:
    tags = run.tags
    if "harness.cpu" not in tags:
        return None
    cpu = f"{tags['harness.cpu']} ({tags.get('harness.cpu_cores', '?')} cores; {tags.get('harness.cpu_flags') or 'no AVX2'})"
    return f"{tags['harness.gpu']} + {cpu}" if tags.get("harness.gpu") else cpu


def _distinct(values: Iterable[str | None]) -> str:
    found = sorted({v for v in values if v})
    return "; ".join(found) if found else "unknown (runs logged before the harness recorded it)"


def _mean(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return math.fsum(found) / len(found) if found else None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} s"
