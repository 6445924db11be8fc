"""The report's "Beyond the study" section: the modern recipe's ablation ladder.

Runs tagged harness.ladder_rung form a chain: rung 0 is the study's best model and each later
rung adds one ingredient (its harness.description) to the rung before. The section plots every
rung's validation accuracy with its 95% interval, says what each step buys as a paired
difference on the same validation images (harness.claims.compare: paired bootstrap and
McNemar's exact test), sets the top rung beside rung 0 class by class, and on FER2013 draws
reference lines that put the numbers in context.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.claims import Comparison, ComparisonResult, compare
from harness.report import (
    PALETTE,
    Section,
    confusion_of,
    error_bars,
    esc,
    figure_html,
    missing_html,
    rounded,
    table_html,
)
from harness.report_stats import (
    Headline,
    difference_cells,
    headline,
    headline_cell,
    recall_intervals,
    seed_list,
    source_line,
)
from harness.stats import bracket_text, p_text, pp_text
from harness.tracking.read import RunRecord, Suite, run_sort_key

if TYPE_CHECKING:
    import plotly.graph_objects as go

ANCHOR = "beyond"
BEYOND_TAG = "beyond"
FER2013 = "fer2013"  # tag harness.dataset of runs on FER2013: only there do the references apply
LADDER_METRICS: tuple[tuple[str, str], ...] = (
    ("final_val_accuracy", "validation accuracy"),
    ("final_val_balanced_accuracy", "balanced accuracy"),
)
NO_LADDER = (
    "No run is on an ablation ladder (no finished run tagged harness.ladder_rung). "
    "`harness run modern` then `harness report` adds the main suite's two-rung ladder "
    "(cnn_residual_balanced → modern) to this page; `make beyond FER2013=PATH` trains the "
    "seven-rung FER2013 ladder (suite file beyond.yaml, MLflow experiment fer-beyond) and "
    "writes its page to reports/beyond.html."
)
OVERALL = "everything above rung 0"  # what the top rung adds to rung 0, in the steps' table
TICK_WIDTH = 22  # characters per line of an x-axis label: seven rungs fit a laptop's width
TICK_LINES = 3


@dataclass(frozen=True)
class Reference:
    """A horizontal reference line (low == high) or band on the ladder chart."""

    low: float
    high: float
    label: str
    colour: str


# Context for FER2013 numbers, never targets: only the 67% line is measured the way this page
# measures (validation split, final epoch). Humans agree with FER2013's labels about 65% of the
# time (Goodfellow et al., 2013); published single models report 72–74% test accuracy (e.g.
# Pramerdorfer & Kampel, 2016; Khaireddin & Chen, 2021), typically of checkpoints chosen on that
# same test split, which flatters them against a validation-split number.
FER2013_REFERENCES: tuple[Reference, ...] = (
    Reference(0.65, 0.65, "human agreement ≈65%", "#7f7f7f"),
    Reference(
        0.67, 0.67,
        "the quick modern recipe, reported ≈67% (validation split, on a faster 2-core machine)", "#2ca02c",
    ),
    Reference(
        0.72, 0.74, "published single models (test-split-selected checkpoints)", "#d62728",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Rung:
    """One experiment on the ladder: its rung, the ingredient it adds, and its seeds' runs."""

    number: int
    experiment: str
    ingredient: str
    seeds: tuple[RunRecord, ...]

    @property
    def label(self) -> str:
        """E.g. "3. modern_tta"."""
        return f"{self.number}. {self.experiment}"


# ---------------------------------------------------------------------------------------------
# The ladder: which experiments are on it, in which order, and which rungs have no run
# ---------------------------------------------------------------------------------------------


def ladder(suite: Suite) -> list[Rung]:
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


# ---------------------------------------------------------------------------------------------
# The section
# ---------------------------------------------------------------------------------------------


