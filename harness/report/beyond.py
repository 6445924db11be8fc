"""Beyond the study: the ablation ladder from the study's best model to a modern recipe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.analysis.claims import ComparisonResult, compare
from harness.analysis.figures import confusion_heatmap
from harness.analysis.stats import bracket_text, p_text, pp_text
from harness.report import html
from harness.report.claims import difference_cells
from harness.report.compute import spent_by
from harness.report.confusion import confusion_of
from harness.report.ladder import Rung, ladder_figure, reference_lines, references_html
from harness.report.summary import Headline, headline, headline_cell, recall_intervals, seed_list
from harness.spec.claims import ClaimSpec, ReferenceSpec
from harness.tracking.read import Results, RunRecord, run_sort_key

ANCHOR = "beyond"


BEYOND_TAG = "beyond"


NO_LADDER = (
    "No run is on an ablation ladder (no finished run tagged harness.ladder_rung). "
    "`harness run modern` then `harness report` adds the main suite's two-rung ladder "
    "(cnn_residual_balanced → modern) to this page; `make beyond FER2013=PATH` trains the "
    "seven-rung FER2013 ladder (suite file beyond.yaml, MLflow experiment fer-beyond) and "
    "writes its page to reports/beyond.html."
)


OVERALL = "everything above rung 0"  # what the top rung adds to rung 0, in the steps' table


def ladder(suite: Results) -> list[Rung]:
    """Every experiment with a ladder rung, by rung (then as the rest of the page orders runs)."""
    rungs = [
        Rung(seeds[0].ladder_rung, name, _ingredient(seeds[0]), tuple(seeds))
        for name, seeds in suite.seed_runs.items()
        if seeds and seeds[0].ladder_rung is not None
    ]
    return sorted(rungs, key=lambda rung: (rung.number, run_sort_key(rung.seeds[0])))


def chain(rungs: Sequence[Rung]) -> dict[int, Rung]:
    """Rung number → the experiment the steps use (the first, if several share a number)."""
    chosen: dict[int, Rung] = {}
    for rung in rungs:
        chosen.setdefault(rung.number, rung)
    return chosen


def missing_rungs(steps: Mapping[int, Rung]) -> list[int]:
    """Rung numbers below the highest one recorded that have no finished run."""
    return [number for number in range(max(steps) + 1) if number not in steps] if steps else []


def _ingredient(run: RunRecord) -> str:
    return (run.tags.get("harness.description") or "").strip() or "(no description)"


def beyond_section(
    suite: Results, table: Mapping[tuple[str, str], Headline] | None = None,
    references: Sequence[ReferenceSpec] = (),
) -> html.Section:  # fmt: skip
    """The ablation ladder with intervals, what each rung buys, and the top rung vs rung 0."""
    rungs = ladder(suite)
    if not rungs:
        return html.Section(ANCHOR, html.missing_html(NO_LADDER))
    steps = chain(rungs)
    gaps = missing_rungs(steps)
    table = table or {}
    results = _step_results(steps, suite.seed_runs)
    warnings = [f"ablation ladder: rung {number} has no finished run" for number in gaps]
    warnings += [
        f"ablation ladder: {result.comparison.title} not compared: {result.missing}"
        for result in results
        if result.missing and not _names_missing_rung(result)
    ]
    parts = [
        html.source_line(suite, "final-epoch metrics and per-image predictions (eval/predictions.csv)"),
        _intro_html(steps),
        _gaps_html(gaps, rungs, steps),
        ladder_figure(steps, table, reference_lines(rungs, references)),
        references_html(rungs, references),
        "<h3>What each rung buys</h3>",
        _steps_html(results, steps),
        _off_ladder_html(suite, rungs, table),
        _top_vs_base_html(steps),
    ]
    return html.Section(ANCHOR, "\n".join(part for part in parts if part), tuple(warnings))


def _intro_html(steps: Mapping[int, Rung]) -> str:
    top = steps[max(steps)]
    return (
        "<p>The study stopped at a residual CNN on 32-pixel faces. This ablation ladder starts "
        "from its best model (rung 0) and adds one ingredient of a modern recipe per rung "
        f"(up to rung {top.number}, <code>{html.esc(top.experiment)}</code>), so each step's "
        "difference is what that ingredient buys on top of everything below it. Intervals are "
        "95%: Student-t over seeds where a rung has several, otherwise a bootstrap over the "
        "validation images (“img”); differences are paired over the same validation images. "
        'See <a href="#methods">Methods</a>.</p>'
    )


def _gaps_html(gaps: Sequence[int], rungs: Sequence[Rung], steps: Mapping[int, Rung]) -> str:
    lines = []
    if gaps:
        lines.append(
            "Rung(s) with no finished run: "
            + ", ".join(f"rung {number}" for number in gaps)
            + ". The steps into and out of them cannot be measured; their runs are still to train."
        )
    for rung in rungs:
        if steps[rung.number] is not rung:
            lines.append(
                f"Rung {rung.number} is claimed by both {steps[rung.number].experiment} and "
                f"{rung.experiment}; the steps use {steps[rung.number].experiment}."
            )
    return "".join(html.missing_html(line) for line in lines)


def _step_results(
    steps: Mapping[int, Rung], seed_runs: Mapping[str, Sequence[RunRecord]]
) -> list[ComparisonResult]:
    """Each step k vs k−1, then the top rung vs rung 0 (when they are more than one step apart)."""
    top = max(steps)
    pairs = [(number, number - 1) for number in range(1, top + 1)]
    if top > 1:
        pairs.append((top, 0))
    return [_step_result(new, old, steps, seed_runs) for new, old in pairs]


def _step_result(
    new: int, old: int, steps: Mapping[int, Rung], seed_runs: Mapping[str, Sequence[RunRecord]]
) -> ComparisonResult:
    a, b = steps.get(new), steps.get(old)
    overall = new - old > 1
    comparison = ClaimSpec(
        key=f"ladder-{new}-vs-{old}",
        title=f"rung {new} vs rung {old}" + (" (overall)" if overall else ""),
        a=a.experiment if a else f"rung {new}",
        b=b.experiment if b else f"rung {old}",
        claim=OVERALL if overall else (a.ingredient if a else f"rung {new}: no run"),
        metric="accuracy",
        expect="better",
        study_claim=False,
    )
    absent = [f"rung {number}" for number, rung in ((new, a), (old, b)) if rung is None]
    if absent:
        missing = f"no finished run of {' or '.join(absent)}"
        return ComparisonResult(comparison, "missing", missing=missing)
    return compare(comparison, seed_runs)


def _names_missing_rung(result: ComparisonResult) -> bool:
    """Whether the result is missing only because a rung has no run (already warned about)."""
    return bool(result.missing and result.missing.startswith("no finished run of rung"))


def _steps_html(results: Sequence[ComparisonResult], steps: Mapping[int, Rung]) -> str:
    if not results:
        return html.missing_html("Only rung 0 has runs: there is no step to measure yet.")
    items = "".join(_step_item(result) for result in results)
    compute = {rung.experiment: rung_tflop(rung) for rung in steps.values()}
    rows = [{**_step_row(result), "Train TFLOP (new / previous)": _compute_cell(result, compute)} for result in results]
    return f'<ul class="claims">{items}</ul>' + html.table_html(rows, {})


def rung_tflop(rung: Rung) -> float | None:
    """A rung's training compute: its seeds' mean, logged or counted from the spec."""
    spent = [s.train_tflop for s in map(spent_by, rung.seeds) if s.train_tflop is not None]
    return sum(spent) / len(spent) if spent else None


def _compute_cell(result: ComparisonResult, compute: Mapping[str, float | None]) -> str:
    """Each step's gain beside what it cost: the new rung's and the previous rung's training TFLOP."""
    cells = [compute.get(name) for name in (result.comparison.a, result.comparison.b)]
    return " / ".join("?" if value is None else f"{value:.3g}" for value in cells)


