"""Log fake training runs straight into MLflow, in docs/design.md's layout, for report tests.

The numbers are random but plausible: a natural sampler favours the big classes (happy,
neutral, non_face), a balanced one spreads recall evenly, accuracy rises over the epochs, and
the final metrics agree with the logged confusion matrix and predictions.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.classes import AFFECTNET_CLASSES

# AffectNet's manually annotated training set, per class in code order, divided by 100 so the
# fake counts keep the real imbalance (happy ~35x contempt) at a size that logs quickly.
AFFECTNET_TRAIN_COUNTS_DIV100: tuple[int, ...] = (
    749,
    1344,
    255,
    141,
    64,
    38,
    249,
    38,
    331,
    116,
    824,
)
VAL_PER_CLASS = 50  # AffectNet's validation set is balanced (500 per class); a tenth of it
EXAMPLES_PER_ROW = 8
IMAGE_SIZE = 32

# Architecture hyper-parameters per model name: fixed, so runs differing only by sampler pair up.
MODEL_PARAMS: dict[str, dict[str, str]] = {
    "cnn": {"width": "32", "depth": "3"},
    "resnet": {"width": "32", "blocks": "2,2,2"},
    "resnext": {"width": "32", "blocks": "2,2,2", "cardinality": "8", "base_width": "4"},
}
MODEL_SIZES: dict[str, int] = {"cnn": 290_000, "resnet": 1_200_000, "resnext": 980_000}


def log_fake_run(
    tracking_uri: str,
    experiment_name: str,
    name: str,
    *,
    model: str = "cnn",
    sampler: str = "natural",
    comparisons: Sequence[str] = ("imbalance",),
    paper_acc: float | None = 0.25,
    epochs: int = 3,
    n_classes: int = 11,
    seed: int = 0,
    status: str = "FINISHED",
    paper_iteration: str = "1",
    start_time_ms: int | None = None,
    omit_artifacts: Collection[str] = (),
    with_weights: bool = False,
    train_seed: int = 0,
    quality: float | None = None,
    tags: Mapping[str, str] | None = None,
    final_metrics: Mapping[str, float] | None = None,
) -> str:
    """Log one fake training run (tags, params, metrics, artifacts) and return its run id.

    `seed` seeds the fake numbers only; `train_seed` is the training seed the run claims
    (tag harness.seed, param train.seed), so repeated seeds of one experiment can be faked;
    `quality` fixes the model's typical recall (random in [0.35, 0.6] by default);
    `tags` are added to (or replace) the run's harness.* tags, e.g. harness.ladder_rung;
    `final_metrics` are logged beside the final ones (e.g. train_tflop);
    `omit_artifacts` names artifact paths to leave out; `with_weights` adds model/weights.pt,
    which needs torch and is off by default to keep tests fast.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = ensure_experiment(client, tracking_uri, experiment_name)
    rng = np.random.default_rng(seed)
    labels = _labels(n_classes)
    counts = _class_counts(labels, sampler)
    y_true, y_pred = _fake_predictions(rng, counts, sampler, quality)
    evaluation = _evaluation(labels, y_true, y_pred)

    params = _params(name, model, sampler, epochs, n_classes, counts, train_seed)
    start = start_time_ms if start_time_ms is not None else int(time.time() * 1000)
    train_seconds = float(epochs * rng.uniform(20.0, 60.0))
    run = client.create_run(
        experiment_id,
        start_time=start,
        run_name=name,
        tags={**_tags(name, params, comparisons, paper_acc, paper_iteration, train_seed), **(tags or {})},
    )
    run_id = run.info.run_id

    final = {
        "final_val_accuracy": evaluation["accuracy"],
        "final_val_balanced_accuracy": evaluation["balanced_accuracy"],
        "final_val_macro_f1": evaluation["macro_f1"],
        "final_train_accuracy": min(0.99, evaluation["accuracy"] + 0.05 * epochs),
        "n_parameters": float(MODEL_SIZES.get(model, 500_000) + int(rng.integers(0, 5_000))),
        "train_seconds": train_seconds,
        "train_images_per_second": sum(counts["sampled_per_epoch"]) * epochs / train_seconds,
        **(final_metrics or {}),
    }
    metrics = [
        Metric(key, value, start + epoch * 1000, epoch)
        for epoch, row in enumerate(_epoch_curves(rng, evaluation, final, epochs), start=1)
        for key, value in row.items()
    ]
    end = start + int(train_seconds * 1000)
    metrics += [Metric(key, float(value), end, 0) for key, value in final.items()]
    client.log_batch(
        run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()], synchronous=True
    )

    with tempfile.TemporaryDirectory(prefix="fake-run-") as tmp:
        root = Path(tmp)
        _write_artifacts(root, rng, labels, params, counts, evaluation, y_true, y_pred)
        if with_weights:
            _write_weights(root / "model" / "weights.pt")
        for path in omit_artifacts:
            (root / path).unlink(missing_ok=True)
        client.log_artifacts(run_id, str(root))

    if status != "RUNNING":
        client.set_terminated(run_id, status=status, end_time=end)
    return run_id


