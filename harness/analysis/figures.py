"""Plotly figures shared by run artifacts and the report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def confusion_heatmap(
    labels: Sequence[str],
    counts: Sequence[Sequence[int]],
    normalized: Sequence[Sequence[float]],
    title: str,
) -> Any:
    """Row-normalised confusion heatmap: class names on the axes, image counts on hover."""
    import plotly.graph_objects as go

    figure = go.Figure(
        go.Heatmap(
            z=normalized,
            x=list(labels),
            y=list(labels),
            customdata=counts,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            texttemplate="%{z:.2f}",
            textfont={"size": 9},
            colorbar={"title": {"text": "share of row"}, "tickformat": ".0%"},
            hovertemplate="true: %{y}<br>predicted: %{x}<br>%{z:.1%} of the true class"
            "<br>%{customdata} images<extra></extra>",
        )
    )
    figure.update_layout(
        title={"text": title},
        xaxis={"title": {"text": "predicted class"}, "tickangle": -45},
        yaxis={"title": {"text": "true class"}, "autorange": "reversed"},
    )
    return figure


def paper_markers(x: Sequence[str], y: Sequence[float | None], name: str) -> Any:
    """Black diamonds at the accuracies the study reported, laid over our bars."""
    import plotly.graph_objects as go

    return go.Scatter(x=list(x), y=list(y), mode="markers", marker={"symbol": "diamond", "size": 12, "color": "black"}, name=name)