def _step_item(result: ComparisonResult) -> str:
    comparison, difference = result.comparison, result.difference
    head = f"<strong>{html.esc(comparison.title)}: {html.esc(comparison.a)} − {html.esc(comparison.b)}.</strong> "
    if difference is None:
        return f'<li class="unclear">{head}Not measured: {html.esc(result.missing)}.</li>'
    interval = difference.accuracy
    css = "ok" if interval.low > 0 else "bad" if interval.high < 0 else "unclear"
    return f'<li class="{css}">{head}{html.esc(step_sentence(result))}</li>'


def step_sentence(result: ComparisonResult) -> str:
    """E.g. '+3.1 points of accuracy [+1.0, +5.2] (...), McNemar p = 0.004. The interval ...'."""
    comparison, difference = result.comparison, result.difference
    assert difference is not None
    interval = difference.accuracy
    adds = comparison.claim if comparison.claim == OVERALL else f"adds {comparison.claim}"
    sentence = (
        f"{comparison.a} ({adds}): {pp_text(interval.estimate)} points of accuracy "
        f"{bracket_text(interval)} (95% paired bootstrap over {difference.n_images:,} validation "
        f"images, {difference.n_seeds[0]} vs {difference.n_seeds[1]} seed(s)), McNemar "
        f"{p_text(result.p_value)}. "
    )
    return sentence + _reading(result)


def _reading(result: ComparisonResult) -> str:
    """The interval in words, and whether McNemar's test confirms it (claims.verdict's rule)."""
    assert result.difference is not None
    interval = result.difference.accuracy
    if not interval.excludes_zero():
        return "The interval includes zero: no change in accuracy is shown."
    direction = "gains" if interval.low > 0 else "costs"
    sentence = f"The interval excludes zero: this step {direction} accuracy on these images"
    # With expect="better", any verdict but "inconclusive" means McNemar agreed in that direction.
    if result.verdict != "inconclusive":
        return sentence + ", and McNemar's test agrees."
    return sentence + ", but McNemar's test does not confirm it."


