"""Report sections that need statistics or more than one run per experiment.

Headline metrics over repeated seeds, the study's claims tested on the same validation images,
paper vs reproduced (with rankings), the train–validation gap, Optuna sweeps and a methods note.
Each function takes the loaded Suite and returns a report section; the numbers come from
harness.stats and harness.claims, the page furniture from harness.report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.claims import RULES, STUDY_COMPARISONS, Comparison, ComparisonResult, compare
from harness.report import (
    PALETTE,
    Section,
    chance_html,
    count_text,
    duration_text,
    esc,
    figure_html,
    missing_html,
    rounded,
    table_html,
)
from harness.stats import (
    BOOTSTRAP_RESAMPLES,
    Interval,
    bootstrap_scores,
    bracket_text,
    mean_interval,
    p_text,
    pp_text,
    wilson_interval,
)
from harness.tracking.read import RunRecord, Suite, SweepRecord, run_sort_key

if TYPE_CHECKING:
    import plotly.graph_objects as go

HEADLINE_METRICS: tuple[tuple[str, str], ...] = (
    ("final_val_accuracy", "Val. accuracy"),
    ("final_val_balanced_accuracy", "Balanced accuracy"),
    ("final_val_macro_f1", "Macro-F1"),
)
# Bootstrap intervals for one seed exist for these (from per-image predictions); not for F1.
BOOTSTRAPPED = {"final_val_accuracy": 0, "final_val_balanced_accuracy": 1}
VERDICT_CLASS = {
    "reproduced": "ok",
    "not reproduced": "bad",
    "inconclusive": "unclear",
    "missing": "unclear",
}
TRIAL_COLOURS = {"COMPLETE": "#1f77b4", "PRUNED": "#b0b0b0", "FAIL": "#d62728"}


# ---------------------------------------------------------------------------------------------
# Where the numbers come from
# ---------------------------------------------------------------------------------------------


def source_line(suite: Suite, what: str = "final-epoch metrics") -> str:
    """One sentence naming the store, the experiment, the dataset and the split of a section."""
    runs = [run for group in suite.seed_runs.values() for run in group] or list(suite.runs)
    datasets = sorted({run.tags.get("harness.dataset") or "unknown dataset" for run in runs})
    splits = sorted({run.tags.get("harness.eval_split") or "unknown split" for run in runs})
    return (
        f'<p class="source">Source: MLflow experiment <code>{esc(suite.experiment_name)}</code> '
        f"({len(runs)} finished training run(s)); {esc(what)} on the "
        f"<strong>{esc(', '.join(splits))}</strong> split of "
        f"<strong>{esc(', '.join(datasets))}</strong>.</p>"
    )


# ---------------------------------------------------------------------------------------------
# Summary: mean ± sd and a 95% interval for every headline metric
# ---------------------------------------------------------------------------------------------


def summary_section(suite: Suite, table: Mapping[tuple[str, str], Headline] | None = None) -> Section:
    """Per experiment: seeds, and each headline metric as mean ± sd [95% interval]."""
    if not suite.runs:
        return Section("summary", missing_html("No finished training runs to summarise."))
    table = headlines(suite) if table is None else table
    rows = [_summary_row(run, suite.seed_runs.get(run.experiment) or (run,), table) for run in suite.runs]
    note = (
        "<p>Each experiment's final-epoch metrics over its repeated seeds: mean ± standard "
        "deviation, and a 95% interval — Student-t over seeds where there are several; for a "
        "single seed, a bootstrap over validation images (marked “img”; none for macro-F1). "
        "See <a href=\"#methods\">Methods</a>.</p>"
    )
    formatters = {"Parameters": count_text, "Training time (mean)": duration_text}
    body = source_line(suite) + note + chance_html(suite.runs) + table_html(rows, formatters)
    return Section("summary", body)


def _summary_row(
    run: RunRecord, seeds: Sequence[RunRecord], table: Mapping[tuple[str, str], Headline]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "Experiment": run.experiment,
        "Paper iteration": run.paper_iteration,
        "Seeds": seed_list(seeds),
    }
    for key, label in HEADLINE_METRICS:
        row[label] = headline_cell(table.get((run.experiment, key)) or headline(seeds, key))
    row["Parameters"] = run.metric("n_parameters")
    row["Training time (mean)"] = _mean_metric(seeds, "train_seconds")
    row["Comparisons"] = ", ".join(run.comparisons)
    return row


Headline = tuple[float, float | None, Interval | None, str]  # mean, sd, interval, how


def headlines(suite: Suite) -> dict[tuple[str, str], Headline]:
    """headline() of every experiment and headline metric, computed once for the whole page."""
    table: dict[tuple[str, str], Headline] = {}
    for name, seeds in suite.seed_runs.items():
        images = _image_intervals(seeds)
        for key, _ in HEADLINE_METRICS:
            table[(name, key)] = headline(seeds, key, images)
    return table


def headline(
    seeds: Sequence[RunRecord], key: str, images: tuple[Interval, Interval] | None = None
) -> Headline:
    """(mean, sd, 95% interval, how the interval was made) of a final metric over seeds.

    `images`: the single run's (accuracy, balanced accuracy) bootstrap intervals, if computed.
    """
    values = [v for v in (run.metric(key) for run in seeds) if v is not None]
    if not values:
        return math.nan, None, None, "missing"
    summary = mean_interval(values)
    if summary.interval is not None:
        return summary.mean, summary.sd, summary.interval, f"t over {summary.n} seeds"
    if key in BOOTSTRAPPED:
        images = images if images is not None else _image_intervals(seeds)
        if images is not None:
            return summary.mean, None, images[BOOTSTRAPPED[key]], "img"
    return summary.mean, None, None, "one seed"


def _image_intervals(seeds: Sequence[RunRecord]) -> tuple[Interval, Interval] | None:
    """For a single run: bootstrap intervals of accuracy and balanced accuracy over images."""
    if len(seeds) != 1:
        return None
    predictions = seeds[0].artifacts.predictions if seeds[0].artifacts else None
    if predictions is None or not predictions.y_true.size:
        return None
    return bootstrap_scores(predictions.y_true, predictions.correct)


def headline_cell(value: Headline) -> str | None:
    mean, sd, interval, how = value
    if math.isnan(mean):
        return None
    text = f"{100 * mean:.1f}"
    text += f" ± {100 * sd:.1f}" if sd is not None else ""
    if interval is not None:
        text += f" [{100 * interval.low:.1f}, {100 * interval.high:.1f}]"
        text += " img" if how == "img" else ""
    return text + " %"


def seed_list(seeds: Sequence[RunRecord]) -> str:
    known = [str(run.seed) for run in seeds if run.seed is not None]
    return f"{len(seeds)} ({', '.join(known)})" if known else str(len(seeds))


def _mean_metric(seeds: Sequence[RunRecord], key: str) -> float | None:
    values = [v for v in (run.metric(key) for run in seeds) if v is not None]
    return math.fsum(values) / len(values) if values else None


def recall_intervals(
    seeds: Sequence[RunRecord],
) -> tuple[list[str], list[float], list[tuple[float, float]]] | None:
    """Per-class recall from the confusion matrices: (labels, means, 95% bounds).

    One seed: Wilson intervals on the class's correct/total counts. Several: Student-t over the
    seeds' recalls (each seed's recall is one observation).
    """
    matrices = [_confusion_counts(run) for run in seeds]
    if not matrices or any(matrix is None for matrix in matrices):
        return None
    labels = matrices[0][0]
    if any(matrix[0] != labels for matrix in matrices):
        return None
    if len(matrices) == 1:
        counts = matrices[0][1]
        intervals = [
            wilson_interval(int(row[i]), int(sum(row))) if sum(row) else None
            for i, row in enumerate(counts)
        ]
        return (
            labels,
            [interval.estimate if interval else 0.0 for interval in intervals],
            [(interval.low, interval.high) if interval else (0.0, 0.0) for interval in intervals],
        )
    means, bounds = [], []
    for i in range(len(labels)):
        recalls = [row[i] / sum(row) if sum(row) else 0.0 for _, counts in matrices for row in [counts[i]]]
        summary = mean_interval(recalls)
        means.append(summary.mean)
        interval = summary.interval
        bounds.append((max(0.0, interval.low), min(1.0, interval.high)) if interval else (0.0, 0.0))
    return labels, means, bounds


def _confusion_counts(run: RunRecord) -> tuple[list[str], list[list[float]]] | None:
    matrix = run.artifacts.confusion_matrix if run.artifacts else None
    if not matrix or not isinstance(matrix.get("labels"), list):
        return None
    labels = [str(label) for label in matrix["labels"]]
    counts = matrix.get("counts")
    if not isinstance(counts, list) or len(counts) != len(labels):
        return None
    if not all(isinstance(row, list) and len(row) == len(labels) for row in counts):
        return None
    return labels, counts


# ---------------------------------------------------------------------------------------------
# The study's claims
# ---------------------------------------------------------------------------------------------


def claims_section(
    suite: Suite, comparisons: Sequence[Comparison] = STUDY_COMPARISONS
) -> Section:
    """Each claim in words with its interval and p-value, a table, and a forest plot."""
    if not suite.runs:
        return Section("claims", missing_html("No finished training runs: no claim can be tested."))
    results = [compare(comparison, suite.seed_runs) for comparison in comparisons]
    warnings = tuple(
        f"claim '{result.comparison.title}' not tested: {result.missing}"
        for result in results
        if result.missing and result.comparison.is_claim
    )
    claims = [result for result in results if result.comparison.is_claim]
    others = [result for result in results if not result.comparison.is_claim]
    parts = [
        source_line(suite, "per-image predictions (eval/predictions.csv)"),
        "<p>Each line tests one of the study's claims on the data used here: the difference "
        "A − B in percentage points with a 95% paired bootstrap interval over the validation "
        "images, and McNemar's exact test on the same images. Rules in "
        '<a href="#methods">Methods</a>.</p>',
        '<ul class="claims">' + "".join(_claim_item(result) for result in claims) + "</ul>",
        _forest_plot([result for result in results if result.difference is not None]),
        "<h3>All comparisons</h3>",
        table_html([_comparison_row(result) for result in results], {}),
    ]
    if others:
        parts.append(
            '<p class="note">Rows not among the three claims are supporting comparisons; their '
            "expected direction is the paper's numbers or, where the paper is silent, the "
            "claim that balanced sampling helps.</p>"
        )
    return Section("claims", "\n".join(part for part in parts if part), warnings)


def _claim_item(result: ComparisonResult) -> str:
    comparison = result.comparison
    css = VERDICT_CLASS[result.verdict]
    head = f"<strong>The study: {esc(comparison.claim)}.</strong> "
    if result.difference is None:
        return f'<li class="{css}">{head}Not tested: {esc(result.missing)}.</li>'
    return f'<li class="{css}">{head}{esc(claim_sentence(result))}</li>'


def claim_sentence(result: ComparisonResult) -> str:
    """E.g. 'Here cnn_residual − cnn_baseline = +3.1 points of accuracy [0.4, 5.9] ...'."""
    comparison, difference = result.comparison, result.difference
    assert difference is not None
    interval = getattr(difference, comparison.metric)
    metric = "accuracy" if comparison.metric == "accuracy" else "balanced accuracy"
    seeds = f"{difference.n_seeds[0]} vs {difference.n_seeds[1]} seed(s)"
    p = result.p_value
    sentence = (
        f"Here {comparison.a} − {comparison.b} = {pp_text(interval.estimate)} points of {metric} "
        f"{bracket_text(interval)} (95% paired bootstrap over {difference.n_images:,} validation "
        f"images, {seeds}), McNemar {p_text(p)}: {result.verdict}."
    )
    if result.verdict == "inconclusive" and interval.excludes_zero():
        sentence += " The interval excludes zero, but McNemar's test does not confirm it."
    if comparison.expect == "no_better" and result.verdict == "reproduced":
        sentence += (
            f" {comparison.a} is not shown to be better; the interval allows at most "
            f"{pp_text(interval.high)} points."
        )
    return sentence


def _comparison_row(result: ComparisonResult) -> dict[str, Any]:
    comparison, difference = result.comparison, result.difference
    row: dict[str, Any] = {
        "Comparison": comparison.title,
        "A − B": f"{comparison.a} − {comparison.b}",
        "Judged on": "accuracy" if comparison.metric == "accuracy" else "balanced accuracy",
        "Expected": "A better" if comparison.expect == "better" else "A no better",
    }
    if difference is None:
        return {**row, "Verdict": f"missing: {result.missing}"}
    return {**row, **difference_cells(result, ("A", "B")), "Verdict": result.verdict}


def difference_cells(result: ComparisonResult, sides: tuple[str, str]) -> dict[str, str]:
    """The table cells of one paired difference: seeds, Δ accuracy and Δ balanced accuracy with
    their 95% intervals, and McNemar's discordant counts and p per seed. `sides` names A and B
    in the headers (e.g. ("A", "B") or ("new", "previous"))."""
    difference = result.difference
    assert difference is not None, "difference_cells needs a computed difference"
    a, b = sides
    return {
        f"Seeds ({a}, {b})": f"{difference.n_seeds[0]}, {difference.n_seeds[1]}",
        "Δ accuracy [95% CI], pp": f"{pp_text(difference.accuracy.estimate)} {bracket_text(difference.accuracy)}",
        "Δ balanced accuracy [95% CI], pp": (
            f"{pp_text(difference.balanced_accuracy.estimate)} {bracket_text(difference.balanced_accuracy)}"
        ),
        f"McNemar ({a} only right / {b} only right), p": (
            "; ".join(f"{test.b}/{test.c}, {p_text(test.p_value)}" for test in result.mcnemar)
        ),
    }


def _forest_plot(results: Sequence[ComparisonResult]) -> str:
    import plotly.graph_objects as go

    if not results:
        return ""
    fig = go.Figure()
    names = [esc(result.comparison.title) for result in results]
    for metric, label, colour, offset in (
        ("accuracy", "Δ accuracy", PALETTE[0], -0.15),
        ("balanced_accuracy", "Δ balanced accuracy", PALETTE[1], 0.15),
    ):
        intervals = [getattr(result.difference, metric) for result in results]
        fig.add_trace(
            go.Scatter(
                x=rounded(100 * i.estimate for i in intervals),
                y=[index + offset for index in range(len(results))],
                mode="markers",
                name=label,
                marker={"color": colour, "size": 9},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": rounded(100 * (i.high - i.estimate) for i in intervals),
                    "arrayminus": rounded(100 * (i.estimate - i.low) for i in intervals),
                },
                text=names,
                hovertemplate="%{text}<br>" + label + ": %{x:+.1f} pp<extra></extra>",
            )
        )
    fig.add_vline(x=0, line={"color": "#555", "dash": "dash"})
    fig.update_layout(
        title={"text": "Differences A − B on the same validation images, with 95% bootstrap intervals"},
        xaxis={"title": {"text": "difference A − B (percentage points)"}},
        yaxis={
            "title": {"text": "comparison"},
            "tickvals": list(range(len(results))),
            "ticktext": names,
            "autorange": "reversed",
        },
        legend={"orientation": "h", "y": -0.25, "yanchor": "top"},
    )
    return figure_html(fig, height=140 + 55 * len(results))


# ---------------------------------------------------------------------------------------------
# Paper vs reproduced
# ---------------------------------------------------------------------------------------------


def paper_section(suite: Suite, table: Mapping[tuple[str, str], Headline] | None = None) -> Section:
    """Per paper iteration: the study's accuracy, ours with its interval, the gap, both rankings."""
    rows = [run for run in suite.runs if run.paper_iteration is not None]
    if not rows:
        return Section("paper", missing_html("No run reproduces one of the paper's iterations."))
    table = headlines(suite) if table is None else table
    ours = {
        run.experiment: table.get((run.experiment, "final_val_accuracy"))
        or headline(suite.seed_runs.get(run.experiment) or (run,), "final_val_accuracy")
        for run in rows
    }
    ranked = [run for run in rows if run.paper_val_accuracy is not None and not math.isnan(ours[run.experiment][0])]
    paper_rank = _ranks({run.experiment: run.paper_val_accuracy for run in ranked})
    our_rank = _ranks({run.experiment: ours[run.experiment][0] for run in ranked})
    table = [
        {
            "Iteration": run.paper_iteration,
            "Experiment": run.experiment,
            "Paper val. accuracy": _pct(run.paper_val_accuracy),
            "Ours: mean [95% CI]": _ours_cell(ours[run.experiment]),
            "Gap (ours − paper), pp": _gap(ours[run.experiment][0], run.paper_val_accuracy),
            "Paper rank": _rank_text(paper_rank.get(run.experiment)),
            "Our rank": _rank_text(our_rank.get(run.experiment)),
        }
        for run in rows
    ]
    order = (
        "<p>Rank 1 is the highest accuracy among the iterations the paper gives a number for "
        "(ties share a rank). Paper order: "
        f"{esc(_ordering(paper_rank))}; ours: {esc(_ordering(our_rank))}.</p>"
        if ranked
        else ""
    )
    note = (
        "<p>The paper's numbers are AffectNet validation accuracy after ~15 epochs of 5,000 "
        "images; ours are on the data and schedule named below, so the gap measures the setting "
        "as much as the code. The ranking is the comparable part.</p>"
    )
    body = (
        source_line(suite)
        + note
        + table_html(table, {})
        + order
        + _paper_figure(rows, ours)
    )
    return Section("paper", body)


