"""Plotly figures shared by run artifacts and the report."""

from __future__ import annotations

from typing import Any


def confusion_heatmap(confusion: dict[str, Any], title: str) -> Any:
    """Row-normalised confusion heatmap, with counts in the hover text and class names on the axes."""
    import plotly.graph_objects as go

    labels = confusion["labels"]
    counts = confusion["counts"]
    normalized = confusion["normalized"]
    hover = [
        [f"true {t}<br>predicted {p}<br>{counts[i][j]} images ({normalized[i][j]:.1%} of row)"
         for j, p in enumerate(labels)]
        for i, t in enumerate(labels)
    ]
    figure = go.Figure(
        go.Heatmap(
            z=normalized,
            x=labels,
            y=labels,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            text=[[str(c) for c in row] for row in counts],
            texttemplate="%{text}",
            hovertext=hover,
            hoverinfo="text",
            colorbar={"title": "recall share"},
        )
    )
    figure.update_layout(
        title=title,
        xaxis_title="predicted class",
        yaxis_title="true class",
        yaxis_autorange="reversed",
        width=620,
        height=560,
        margin={"l": 90, "r": 20, "t": 60, "b": 90},
    )
    return figure