def ensure_experiment(client: Any, tracking_uri: str, experiment_name: str) -> str:
    """Return the experiment's id, creating it with artifacts kept beside a sqlite store."""
    existing = client.get_experiment_by_name(experiment_name)
    if existing is not None:
        return existing.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        # MLflow's default artifact root is ./mlruns under the current directory; tests must not
        # write into the repository, so keep artifacts next to the database file instead.
        db_file = Path(tracking_uri[len("sqlite:///") :])
        location = (db_file.resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(experiment_name, artifact_location=location)


def _labels(n_classes: int) -> list[str]:
    if n_classes <= len(AFFECTNET_CLASSES):
        return list(AFFECTNET_CLASSES[:n_classes])
    return [f"class_{index}" for index in range(n_classes)]


def _class_counts(labels: list[str], sampler: str) -> dict[str, list[int]]:
    base = AFFECTNET_TRAIN_COUNTS_DIV100
    train = [base[index % len(base)] for index in range(len(labels))]
    if sampler == "natural":
        sampled = list(train)
    else:
        # A balanced sampler draws the same total per epoch, spread evenly over the classes.
        sampled = [sum(train) // len(labels)] * len(labels)
    return {
        "train": train,
        "sampled_per_epoch": sampled,
        "validation": [VAL_PER_CLASS] * len(labels),
    }


def _fake_predictions(
    rng: np.random.Generator, counts: dict[str, list[int]], sampler: str, quality: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Validation labels and predictions whose errors lean toward the classes seen most."""
    sampled = np.asarray(counts["sampled_per_epoch"], dtype=float)
    share = sampled / sampled.sum()
    n = len(share)
    quality = rng.uniform(0.35, 0.6) if quality is None else quality
    if sampler == "natural":
        recall = quality * (0.4 + 1.2 * (share / share.max()) ** 0.4)
    else:
        recall = np.full(n, quality * 0.95)
    recall = np.clip(recall + rng.normal(0.0, 0.04, n), 0.02, 0.97)
    y_true = np.repeat(np.arange(n), counts["validation"])
    correct = rng.random(y_true.size) < recall[y_true]
    wrong = rng.choice(n, size=y_true.size, p=share)
    y_pred = np.where(correct, y_true, wrong)
    return y_true, y_pred


def _evaluation(labels: list[str], y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    # Computed by hand in sklearn's output_dict layout: importing sklearn would cost these tests
    # seconds for arithmetic this small.
    n = len(labels)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    correct = np.diag(cm)
    recall = np.divide(correct, support, out=np.zeros(n), where=support > 0)
    precision = np.divide(correct, predicted, out=np.zeros(n), where=predicted > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(n), where=denominator > 0)
    report: dict[str, Any] = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1-score": float(f1[i]),
            "support": float(support[i]),
        }
        for i, label in enumerate(labels)
    }
    accuracy = float(correct.sum() / support.sum())
    weights = support / support.sum()
    report["accuracy"] = accuracy
    report["macro avg"] = {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1-score": float(f1.mean()),
        "support": float(support.sum()),
    }
    report["weighted avg"] = {
        "precision": float(precision @ weights),
        "recall": float(recall @ weights),
        "f1-score": float(f1 @ weights),
        "support": float(support.sum()),
    }
    rows = support[:, None]
    return {
        "confusion": {
            "labels": labels,
            "counts": cm.tolist(),
            "normalized": np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0).tolist(),
        },
        "report": report,
        "accuracy": accuracy,
        "balanced_accuracy": float(recall[support > 0].mean()),
        "macro_f1": float(f1.mean()),
    }


def _epoch_curves(
    rng: np.random.Generator, evaluation: dict[str, Any], final: dict[str, float], epochs: int
) -> list[dict[str, float]]:
    """Per-epoch metrics that climb toward the final values and end exactly on them."""
    rows = []
    for epoch in range(1, epochs + 1):
        progress = epoch / epochs
        jitter = 0.0 if epoch == epochs else float(rng.normal(0.0, 0.01))
        val_acc = evaluation["accuracy"] * (0.6 + 0.4 * progress) + jitter
        train_acc = final["final_train_accuracy"] * (0.5 + 0.5 * progress)
        rows.append(
            {
                "train_loss": 2.4 * (1.1 - 0.7 * progress) + abs(jitter),
                "train_accuracy": train_acc,
                "val_loss": 2.4 * (1.1 - 0.5 * progress) + abs(jitter),
                "val_accuracy": val_acc,
                "val_balanced_accuracy": evaluation["balanced_accuracy"] * (0.6 + 0.4 * progress)
                + jitter,
                "val_macro_f1": evaluation["macro_f1"] * (0.6 + 0.4 * progress) + jitter,
            }
        )
    return rows


def _params(
    name: str,
    model: str,
    sampler: str,
    epochs: int,
    n_classes: int,
    counts: dict[str, list[int]],
    train_seed: int = 0,
) -> dict[str, str]:
    params = {
        "name": name,
        "data.source": "synthetic",
        "data.image_size": str(IMAGE_SIZE),
        "data.classes": "all11" if n_classes == 11 else f"first{n_classes}",
        "sampler.name": sampler,
        "sampler.per_epoch": "none"
        if sampler == "natural"
        else str(sum(counts["sampled_per_epoch"])),
        "sampler.cap": "none",
        "model.name": model,
        "train.epochs": str(epochs),
        "train.batch_size": "64",
        "train.lr": "0.001",
        "train.seed": str(train_seed),
    }
    params.update({f"model.{key}": value for key, value in MODEL_PARAMS.get(model, {}).items()})
    return params


def _tags(
    name: str,
    params: dict[str, str],
    comparisons: Sequence[str],
    paper_acc: float | None,
    paper_iteration: str,
    seed: int,
) -> dict[str, str]:
    spec_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    tags = {
        "harness.experiment": name,
        "harness.spec_hash": spec_hash,
        "harness.run_key": f"{name}-{spec_hash[:8]}",
        "harness.git_commit": "0123456789abcdef0123456789abcdef01234567",
        "harness.paper_iteration": paper_iteration,
        "harness.comparisons": ",".join(comparisons),
        "harness.description": f"fake {params['model.name']} run with {params['sampler.name']} sampling",
        "harness.dataset": "synthetic-affectnet",
        "harness.dataset_digest": hashlib.sha256(b"synthetic-affectnet").hexdigest(),
        "harness.eval_split": "validation",
        "harness.seed": str(seed),
        "harness.kind": "train",
    }
    if paper_acc is not None:
        tags["harness.paper_val_accuracy"] = f"{paper_acc:.4f}"
    return tags


def _write_artifacts(
    root: Path,
    rng: np.random.Generator,
    labels: list[str],
    params: dict[str, str],
    counts: dict[str, list[int]],
    evaluation: dict[str, Any],
    y_true: np.ndarray,
    y_pred: np.ndarray,
) -> None:
    import yaml

    (root / "eval").mkdir()
    (root / "data").mkdir()
    (root / "model").mkdir()
    (root / "spec.yaml").write_text(yaml.safe_dump(_unflatten(params), sort_keys=False))
    confusion = evaluation["confusion"]
    _write_json(root / "eval" / "confusion_matrix.json", confusion)
    csv_rows = [",".join(["true\\pred", *labels])]
    csv_rows += [
        ",".join([label, *map(str, row)])
        for label, row in zip(labels, confusion["counts"], strict=True)
    ]
    (root / "eval" / "confusion_matrix.csv").write_text("\n".join(csv_rows) + "\n")
    # The real file is a plotly page; a stub keeps fake runs small and fast to log.
    (root / "eval" / "confusion_matrix.html").write_text(
        "<!DOCTYPE html><title>confusion matrix</title>\n"
    )
    _write_json(root / "eval" / "classification_report.json", evaluation["report"])
    predictions = ["index,y_true,y_pred"]
    predictions += [f"{i},{t},{p}" for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True))]
    (root / "eval" / "predictions.csv").write_text("\n".join(predictions) + "\n")
    _write_json(root / "data" / "class_counts.json", {"labels": labels, **counts})
    (root / "data" / "examples.png").write_bytes(_examples_png(rng, len(labels)))
    _write_json(root / "data" / "examples.json", {"labels": labels, "per_row": EXAMPLES_PER_ROW})


def _examples_png(rng: np.random.Generator, n_rows: int) -> bytes:
    """A grid of 32x32 grey noise tiles, one row per class, shaped like the real examples.png."""
    from PIL import Image

    pixels = rng.integers(
        0, 256, size=(n_rows * IMAGE_SIZE, EXAMPLES_PER_ROW * IMAGE_SIZE), dtype=np.uint8
    )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_weights(path: Path) -> None:
    import torch

    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, path)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))


def _unflatten(params: dict[str, str]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in params.items():
        node = nested
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def log_fake_sweep(
    tracking_uri: str,
    experiment_name: str,
    study: str,
    *,
    base_experiment: str = "cnn_residual_balanced",
    objective: str = "val_balanced_accuracy",
    direction: str = "maximize",
    n_complete: int = 6,
    n_pruned: int = 3,
    n_failed: int = 1,
    status: str = "FINISHED",
    seed: int = 0,
    start_time_ms: int | None = None,
    importances: bool = True,
    with_children: bool = True,
) -> str:
    """Log one fake `harness sweep` parent run in docs/design.md's "Sweeps" layout; its id.

    Children (harness.kind=trial) are logged for the completed and pruned trials; they carry
    train-like metrics so a report that mistook them for experiment runs would show them.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = ensure_experiment(client, tracking_uri, experiment_name)
    rng = np.random.default_rng(seed)
    start = start_time_ms if start_time_ms is not None else int(time.time() * 1000)
    parent = client.create_run(
        experiment_id,
        start_time=start,
        run_name=f"sweep-{study}",
        tags={
            "harness.kind": "sweep",
            "harness.study": study,
            "harness.experiment": base_experiment,
            "harness.objective": objective,
            "harness.direction": direction,
        },
    )
    parent_id = parent.info.run_id
    states = ["COMPLETE"] * n_complete + ["PRUNED"] * n_pruned + ["FAIL"] * n_failed
    states = [states[i] for i in rng.permutation(len(states))]
    trials = []
    for number, state in enumerate(states):
        params = {"lr": float(10 ** rng.uniform(-4, -2)), "batch_size": int(rng.choice([32, 64, 128]))}
        curve = {str(epoch): float(0.1 + 0.05 * epoch * rng.uniform(0.5, 1.5)) for epoch in range(1, 4)}
        if state == "PRUNED":
            curve = {key: value for key, value in curve.items() if int(key) == 1}
        value = curve["3"] if state == "COMPLETE" else None
        child_id = None
        if with_children and state != "FAIL":
            child = client.create_run(
                experiment_id,
                start_time=start + 1 + number,
                run_name=f"{study}-trial-{number}",
                tags={
                    "mlflow.parentRunId": parent_id,
                    "harness.kind": "trial",
                    "harness.study": study,
                    "harness.trial_number": str(number),
                    "harness.trial_state": state,
                    "harness.experiment": base_experiment,
                },
            )
            child_id = child.info.run_id
            client.log_batch(
                child_id,
                metrics=[Metric("final_val_accuracy", 0.9, start, 0)],
                synchronous=True,
            )
            client.set_terminated(child_id, status="FINISHED")
        trials.append(
            {
                "number": number,
                "state": state,
                "value": value,
                "params": params,
                "intermediate": curve if state != "FAIL" else {},
                "mlflow_run_id": child_id,
                "duration_s": None if state == "FAIL" else float(rng.uniform(5, 50)),
            }
        )
    complete = [trial for trial in trials if trial["state"] == "COMPLETE"]
    best = max(complete, key=lambda trial: trial["value"]) if complete else None
    metrics = [
        Metric("n_trials_complete", float(n_complete), start, 0),
        Metric("n_trials_pruned", float(n_pruned), start, 0),
        Metric("n_trials_failed", float(n_failed), start, 0),
    ]
    params: list[Param] = []
    if best is not None:
        metrics.append(Metric("best_value", best["value"], start, 0))
        params = [Param(f"best.{key}", str(value)) for key, value in best["params"].items()]
    client.log_batch(parent_id, metrics=metrics, params=params, synchronous=True)
    with tempfile.TemporaryDirectory(prefix="fake-sweep-") as tmp:
        root = Path(tmp) / "optuna"
        root.mkdir()
        _write_json(root / "trials.json", trials)
        _write_json(
            root / "importances.json",
            {"lr": 0.8, "batch_size": 0.2} if importances and len(complete) >= 2 else {},
        )
        if best is not None:
            _write_json(
                root / "best_trial.json",
                {key: best[key] for key in ("number", "value", "params", "mlflow_run_id")},
            )
        (root / "history.html").write_text("<!DOCTYPE html><title>optuna history</title>\n")
        client.log_artifacts(parent_id, str(root), "optuna")
    if status != "RUNNING":
        client.set_terminated(parent_id, status=status)
    return parent_id