def _ranks(values: Mapping[str, float]) -> dict[str, int]:
    """1 = highest; equal values share the better rank."""
    ordered = sorted(values.values(), reverse=True)
    return {name: ordered.index(value) + 1 for name, value in values.items()}


def _rank_text(rank: int | None) -> str | None:
    return None if rank is None else str(rank)


def _ordering(ranks: Mapping[str, int]) -> str:
    return " > ".join(name for name, _ in sorted(ranks.items(), key=lambda item: (item[1], item[0])))


def _ours_cell(values: tuple[float, float | None, Interval | None, str]) -> str | None:
    mean, _, interval, how = values
    if math.isnan(mean):
        return None
    text = f"{100 * mean:.1f} %"
    if interval is not None:
        text += f" [{100 * interval.low:.1f}, {100 * interval.high:.1f}]"
        text += " (images)" if how == "img" else f" ({how})"
    return text


def _paper_figure(runs: Sequence[RunRecord], ours: Mapping[str, tuple[Any, ...]]) -> str:
    import plotly.graph_objects as go

    from harness.figures import paper_markers

    names = [f"{esc(run.paper_iteration)}: {esc(run.experiment)}" for run in runs]
    means = [ours[run.experiment][0] for run in runs]
    intervals = [ours[run.experiment][2] for run in runs]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=names,
            y=rounded(None if math.isnan(m) else m for m in means),
            name="reproduced (mean, 95% interval)",
            marker_color=PALETTE[0],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": rounded((i.high - m) if i else 0.0 for i, m in zip(intervals, means, strict=True)),
                "arrayminus": rounded((m - i.low) if i else 0.0 for i, m in zip(intervals, means, strict=True)),
            },
        )
    )
    fig.add_trace(paper_markers(names, [run.paper_val_accuracy for run in runs], "paper-reported"))
    fig.update_layout(
        title={"text": "Validation accuracy per paper iteration: paper vs reproduced"},
        xaxis={"title": {"text": "paper iteration: experiment"}},
        yaxis={"title": {"text": "validation accuracy"}, "range": [0, 1], "tickformat": ".0%"},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
    )
    return figure_html(fig, height=440)


