"""The study's claims, tested: paired differences, McNemar's test and a verdict for each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.analysis.claims import ComparisonResult, compare
from harness.analysis.stats import (
    bracket_text,
    p_text,
    pp_text,
)
from harness.report import html
from harness.report.protocol import synthetic_warning
from harness.spec.claims import ClaimSpec
from harness.tracking.read import Results

VERDICT_CLASS = {
    "reproduced": "ok",
    "not reproduced": "bad",
    "inconclusive": "unclear",
    "missing": "unclear",
}


def claims_section(suite: Results, comparisons: Sequence[ClaimSpec]) -> html.Section:
    """Each claim in words with its interval and p-value, a table, and a forest plot."""
    if not suite.runs:
        return html.Section("claims", html.missing_html("No finished training runs: no claim can be tested."))
    if not comparisons:
        return html.Section("claims", html.missing_html("The suite file states no claims (no `claims:` section)."))
    results = [compare(comparison, suite.seed_runs) for comparison in comparisons]
    warnings = tuple(
        f"claim '{result.comparison.title}' not tested: {result.missing}"
        for result in results
        if result.missing and result.comparison.study_claim
    )
    claims = [result for result in results if result.comparison.study_claim]
    others = [result for result in results if not result.comparison.study_claim]
    parts = [
        html.source_line(suite, "per-image predictions (eval/predictions.csv)"),
        f'<p class="missing">{html.esc(warning)}</p>' if (warning := synthetic_warning(suite)) else "",
        "<p>Each line tests one of the study's claims on the data used here: the difference "
        "A − B in percentage points with a 95% paired bootstrap interval over the validation "
        "images, and McNemar's exact test on the same images. Rules in "
        '<a href="#methods">Methods</a>.</p>',
        '<ul class="claims">' + "".join(_claim_item(result) for result in claims) + "</ul>",
        _forest_plot([result for result in results if result.difference is not None]),
        "<h3>All comparisons</h3>",
        html.table_html([_comparison_row(result) for result in results], {}),
    ]
    if others:
        parts.append(
            '<p class="note">Rows not among the three claims are supporting comparisons; their '
            "expected direction is the paper's numbers or, where the paper is silent, the "
            "claim that balanced sampling helps.</p>"
        )
    return html.Section("claims", "\n".join(part for part in parts if part), warnings)


def _claim_item(result: ComparisonResult) -> str:
    comparison = result.comparison
    css = VERDICT_CLASS[result.verdict]
    head = f"<strong>The study: {html.esc(comparison.claim)}.</strong> "
    if result.difference is None:
        return f'<li class="{css}">{head}Not tested: {html.esc(result.missing)}.</li>'
    return f'<li class="{css}">{head}{html.esc(claim_sentence(result))}</li>'


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
    names = [html.esc(result.comparison.title) for result in results]
    for metric, label, colour, offset in (
        ("accuracy", "Δ accuracy", html.PALETTE[0], -0.15),
        ("balanced_accuracy", "Δ balanced accuracy", html.PALETTE[1], 0.15),
    ):
        intervals = [getattr(result.difference, metric) for result in results]
        fig.add_trace(
            go.Scatter(
                x=html.rounded(100 * i.estimate for i in intervals),
                y=[index + offset for index in range(len(results))],
                mode="markers",
                name=label,
                marker={"color": colour, "size": 9},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": html.rounded(100 * (i.high - i.estimate) for i in intervals),
                    "arrayminus": html.rounded(100 * (i.estimate - i.low) for i in intervals),
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
    return html.figure_html(fig, height=140 + 55 * len(results))
