"""Accuracy against training compute: "better" means better at the same TFLOP.

Every finished training run is placed by its training compute (the harness's own count, logged as
`train_tflop`) and its validation accuracy; the Pareto front joins the runs no other run beats
with less compute. A run logged before compute was counted is counted after the fact from its
spec.yaml (the same counter on the same network, times the images its epochs drew), and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.models.build import build_network
from harness.report.html import (
    Section,
    esc,
    figure_html,
    missing_html,
    percent_text,
    rounded,
    source_line,
    table_html,
)
from harness.spec.schema import ExperimentSpec
from harness.tracking.read import Results, RunRecord
from harness.train.flops import count_flops

LOGGED, COUNTED, UNKNOWN = "logged", "counted from spec.yaml", "uncounted"
MARKERS = {LOGGED: "circle", COUNTED: "diamond-open"}


@dataclass(frozen=True)
class Spent:
    """One run's compute and score, and where its compute figure comes from."""

    run: RunRecord
    train_tflop: float | None
    source: str  # LOGGED | COUNTED | UNKNOWN

    @property
    def accuracy(self) -> float | None:
        return self.run.metric("final_val_accuracy")


def compute_section(results: Results) -> Section:
    """The accuracy-compute chart with its Pareto front, and every run's compute in a table."""
    runs = [run for group in results.seed_runs.values() for run in group]
    if not runs:
        return Section("compute", missing_html("No finished training runs to place."))
    spent = [spent_by(run) for run in runs]
    placed = [s for s in spent if s.train_tflop is not None and s.accuracy is not None]
    note = (
        "<p>Training compute is the harness's own count: forward + backward FLOPs per training "
        "image (PyTorch's flop counter on the run's network) times the images its epochs drew. "
        "It is the same on every machine, where minutes are not; the time and the machine are in "
        "the table. Evaluation compute is counted apart and is not part of a training budget. The "
        "line joins the runs that no run beats with less compute (the Pareto front).</p>"
    )
    body = [source_line(results, "training compute and final-epoch accuracy"), note]
    body.append(_figure(placed) if placed else missing_html("No run has a compute figure."))
    body.append(table_html([_row(s) for s in spent], {"Val. accuracy": percent_text}))
    return Section("compute", "\n".join(body))


def spent_by(run: RunRecord) -> Spent:
    """A run's training compute: logged, else counted from its spec, else unknown."""
    logged = run.metric("train_tflop")
    if logged is not None:
        return Spent(run, logged, LOGGED)
    counted = _counted_after(run)
    return Spent(run, counted, COUNTED if counted is not None else UNKNOWN)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (compute, accuracy) points no other point beats with no more compute."""
    front: list[tuple[float, float]] = []
    for tflop, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((tflop, accuracy))
    return front


def _counted_after(run: RunRecord) -> float | None:
    artifacts = run.artifacts
    if artifacts is None or artifacts.spec is None or not artifacts.class_counts:
        return None
    try:
        spec = ExperimentSpec.model_validate(artifacts.spec)
        labels = artifacts.class_counts["labels"]
        sampled = sum(int(n) for n in artifacts.class_counts.get("sampled_per_epoch") or [])
        import torch

        with torch.device("meta"):
            net = build_network(spec.model, num_classes=len(labels), data=spec.data)
        flops = count_flops(net, spec.data.channels, spec.data.image_size)
    except Exception:  # noqa: BLE001 - a spec of an older, incompatible harness: not countable
        return None
    epochs = int(run.history["train_loss"].notna().sum()) if "train_loss" in run.history else 0
    return flops.train_tflop(sampled * epochs) if sampled and epochs else None


def _figure(placed: Sequence[Spent]) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for source, symbol in MARKERS.items():
        group = [s for s in placed if s.source == source]
        if group:
            fig.add_trace(go.Scatter(
                x=rounded(s.train_tflop for s in group), y=rounded(s.accuracy for s in group),
                mode="markers", name=f"compute {source}", marker={"symbol": symbol, "size": 10},
                text=[esc(f"{s.run.experiment} (seed {s.run.seed})") for s in group],
                hovertemplate="%{text}<br>%{x:.3g} TFLOP<br>accuracy %{y:.1%}<extra></extra>",
            ))  # fmt: skip
    front = pareto_front([(s.train_tflop, s.accuracy) for s in placed])
    fig.add_trace(go.Scatter(
        x=rounded(p[0] for p in front), y=rounded(p[1] for p in front), mode="lines",
        line={"shape": "hv", "dash": "dot", "color": "#444"}, name="Pareto front",
    ))  # fmt: skip
    fig.update_layout(
        title={"text": "Validation accuracy against training compute"},
        xaxis={"title": {"text": "training compute (TFLOP, log scale)"}, "type": "log"},
        yaxis={"title": {"text": "validation accuracy"}, "tickformat": ".0%"},
    )
    return figure_html(fig, height=480)


def _row(spent: Spent) -> dict[str, Any]:
    run, m = spent.run, spent.run.metrics
    seconds = m.get("train_seconds")
    return {
        "Experiment": run.experiment,
        "Seed": run.seed,
        "Val. accuracy": spent.accuracy,
        "Train TFLOP": f"{spent.train_tflop:.3g}" if spent.train_tflop is not None else None,
        "Compute": spent.source,
        "Eval TFLOP": f"{m['eval_tflop']:.3g}" if "eval_tflop" in m else None,
        "GFLOP/image": f"{m['gflop_per_train_image']:.3g}" if "gflop_per_train_image" in m else None,
        "Train s": f"{seconds:,.0f}" if seconds is not None else None,
        "Images/s": f"{m['train_images_per_second']:,.0f}" if "train_images_per_second" in m else None,
        "GFLOP/s": f"{m['train_gflop_per_s']:,.0f}" if "train_gflop_per_s" in m else None,
        "Machine": _machine(run),
    }


def _machine(run: RunRecord) -> str | None:
    tags = run.tags
    if "harness.cpu" not in tags:
        return None
    gpu = tags.get("harness.gpu")
    cpu = f"{tags['harness.cpu']}, {tags.get('harness.cpu_cores', '?')} cores ({tags.get('harness.cpu_flags') or 'no AVX2'})"
    return f"{gpu}; {cpu}" if gpu else cpu