# ---------------------------------------------------------------------------------------------
# Overfitting: train − validation accuracy per epoch, every run
# ---------------------------------------------------------------------------------------------


def overfitting_section(suite: Suite) -> Section:
    """The gap between training and validation accuracy per epoch, one line per run."""
    experiments = sorted(suite.seed_runs.items(), key=lambda item: run_sort_key(item[1][0]))
    with_gap = [(name, runs) for name, runs in experiments if any(_has_gap(run) for run in runs)]
    if not with_gap:
        return Section("overfitting", missing_html("No run has per-epoch training and validation accuracy."))
    fig = _gap_figure(with_gap)
    rows = [_gap_row(name, runs) for name, runs in with_gap]
    note = (
        "<p>The study's central diagnosis is overfitting: training accuracy running away from "
        "validation accuracy. Each line is one run (every seed), the gap in percentage points "
        "of training accuracy (on the images drawn that epoch) minus validation accuracy (on "
        "the whole validation split).</p>"
    )
    return Section("overfitting", source_line(suite, "per-epoch accuracy") + note + fig + table_html(rows, {}))


def _has_gap(run: RunRecord) -> bool:
    history = run.history
    return {"train_accuracy", "val_accuracy"} <= set(history) and bool(
        (history["train_accuracy"] - history["val_accuracy"]).notna().any()
    )


