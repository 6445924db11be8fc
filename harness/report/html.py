"""The page's furniture: sections, tables, figures, escaping and number formats.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harness.tracking.read import Results, RunRecord

if TYPE_CHECKING:
    import plotly.graph_objects as go


TRAIN_COLOUR = "#1f77b4"


VAL_COLOUR = "#ff7f0e"


PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


@dataclass(frozen=True)
class Section:
    anchor: str
    body: str
    warnings: tuple[str, ...] = ()


def chance_html(runs: Sequence[RunRecord]) -> str:
    """Chance levels to read the table against: a uniform guess, and always the largest class."""
    counts = next((r.artifacts.class_counts for r in runs if r.artifacts and r.artifacts.class_counts), None)
    if not counts or not counts.get("validation"):
        return ""
    validation = [int(v) for v in counts["validation"]]
    k, total = sum(1 for v in validation if v > 0), sum(validation)
    if not k or not total:
        return ""
    majority = max(validation) / total
    return (
        f"<p>Chance on this validation split: a uniform guess scores {percent_text(1 / k)} "
        f"({k} classes); always answering the largest class scores {percent_text(majority)} accuracy "
        f"and {percent_text(1 / k)} balanced accuracy.</p>"
    )


def table_html(rows: list[dict[str, Any]], formatters: dict[str, Callable[[Any], str]]) -> str:
    import pandas as pd

    frame = pd.DataFrame(rows)
    # pandas escapes every cell (escape=True), so MLflow text cannot inject markup.
    table = frame.to_html(
        index=False, escape=True, na_rep="—", border=0, classes="data", formatters=formatters
    )
    return f'<div class="table-wrap">{table}</div>'


def error_bars(
    values: Sequence[float], bounds: Sequence[tuple[float, float]] | None
) -> dict[str, Any] | None:
    """Asymmetric plotly error bars from (low, high) bounds around `values`."""
    if bounds is None or len(bounds) != len(values):
        return None
    return {
        "type": "data",
        "symmetric": False,
        "array": rounded(max(0.0, high - value) for value, (_, high) in zip(values, bounds, strict=True)),
        "arrayminus": rounded(max(0.0, value - low) for value, (low, _) in zip(values, bounds, strict=True)),
        "thickness": 1.2,
        "width": 3,
    }


def figure_html(fig: go.Figure, *, height: int) -> str:
    """A figure as a <div> plus its plotting call; plotly.js itself is inlined once in <head>."""
    import plotly.io as pio

    # Swapping in the small template on the plain dict skips plotly's per-property validation,
    # which costs more than everything else in the report put together.
    spec = fig.to_dict()
    spec["layout"].update(
        template=_template(), height=height, margin={"l": 70, "r": 30, "t": 80, "b": 70}
    )
    return pio.to_html(
        spec,
        validate=False,
        full_html=False,
        include_plotlyjs=False,
        default_width="100%",
        default_height=f"{height}px",
        config={"displaylogo": False, "responsive": True},
    )


def missing_html(message: str) -> str:
    return f'<p class="missing">{esc(message)}</p>'


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def rounded(values: Iterable[float | None], digits: int = 4) -> list[float | None]:
    """Round for the page: four digits are plenty on screen and keep figure JSON small."""
    return [
        None if value is None or math.isnan(value) else round(float(value), digits)
        for value in values
    ]


def difference_of(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else value - reference


def distinct_text(values: Iterable[str | None]) -> str:
    found = sorted({value for value in values if value})
    return ", ".join(found) if found else "unknown (no runs)"


def timestamp_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def percent_text(value: float) -> str:
    return f"{100 * value:.1f} %"


def points_text(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def count_text(value: float) -> str:
    return f"{int(value):,}"


def duration_text(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {rest:02d}s"


def _template() -> dict[str, Any]:
    """A deliberately small plotly template: the stock one adds ~8 kB of JSON to every figure."""
    return {
        "layout": {
            "font": {
                "family": "system-ui, -apple-system, Segoe UI, sans-serif",
                "size": 12,
                "color": "#222",
            },
            "paper_bgcolor": "white",
            "plot_bgcolor": "white",
            "colorway": list(PALETTE),
            "hovermode": "closest",
            "title": {"x": 0.01, "font": {"size": 15}},
            "xaxis": {
                "gridcolor": "#e6e6e6",
                "linecolor": "#999",
                "zeroline": False,
                "automargin": True,
            },
            "yaxis": {
                "gridcolor": "#e6e6e6",
                "linecolor": "#999",
                "zeroline": False,
                "automargin": True,
            },
        }
    }


def source_line(suite: Results, what: str = "final-epoch metrics") -> str:
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
