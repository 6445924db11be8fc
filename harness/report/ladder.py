"""The ablation ladder's figure: every rung's score with its interval, and the reference lines.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.report.html import (
    PALETTE,
    esc,
    figure_html,
    rounded,
)
from harness.report.summary import Headline, headline
from harness.spec.claims import ReferenceSpec
from harness.tracking.read import RunRecord

if TYPE_CHECKING:
    import plotly.graph_objects as go


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


LADDER_METRICS: tuple[tuple[str, str], ...] = (
    ("final_val_accuracy", "validation accuracy"),
    ("final_val_balanced_accuracy", "balanced accuracy"),
)


TICK_WIDTH = 22  # characters per line of an x-axis label: seven rungs fit a laptop's width


TICK_LINES = 3


def reference_lines(rungs: Sequence[Rung], references: Sequence[ReferenceSpec]) -> tuple[ReferenceSpec, ...]:
    """The suite's reference lines for the dataset every ladder run is on (none if they differ)."""
    datasets = {run.tags.get("harness.dataset") for rung in rungs for run in rung.seeds}
    return tuple(ref for ref in references if datasets == {ref.dataset})


def ladder_figure(
    steps: Mapping[int, Rung],
    table: Mapping[tuple[str, str], Headline],
    references: Sequence[ReferenceSpec],
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


def _add_reference(fig: go.Figure, reference: ReferenceSpec) -> None:
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


def references_html(rungs: Sequence[Rung], references: Sequence[ReferenceSpec]) -> str:
    """The reference lines drawn on the chart, each with its source."""
    shown = reference_lines(rungs, references)
    if not shown:
        known = sorted({ref.dataset for ref in references})
        where = f" for runs on {', '.join(known)}" if known else ""
        return f'<p class="note">No reference lines: the suite file gives none{esc(where)} for these runs.</p>'
    items = "".join(
        f"<li><strong>{_reference_value(ref)}</strong>: {esc(ref.label)}"
        + (f" <span class=\"note\">({esc(ref.source)})</span>" if ref.source else "")
        + "</li>"
        for ref in shown
    )
    return (
        f"<p>ReferenceSpec lines on the chart ({esc(shown[0].dataset)}; the suite file's "
        f"<code>references:</code>):</p><ul>{items}</ul>"
        '<p class="note">Context, not targets: a published figure on a test split, typically of a '
        "checkpoint selected on that same split, overstates what a held-out validation split "
        "shows.</p>"
    )


def _reference_value(reference: ReferenceSpec) -> str:
    if reference.high > reference.low:
        return f"{100 * reference.low:.0f}–{100 * reference.high:.0f} %"
    return f"{100 * reference.low:.0f} %"