def _gap_figure(groups: Sequence[tuple[str, Sequence[RunRecord]]]) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for index, (name, runs) in enumerate(groups):
        colour = PALETTE[index % len(PALETTE)]
        for position, run in enumerate(run for run in runs if _has_gap(run)):
            history = run.history
            gap = 100 * (history["train_accuracy"] - history["val_accuracy"])
            seed = f" (seed {run.seed})" if run.seed is not None else ""
            fig.add_trace(
                go.Scatter(
                    x=history["epoch"].tolist(),
                    y=rounded(gap.tolist(), 2),
                    mode="lines+markers",
                    name=esc(name),
                    legendgroup=esc(name),
                    showlegend=position == 0,
                    line={"color": colour, "dash": "solid" if index < len(PALETTE) else "dot"},
                    hovertemplate=f"{esc(name)}{seed}<br>epoch %{{x}}<br>gap %{{y:+.1f}} pp<extra></extra>",
                )
            )
    fig.add_hline(y=0, line={"color": "#555", "dash": "dash"})
    fig.update_layout(
        title={"text": "Train − validation accuracy gap per epoch, every run"},
        xaxis={"title": {"text": "epoch"}},
        yaxis={"title": {"text": "training − validation accuracy (pp)"}},
    )
    return figure_html(fig, height=480)


