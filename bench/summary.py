"""Print every ratio in reports/bench.json with its target and whether it is met.

The benchmarks write the figures; this only reads them, so it can be rerun at any time. A row
whose key is missing was not measured (its benchmark has not run, e.g. `make bench-e2e`).
Each section's date and load average come from the report's details: figures measured on a
busy machine say so.

    .venv/bin/python bench/summary.py [--report reports/bench.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common import REPORT


@dataclass(frozen=True)
class Row:
    """One figure: its key, how to show it, and its target (None: shown for context only)."""

    item: str
    label: str
    key: str
    unit: str  # "%", "x", "s"
    target: float | None = None
    at_most: bool = False  # the target is a ceiling (overheads, times), not a floor
    section: str = ""  # the details section holding its date


ROWS = (
    Row("1a", "harness overhead vs a bare PyTorch loop", "train_overhead", "%", 0.05, True, "overhead"),
    Row("1b", "speed-up vs per-item PIL Dataset + DataLoader(2), suite images", "train_pipeline_suite_speedup", "x", 3.0, False, "pipeline"),
    Row("1b", "speed-up vs per-item PIL Dataset + DataLoader(2), 400-700 px images", "train_pipeline_large_speedup", "x", 3.0, False, "pipeline"),
    Row("1b", "decoding's part of it (1 + decoding alone / harness epoch), suite images", "train_pipeline_suite_ceiling", "x", section="pipeline"),
    Row("1b", "decoding's part of it, 400-700 px images", "train_pipeline_large_ceiling", "x", section="pipeline"),
    Row("2", "compute ceiling fp32, GFLOP/s (best GEMM shape and threads)", "ceiling_fp32_gflop_s", "g", section="efficiency"),
    Row("2", "theoretical fp32 (cores x clock x FLOPs/cycle from the flags)", "theoretical_fp32_gflop_s", "g", section="efficiency"),
    Row("2", "compute ceiling bf16, GFLOP/s", "ceiling_bf16_gflop_s", "g", section="efficiency"),
    Row("2", "theoretical bf16", "theoretical_bf16_gflop_s", "g", section="efficiency"),
    Row("2", "residual CNN training, fraction of the ceiling (auto precision)", "efficiency_residual_cnn", "%", 0.40, False, "efficiency"),
    Row("2", "plain CNN training fp32, of the fp32 ceiling", "train_cnn_fp32_peak_fraction", "%", section="efficiency"),
    Row("2", "plain CNN training bf16, of the bf16 ceiling", "train_cnn_bf16_peak_fraction", "%", section="efficiency"),
    Row("2", "residual CNN training fp32", "train_residual_cnn_fp32_peak_fraction", "%", section="efficiency"),
    Row("2", "residual CNN training bf16", "train_residual_cnn_bf16_peak_fraction", "%", section="efficiency"),
    Row("2", "ResNeXt training fp32", "train_resnext_fp32_peak_fraction", "%", section="efficiency"),
    Row("2", "ResNeXt training bf16", "train_resnext_bf16_peak_fraction", "%", section="efficiency"),
    Row("2", "residual CNN training fp32, images/s", "train_residual_cnn_fp32_img_s", "n", section="efficiency"),
    Row("2", "residual CNN training bf16, images/s", "train_residual_cnn_bf16_img_s", "n", section="efficiency"),
    Row("2", "precision auto is the faster one for every model (1 = yes)", "auto_precision_is_fastest", "n", 1.0, False, "efficiency"),
    Row("2", "residual CNN inference (eval batch), auto precision", "efficiency_eval_residual_cnn", "%", section="efficiency"),
    Row("3", "tracking work in a run ten times the suite's, all in (metrics, artifacts, model, checkpoints, system metrics)", "tracking_overhead_all_in", "%", 0.02, True, "tracking"),
    Row("3", "its parts: metrics, artifacts and model at the default checkpoint interval", "tracking_overhead", "%", section="tracking"),
    Row("3", "its parts: checkpoints at the automatic interval (one save a minute at most)", "tracking_checkpoint_share", "%", section="tracking"),
    Row("3", "system metrics monitor, share of a run", "system_metrics_cost", "%", 0.01, True, "tracking"),
    Row("3", "one checkpoint, saved and uploaded (s)", "tracking_checkpoint_save_s", "n", section="tracking"),
    Row("3", "the suite's seconds-long run with a checkpoint every epoch", "tracking_overhead_suite", "%", section="tracking"),
    Row("3", "tracking seconds a run, checkpoints aside (store calls, artifacts, model)", "tracking_run_s", "n", section="tracking"),
    Row("3", "side by side, wall: that tracked run over untracked build + fit", "tracking_overhead_side_by_side", "%", section="tracking"),
    Row("3", "side by side, process CPU seconds", "tracking_overhead_cpu", "%", section="tracking"),
    Row("3", "spread of identical untracked runs (wall), (max - min) / median", "tracking_noise_wall", "%", section="tracking"),
    Row("4", "preprocessing vs plain PIL loop, fer2013 48 px", "preprocess_fer2013_ratio", "x", 1.8, False, "preprocess"),
    Row("4", "its ceiling (decoding alone), fer2013 48 px", "preprocess_fer2013_ceiling", "x", section="preprocess"),
    Row("4", "its measured ceiling (the decoder split over the cores, nothing sent back), fer2013", "preprocess_fer2013_parallel_ceiling", "x", section="preprocess"),
    Row("4", "how far the cores scale that decoder (split / one process), fer2013", "preprocess_fer2013_core_scaling", "x", section="preprocess"),
    Row("4", "preprocessing vs plain PIL loop, 400-700 px", "preprocess_affectnet_ratio", "x", 4.0, False, "preprocess"),
    Row("5", "make reproduce after set-up (make bench-e2e)", "e2e_total_s", "s", 900.0, True, "e2e"),
    Row("5", "make reproduce --profile smoke", "e2e_smoke_total_s", "s", section="e2e_smoke"),
    Row("6", "harness --help wall time", "startup_help_s", "s", 1.0, True, "startup"),
    Row("8", "served model: errors in 500 requests at concurrency 4", "deploy_serve_errors", "n", 0.0, True, "deploy"),
    Row("8", "served model: p50 latency, one face a request (ms)", "deploy_serve_p50_ms", "n", section="deploy"),
    Row("8", "served model: p99 latency (ms)", "deploy_serve_p99_ms", "n", section="deploy"),
    Row("8", "served model: images/s", "deploy_serve_images_per_s", "n", section="deploy"),
    Row("9", "torch batch-1 latency (ms)", "deploy_torch_batch1_ms", "n", section="deploy"),
    Row("9", "onnxruntime batch-1 latency (ms)", "deploy_onnxruntime_batch1_ms", "n", section="deploy"),
    Row("9", "torch batch-256 images/s", "deploy_torch_batch256_img_s", "n", section="deploy"),
    Row("9", "onnxruntime batch-256 images/s", "deploy_onnxruntime_batch256_img_s", "n", section="deploy"),
    Row("7", "CUDA: harness overhead vs a bare loop", "train_overhead_cuda", "%", 0.05, True, "overhead_cuda"),
    Row("7", "CUDA: residual CNN, fraction of the ceiling", "efficiency_residual_cnn_cuda", "%", 0.40, False, "efficiency_cuda"),
    Row("7", "CUDA: tracking work, all in", "tracking_overhead_all_in_cuda", "%", 0.02, True, "tracking_cuda"),
    Row("-", "sweep pruning (make bench-sweep): median pruner, epochs saved", "sweep_pruning.median.epochs_saved_fraction", "%", 0.5, False, "sweep_pruning"),
)


def show(value: float, unit: str) -> str:
    """A figure in its unit."""
    if unit == "%":
        return f"{value:.1%}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "g":
        return f"{value:,.0f}"
    if unit == "n":
        return f"{value:g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"


def target_text(row: Row) -> str:
    """The target with its direction, or a dash."""
    if row.target is None:
        return "-"
    return ("<= " if row.at_most else ">= ") + show(row.target, row.unit)


def verdict(row: Row, value: float) -> str:
    """yes / NO against the target, or a dash for context rows."""
    if row.target is None:
        return "-"
    ok = value <= row.target if row.at_most else value >= row.target
    return "yes" if ok else "NO"


BEGIN, END = "<!-- figures: generated by bench/summary.py --markdown; do not edit -->", "<!-- figures: end -->"


def markdown(data: dict) -> str:
    """Every measured figure as a Markdown table, with where and when each section ran."""
    details = data.get("details", {})
    lines = ["| item | figure | value | target | met | measured |", "|---|---|---|---|---|---|"]
    for row in ROWS:
        if row.key not in data:
            continue
        section = details.get(row.section, {})
        when = section.get("date", "?")[:16].replace("T", " ")
        quick = " (quick)" if section.get("quick") else ""
        lines.append(f"| {row.item} | {row.label} | {show(data[row.key], row.unit)} | {target_text(row)} | "
                     f"{verdict(row, data[row.key])} | {row.section} {when}{quick} |")  # fmt: skip
    lines += ["", "| section | date (UTC) | commit | CPU | cores | flags | load at start | command |", "|---|---|---|---|---|---|---|---|"]
    for name, section in sorted(details.items()):
        if isinstance(section, dict) and "date" in section:
            load = section.get("loadavg_at_start") or ["?"]
            lines.append(f"| {name} | {section['date'][:16].replace('T', ' ')} | {section.get('commit', '?')} | "
                         f"{section.get('cpu', '?')} | {section.get('nproc', '?')} | {' '.join(section.get('cpu_flags', [])) or '?'} | "
                         f"{load[0]} | `{section.get('command', '?')}` |")  # fmt: skip
    gpu = details.get("gpu", {})
    lines += ["", f"GPU: {gpu.get('statement', 'no GPU check has run (bench/gpu_check.sh)')}"]
    return "\n".join(lines)


def render_into(page: Path, data: dict) -> str:
    """`page` with its generated block replaced by the figures of `data`."""
    text = page.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{page}: no generated block ({BEGIN} ... {END})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{markdown(data)}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--markdown", type=Path, default=None, help="rewrite this page's generated block (bench/RESULTS.md)")
    parser.add_argument("--check", action="store_true", help="with --markdown: exit 1 if the page is out of date")
    args = parser.parse_args(argv)
    if not args.report.exists():
        print(f"{args.report}: no benchmark report yet (run make bench)", file=sys.stderr)
        return 1
    data = json.loads(args.report.read_text())
    if args.markdown is not None:
        rendered = render_into(args.markdown, data)
        if args.check:
            return 0 if rendered == args.markdown.read_text() else 1
        args.markdown.write_text(rendered)
        return 0
    details = data.get("details", {})
    width = max(len(r.label) for r in ROWS)
    header = f"{'item':<4} {'figure':<{width}} {'value':>9} {'target':>10} {'met':>4}  measured"
    print(header)
    print("-" * len(header))
    for row in ROWS:
        if row.key not in data:
            if row.target is not None and row.item != "7":
                print(f"{row.item:<4} {row.label:<{width}} {'-':>9} {target_text(row):>10} {'-':>4}  not measured")
            continue
        value = data[row.key]
        section = details.get(row.section, {})
        when = section.get("date", "?")[:16].replace("T", " ")
        load = section.get("loadavg_at_start")
        note = f"{when}" + (f", load {load[0]:.1f}" if load else "") + (" (quick)" if section.get("quick") else "")
        print(f"{row.item:<4} {row.label:<{width}} {show(value, row.unit):>9} {target_text(row):>10} {verdict(row, value):>4}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