def beyond_section(
    suite: Suite, table: Mapping[tuple[str, str], Headline] | None = None
) -> Section:
    """The ablation ladder with intervals, what each rung buys, and the top rung vs rung 0."""
    rungs = ladder(suite)
    if not rungs:
        return Section(ANCHOR, missing_html(NO_LADDER))
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
        source_line(suite, "final-epoch metrics and per-image predictions (eval/predictions.csv)"),
        _intro_html(steps),
        _gaps_html(gaps, rungs, steps),
        _ladder_figure(steps, table, _references(rungs)),
        _references_html(rungs),
        "<h3>What each rung buys</h3>",
        _steps_html(results),
        _off_ladder_html(suite, rungs, table),
        _top_vs_base_html(steps),
    ]
    return Section(ANCHOR, "\n".join(part for part in parts if part), tuple(warnings))


def _intro_html(steps: Mapping[int, Rung]) -> str:
    top = steps[max(steps)]
    return (
        "<p>The study stopped at a residual CNN on 32-pixel faces. This ablation ladder starts "
        "from its best model (rung 0) and adds one ingredient of a modern recipe per rung "
        f"(up to rung {top.number}, <code>{esc(top.experiment)}</code>), so each step's "
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
    return "".join(missing_html(line) for line in lines)


# ---------------------------------------------------------------------------------------------
# The ladder chart (with FER2013's reference lines)
# ---------------------------------------------------------------------------------------------


def _references(rungs: Sequence[Rung]) -> tuple[Reference, ...]:
    """FER2013_REFERENCES when every ladder run is on FER2013, else none."""
    datasets = {run.tags.get("harness.dataset") for rung in rungs for run in rung.seeds}
    return FER2013_REFERENCES if datasets == {FER2013} else ()


def _ladder_figure(
    steps: Mapping[int, Rung],
    table: Mapping[tuple[str, str], Headline],
    references: Sequence[Reference],
) -> str:
    import plotly.graph_objects as go

    slots = [steps.get(number) for number in range(max(steps) + 1)]
    ticks = [_tick_text(number, rung) for number, rung in enumerate(slots)]
    fig = go.Figure()
    bounds: list[float] = [ref.low for ref in references] + [ref.high for ref in references]
    for index, (key, name) in enumerate(LADDER_METRICS):
        values = [_rung_headline(rung, key, table) if rung else None for rung in slots]
        fig.add_trace(_ladder_trace(ticks, values, name, PALETTE[index]))
        bounds += _extent(values)
    for reference in references:
        _add_reference(fig, reference)
    fig.update_layout(
        title={"text": "The ablation ladder: validation scores per rung, with 95% intervals"},
        # plotly measures <br>-wrapped tick labels short: the standoff keeps the title clear.
        xaxis={
            "title": {"text": "rung: experiment and the ingredient it adds", "standoff": 30},
            "type": "category",
        },
        yaxis={
            "title": {"text": "score on the validation split"},
            "range": _y_range(bounds),
            "tickformat": ".0%",
        },
        scattermode="group",
        legend={"orientation": "h", "y": -0.32, "yanchor": "top"},
    )  # fmt: skip
    return figure_html(fig, height=600)


def _extent(values: Sequence[Headline | None]) -> list[float]:
    """Every mean and interval end of a trace, for the y range."""
    points: list[float] = []
    for value in values:
        if value is None:
            continue
        mean, _, interval, _ = value
        points += [mean] + ([interval.low, interval.high] if interval else [])
    return points


def _rung_headline(rung: Rung, key: str, table: Mapping[tuple[str, str], Headline]) -> Headline:
    return table.get((rung.experiment, key)) or headline(rung.seeds, key)


def _ladder_trace(
    ticks: Sequence[str], values: Sequence[Headline | None], name: str, colour: str
) -> go.Scatter:
    import plotly.graph_objects as go

    means = [value[0] if value and not math.isnan(value[0]) else None for value in values]
    pairs = list(zip([value[2] if value else None for value in values], means, strict=True))
    return go.Scatter(
        x=list(ticks),
        y=rounded(means),
        mode="lines+markers",
        name=f"{name} (mean, 95% interval)",
        line={"color": colour},
        marker={"color": colour, "size": 9},
        connectgaps=False,  # a missing rung stays a visible hole, not a straight line across
        error_y={
            "type": "data",
            "symmetric": False,
            "array": rounded(i.high - m if i and m is not None else None for i, m in pairs),
            "arrayminus": rounded(m - i.low if i and m is not None else None for i, m in pairs),
            "thickness": 1.5,
            "width": 5,
        },
        customdata=[_interval_note(value) for value in values],
        hovertemplate="%{x}<br>" + name + ": %{y:.1%} %{customdata}<extra></extra>",
    )  # fmt: skip


def _interval_note(value: Headline | None) -> str:
    if value is None:
        return "(no run)"
    _, _, interval, how = value
    if interval is None:
        return f"({esc(how)}, no interval)"
    return f"[{100 * interval.low:.1f}, {100 * interval.high:.1f}] ({esc(how)})"


def _tick_text(number: int, rung: Rung | None) -> str:
    if rung is None:
        return f"{number}. missing: no run"
    plus = number > 0 and not rung.ingredient.startswith("+")
    ingredient = f"+ {rung.ingredient}" if plus else rung.ingredient
    lines = textwrap.wrap(ingredient, TICK_WIDTH, max_lines=TICK_LINES, placeholder=" …")
    return "<br>".join(esc(line) for line in [rung.label, *lines])


def _add_reference(fig: go.Figure, reference: Reference) -> None:
    # Named in the legend rather than labelled on the plot: lines 2 points apart, crossed by the
    # rungs' error bars, leave no room for long labels.
    label = {"name": esc(reference.label), "showlegend": True, "legendgroup": "references"}
    if reference.high > reference.low:
        fig.add_hrect(
            y0=reference.low, y1=reference.high, fillcolor=reference.colour, opacity=0.15,
            line_width=0, **label,
        )  # fmt: skip
    else:
        fig.add_hline(
            y=reference.low, line={"color": reference.colour, "dash": "dash", "width": 1.5}, **label
        )


def _y_range(values: Sequence[float]) -> list[float]:
    """A range that holds every point, interval and reference line, with a little room."""
    finite = [value for value in values if not math.isnan(value)]
    if not finite:
        return [0.0, 1.0]
    low, high = min(finite), max(finite)
    pad = max(0.02, 0.08 * (high - low))
    return [max(0.0, low - pad), min(1.0, high + pad)]


def _references_html(rungs: Sequence[Rung]) -> str:
    references = _references(rungs)
    if not references:
        return (
            '<p class="note">Reference lines (human agreement, published FER2013 models) are '
            "drawn only for runs on FER2013; these runs are on another dataset.</p>"
        )
    items = "".join(
        f"<li><strong>{_reference_value(ref)}</strong>: {esc(ref.label)}</li>" for ref in references
    )
    return (
        f"<p>Reference lines on the chart (FER2013):</p><ul>{items}</ul>"
        '<p class="note">Only the 67% line was measured as this page measures (validation split, '
        "final epoch), though on a machine with about 2.5× this one's throughput (README, "
        "“Beyond the study”). The published single models report <em>test</em>-split accuracy, "
        "typically of checkpoints selected on that same test split, so they overstate what a "
        "held-out split would show; read them as an upper landmark, not a target met or "
        "missed.</p>"
    )


def _reference_value(reference: Reference) -> str:
    if reference.high > reference.low:
        return f"{100 * reference.low:.0f}–{100 * reference.high:.0f} %"
    return f"{100 * reference.low:.0f} %"


# ---------------------------------------------------------------------------------------------
# What each rung buys: rung k − rung k−1, and the top rung − rung 0
# ---------------------------------------------------------------------------------------------


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
    comparison = Comparison(
        key=f"ladder-{new}-vs-{old}",
        title=f"rung {new} vs rung {old}" + (" (overall)" if overall else ""),
        a=a.experiment if a else f"rung {new}",
        b=b.experiment if b else f"rung {old}",
        claim=OVERALL if overall else (a.ingredient if a else f"rung {new}: no run"),
        metric="accuracy",
        expect="better",
        is_claim=False,
    )
    absent = [f"rung {number}" for number, rung in ((new, a), (old, b)) if rung is None]
    if absent:
        missing = f"no finished run of {' or '.join(absent)}"
        return ComparisonResult(comparison, "missing", missing=missing)
    return compare(comparison, seed_runs)


def _names_missing_rung(result: ComparisonResult) -> bool:
    """Whether the result is missing only because a rung has no run (already warned about)."""
    return bool(result.missing and result.missing.startswith("no finished run of rung"))


def _steps_html(results: Sequence[ComparisonResult]) -> str:
    if not results:
        return missing_html("Only rung 0 has runs: there is no step to measure yet.")
    items = "".join(_step_item(result) for result in results)
    rows = [_step_row(result) for result in results]
    return f'<ul class="claims">{items}</ul>' + table_html(rows, {})


def _step_item(result: ComparisonResult) -> str:
    comparison, difference = result.comparison, result.difference
    head = f"<strong>{esc(comparison.title)}: {esc(comparison.a)} − {esc(comparison.b)}.</strong> "
    if difference is None:
        return f'<li class="unclear">{head}Not measured: {esc(result.missing)}.</li>'
    interval = difference.accuracy
    css = "ok" if interval.low > 0 else "bad" if interval.high < 0 else "unclear"
    return f'<li class="{css}">{head}{esc(step_sentence(result))}</li>'


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
    suite: Suite, rungs: Sequence[Rung], table: Mapping[tuple[str, str], Headline]
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
    return "<h3>Also tagged <code>beyond</code>, off the ladder</h3>" + table_html(rows, {})


# ---------------------------------------------------------------------------------------------
# The modern recipe next to the study's best: per-class recall, confusion matrices
# ---------------------------------------------------------------------------------------------


def _top_vs_base_html(steps: Mapping[int, Rung]) -> str:
    top = steps[max(steps)]
    base = steps.get(0)
    heading = "<h3>The modern recipe next to the study's best</h3>"
    if base is None:
        return heading + missing_html("Rung 0 (the study's best model) has no finished run.")
    if top is base:
        return heading + missing_html("Only rung 0 has runs: no modern recipe to set beside it.")
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
    for rung, colour in ((base, PALETTE[0]), (top, PALETTE[2])):
        estimate = recall_intervals(rung.seeds)
        if estimate is None:
            absent.append(rung.experiment)
            continue
        labels, values, bounds = estimate
        fig.add_trace(
            go.Bar(
                x=[esc(label) for label in labels],
                y=rounded(values),
                name=f"{esc(rung.label)} ({len(rung.seeds)} seed(s))",
                marker_color=colour,
                error_y=error_bars(values, bounds),
                hovertemplate="%{x}: recall %{y:.1%}<extra>" + esc(rung.experiment) + "</extra>",
            )
        )
    note = (
        missing_html(f"No well-formed confusion matrix for {' or '.join(absent)}: no per-class recall.")
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
    return note + figure_html(fig, height=460)


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
    from harness.figures import confusion_heatmap

    matrix = summed_confusion(rung.seeds)
    if matrix is None:
        message = f"{rung.experiment} has no well-formed confusion matrix."
        return f'<div class="card">{missing_html(message)}</div>'
    labels, counts, normalized = matrix
    split = rung.seeds[0].tags.get("harness.eval_split", "evaluation")
    summed = f", {len(rung.seeds)} seeds summed" if len(rung.seeds) > 1 else ""
    fig = confusion_heatmap(
        [esc(label) for label in labels],
        counts,
        [rounded(row) for row in normalized],
        f"{esc(rung.label)}: confusion matrix ({esc(split)}{summed})",
    )
    return f'<div class="card">{figure_html(fig, height=520)}</div>'