def _gap_row(name: str, runs: Sequence[RunRecord]) -> dict[str, Any]:
    finals, peaks = [], []
    for run in runs:
        if not _has_gap(run):
            continue
        gap = (run.history["train_accuracy"] - run.history["val_accuracy"]).dropna()
        finals.append(float(gap.iloc[-1]))
        peaks.append(float(gap.max()))
    final = mean_interval(finals)
    spread = f" ± {100 * final.sd:.1f}" if final.sd is not None else ""
    return {
        "Experiment": name,
        "Runs": len(finals),
        "Final-epoch gap, pp (mean ± sd)": f"{100 * final.mean:+.1f}{spread}",
        "Largest gap, pp (max over runs)": f"{100 * max(peaks):+.1f}",
    }


# ---------------------------------------------------------------------------------------------
# Sweeps (docs/DESIGN.md, "Sweeps")
# ---------------------------------------------------------------------------------------------


def sweeps_section(suite: Suite) -> Section:
    """Per Optuna study: counts, the best trial, optimisation history, parameter importances."""
    if not suite.sweeps:
        return Section(
            "sweeps",
            missing_html(
                "No sweep in this experiment (no run tagged harness.kind=sweep): run "
                "`harness sweep` to add one."
            ),
        )
    parts = [
        "<p>One block per Optuna study, from its latest sweep run (the latest finished one if "
        "any finished). Trial values are the study's objective on the validation split.</p>"
    ]
    warnings: list[str] = []
    for sweep in suite.sweeps:
        parts.append(_sweep_block(sweep))
        warnings.extend(f"sweep {sweep.study}: {problem}" for problem in sweep.problems)
    return Section("sweeps", "\n".join(parts), tuple(warnings))