def _step_row(result: ComparisonResult) -> dict[str, Any]:
    comparison, difference = result.comparison, result.difference
    row: dict[str, Any] = {
        "Step": comparison.title,
        "New − previous": f"{comparison.a} − {comparison.b}",
        "Adds": comparison.claim,
    }
    if difference is None:
        return {**row, "Reading": f"missing: {result.missing}"}
    interval = difference.accuracy
    return {
        **row,
        **difference_cells(result, ("new", "previous")),
        "Reading": (
            "excludes zero: " + ("gain" if interval.low > 0 else "loss")
            if interval.excludes_zero()
            else "includes zero"
        ),
    }


def _off_ladder_html(
    suite: Results, rungs: Sequence[Rung], table: Mapping[tuple[str, str], Headline]
) -> str:
    """Experiments tagged `beyond` that are not on the ladder (e.g. a longer run of the recipe)."""
    on_ladder = {rung.experiment for rung in rungs}
    others = [
        run for run in suite.runs if BEYOND_TAG in run.comparisons and run.experiment not in on_ladder
    ]
    if not others:
        return ""
    rows = [
        {
            "Experiment": run.experiment,
            "Description": _ingredient(run),
            "Seeds": seed_list(suite.seed_runs.get(run.experiment) or (run,)),
            "Val. accuracy [95% CI]": headline_cell(
                table.get((run.experiment, "final_val_accuracy"))
                or headline(suite.seed_runs.get(run.experiment) or (run,), "final_val_accuracy")
            ),
        }
        for run in others
    ]
    return "<h3>Also tagged <code>beyond</code>, off the ladder</h3>" + html.table_html(rows, {})


def _top_vs_base_html(steps: Mapping[int, Rung]) -> str:
    top = steps[max(steps)]
    base = steps.get(0)
    heading = "<h3>The modern recipe next to the study's best</h3>"
    if base is None:
        return heading + html.missing_html("Rung 0 (the study's best model) has no finished run.")
    if top is base:
        return heading + html.missing_html("Only rung 0 has runs: no modern recipe to set beside it.")
    recall = _recall_figure(base, top)
    cards = [_confusion_card(rung) for rung in (base, top)]
    note = (
        "<p>Confusion matrices: rows are true classes, columns predictions; colour is the share "
        "of the row, hover shows image counts (summed over a rung's seeds).</p>"
    )
    return heading + recall + note + f'<div class="grid">{"".join(cards)}</div>'


def _recall_figure(base: Rung, top: Rung) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    absent = []
    for rung, colour in ((base, html.PALETTE[0]), (top, html.PALETTE[2])):
        estimate = recall_intervals(rung.seeds)
        if estimate is None:
            absent.append(rung.experiment)
            continue
        labels, values, bounds = estimate
        fig.add_trace(
            go.Bar(
                x=[html.esc(label) for label in labels],
                y=html.rounded(values),
                name=f"{html.esc(rung.label)} ({len(rung.seeds)} seed(s))",
                marker_color=colour,
                error_y=html.error_bars(values, bounds),
                hovertemplate="%{x}: recall %{y:.1%}<extra>" + html.esc(rung.experiment) + "</extra>",
            )
        )
    note = (
        html.missing_html(f"No well-formed confusion matrix for {' or '.join(absent)}: no per-class recall.")
        if absent
        else ""
    )
    if len(absent) == 2:
        return note
    fig.update_layout(
        title={"text": f"Per-class recall, rung {top.number} vs rung 0, with 95% intervals"},
        barmode="group",
        xaxis={"title": {"text": "class"}, "tickangle": -35},
        yaxis={
            "title": {"text": "recall on the validation split"},
            "range": [0, 1],
            "tickformat": ".0%",
        },
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
    )  # fmt: skip
    return note + html.figure_html(fig, height=460)


def summed_confusion(
    seeds: Sequence[RunRecord],
) -> tuple[list[str], list[list[int]], list[list[float]]] | None:
    """The seeds' confusion matrices summed: (labels, counts, row-normalised), if all agree."""
    matrices = [confusion_of(run) for run in seeds]
    if not matrices or any(matrix is None for matrix in matrices):
        return None
    labels = matrices[0][0]
    if any(matrix[0] != labels for matrix in matrices):
        return None
    size = len(labels)
    counts = [[int(sum(m[1][i][j] for m in matrices)) for j in range(size)] for i in range(size)]
    normalized = [[value / sum(row) if sum(row) else 0.0 for value in row] for row in counts]
    return labels, counts, normalized


def _confusion_card(rung: Rung) -> str:
    matrix = summed_confusion(rung.seeds)
    if matrix is None:
        message = f"{rung.experiment} has no well-formed confusion matrix."
        return f'<div class="card">{html.missing_html(message)}</div>'
    labels, counts, normalized = matrix
    split = rung.seeds[0].tags.get("harness.eval_split", "evaluation")
    summed = f", {len(rung.seeds)} seeds summed" if len(rung.seeds) > 1 else ""
    fig = confusion_heatmap(
        [html.esc(label) for label in labels],
        counts,
        [html.rounded(row) for row in normalized],
        f"{html.esc(rung.label)}: confusion matrix ({html.esc(split)}{summed})",
    )
    return f'<div class="card">{html.figure_html(fig, height=520)}</div>'