def _sweep_block(sweep: SweepRecord) -> str:
    states = _state_counts(sweep)
    objective = sweep.objective or "objective"
    facts = (
        f"<p>Base experiment <code>{esc(sweep.experiment or '?')}</code>; objective "
        f"<code>{esc(objective)}</code> ({esc(sweep.direction or 'direction unknown')}) on the "
        f"validation split; sweep run <code>{esc(sweep.run_id)}</code> ({esc(sweep.status)}). "
        f"Trials: {states['COMPLETE']} completed, {states['PRUNED']} pruned, "
        f"{states['FAIL']} failed"
        + (f", {states['RUNNING']} running" if states.get("RUNNING") else "")
        + ".</p>"
    )
    parts = [f'<div class="block"><h3>Study {esc(sweep.study)}</h3>', facts, _best_trial_html(sweep)]
    if sweep.trials:
        parts.append(_history_figure(sweep))
    else:
        parts.append(missing_html("No trials recorded (optuna/trials.json missing or empty)."))
    parts.append(_importance_html(sweep))
    if sweep.problems:
        parts.append('<p class="note">Missing: ' + esc("; ".join(sweep.problems)) + "</p>")
    parts.append("</div>")
    return "\n".join(parts)


def _state_counts(sweep: SweepRecord) -> dict[str, int]:
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    if sweep.trials:
        for trial in sweep.trials:
            state = str(trial.get("state", "")).upper()
            counts[state] = counts.get(state, 0) + 1
        return counts
    for state, metric in (("COMPLETE", "n_trials_complete"), ("PRUNED", "n_trials_pruned"), ("FAIL", "n_trials_failed")):
        counts[state] = int(sweep.metrics.get(metric, 0))
    return counts


def _best_trial_html(sweep: SweepRecord) -> str:
    best = sweep.best_trial or {}
    value = best.get("value", sweep.metrics.get("best_value"))
    params = best.get("params") or {
        key.removeprefix("best."): value for key, value in sweep.params.items() if key.startswith("best.")
    }
    if value is None and not params:
        return missing_html("No best trial yet (no trial completed).")
    row: dict[str, Any] = {
        "Best trial": best.get("number"),
        sweep.objective or "objective": f"{value:.4f}" if isinstance(value, int | float) else value,
        **{f"{key}": _param_text(val) for key, val in sorted(params.items())},
        "MLflow run": best.get("mlflow_run_id"),
    }
    return table_html([row], {})


def _param_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _history_figure(sweep: SweepRecord) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    complete = sorted(
        (t for t in sweep.trials if t.get("state") == "COMPLETE" and _number(t.get("value")) is not None),
        key=lambda t: int(t.get("number", 0)),
    )
    fig.add_trace(_trial_scatter(complete, "completed trial", "COMPLETE", "value"))
    pruned = [t for t in sweep.trials if t.get("state") == "PRUNED" and _last_intermediate(t) is not None]
    if pruned:
        fig.add_trace(_trial_scatter(pruned, "pruned trial (last reported value)", "PRUNED", "last"))
    if complete:
        fig.add_trace(_best_so_far(complete, sweep.direction != "minimize"))
    objective = sweep.objective or "objective"
    fig.update_layout(
        title={"text": f"Optimisation history of study {esc(sweep.study)}"},
        xaxis={"title": {"text": "trial number"}},
        yaxis={"title": {"text": esc(objective)}},
        legend={"orientation": "h", "y": -0.2, "yanchor": "top"},
    )
    return figure_html(fig, height=420)


def _trial_scatter(trials: Sequence[Mapping[str, Any]], name: str, state: str, source: str) -> go.Scatter:
    import plotly.graph_objects as go

    values = [_number(t.get("value")) if source == "value" else _last_intermediate(t) for t in trials]
    return go.Scatter(
        x=[int(t.get("number", 0)) for t in trials],
        y=rounded(values),
        mode="markers",
        name=name,
        marker={"color": TRIAL_COLOURS[state], "size": 8, "symbol": "circle" if state == "COMPLETE" else "x"},
        hovertemplate="trial %{x}: %{y:.4f}<extra>" + name + "</extra>",
    )


def _best_so_far(trials: Sequence[Mapping[str, Any]], maximize: bool) -> go.Scatter:
    import plotly.graph_objects as go

    best: list[float] = []
    for trial in trials:
        value = float(trial["value"])
        best.append(value if not best else (max if maximize else min)(best[-1], value))
    return go.Scatter(
        x=[int(t.get("number", 0)) for t in trials],
        y=rounded(best),
        mode="lines",
        line={"shape": "hv", "color": PALETTE[3]},
        name="best so far",
    )


def _importance_html(sweep: SweepRecord) -> str:
    import plotly.graph_objects as go

    importances = {
        str(key): float(value)
        for key, value in (sweep.importances or {}).items()
        if _number(value) is not None
    }
    if not importances:
        return '<p class="note">No parameter importances (too few completed trials, or not logged).</p>'
    ordered = sorted(importances.items(), key=lambda item: item[1])
    fig = go.Figure(
        go.Bar(
            x=rounded(value for _, value in ordered),
            y=[esc(name) for name, _ in ordered],
            orientation="h",
            marker_color=PALETTE[0],
            name="importance",
        )
    )
    fig.update_layout(
        title={"text": f"Parameter importances of study {esc(sweep.study)} (Optuna, fANOVA)"},
        xaxis={"title": {"text": "importance (share of objective variance)"}},
        yaxis={"title": {"text": "parameter"}},
    )
    return figure_html(fig, height=160 + 36 * len(ordered))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _last_intermediate(trial: Mapping[str, Any]) -> float | None:
    intermediate = trial.get("intermediate")
    if not isinstance(intermediate, Mapping) or not intermediate:
        return None
    steps = sorted(intermediate, key=lambda step: float(step) if _is_number_text(step) else math.inf)
    return _number(intermediate[steps[-1]])


def _is_number_text(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------


def methods_section() -> Section:
    """How every interval and test on the page is computed, and the rules for the verdicts."""
    body = f"""<ul>
<li><strong>Repeated seeds.</strong> <code>harness run --seeds K</code> (or
<code>train.seeds</code>) trains each experiment with seeds S … S+K−1, one MLflow run each; the
page uses, per experiment and seed, the most recent finished run.</li>
<li><strong>Mean ± sd, 95% interval over seeds.</strong> Sample standard deviation; the
interval is mean ± t<sub>0.975, K−1</sub> · sd / √K (Student-t).</li>
<li><strong>One seed.</strong> There is no spread across seeds to estimate, so accuracy and
balanced accuracy get a 95% percentile bootstrap interval over the validation images
({BOOTSTRAP_RESAMPLES:,} resamples; marked “img”). This measures how much the score depends on
which images were held out, not training noise.</li>
<li><strong>Per-class recall.</strong> One seed: Wilson score interval on the class's correct /
total validation images. Several seeds: Student-t interval over the seeds' recalls.</li>
<li><strong>Differences between two experiments.</strong> Both are scored on the same
validation images. Each image's score is the share of an experiment's seeds that classified it
correctly; the interval is a paired percentile bootstrap ({BOOTSTRAP_RESAMPLES:,} resamples) that
draws images with replacement, ignoring their classes as McNemar's test does, and recomputes
A − B in accuracy and in balanced accuracy on the same draw for both.</li>
<li><strong>McNemar's exact test.</strong> On one run of A and one of B with the same seed
(pairs by seed order when none match): b = images only A got right, c = images only B got right;
p is the two-sided binomial test of b out of b + c at ½. With several seeds the page lists each
pair and quotes the largest p, the most conservative.</li>
<li><strong>Verdicts</strong> read the interval of the claim's metric (accuracy, or balanced
accuracy for the sampling claim) and require McNemar's test to confirm it:
{esc(RULES['better'])} {esc(RULES['no_better'])} The two can disagree: balanced accuracy
averages per class, so its interval leaves out how the images fall into classes, while McNemar's
test counts plain right and wrong answers.</li>
</ul>"""
    return Section("methods", body)


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.1f} %"


def _gap(ours: float, paper: float | None) -> str | None:
    if paper is None or math.isnan(ours):
        return None
    return f"{100 * (ours - paper):+.1f}"
