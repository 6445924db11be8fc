"""Deployment benchmarks: the served model under load, and torch against onnxruntime.

*Serving*: a model trained here (the study's `cnn_baseline`, one short epoch on the embedded
generated faces) is registered, served by `mlflow models serve --env-manager local` on
127.0.0.1, and sent a bounded loop of requests (500 by default, each one face as base64 JPEG) by
4 concurrent clients: errors, p50 / p99 latency and images/s. *ONNX*: the same network through
torch and through onnxruntime (`harness export`'s file), batch-1 latency and batch-256
throughput, interleaved in one run.

    .venv/bin/python bench/deploy.py            # writes reports/bench.json (deploy_* keys)
    .venv/bin/python bench/deploy.py --quick    # 40 requests, small batches; prints only
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import (
    REPO,
    REPORT,
    add_out_argument,
    command_line,
    machine,
    merge_report,
    time_variants,
)

from harness.cli.main import main as harness

EXPERIMENT = "cnn_baseline"


def _project(tmp: Path) -> tuple[list[str], Path]:
    """A trained, registered model in a store under `tmp`; the common CLI flags, and its faces."""
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    common = ["--config", str(REPO / "experiments.yaml"), "--tracking-uri", uri]
    data = tmp / "faces"
    assert harness(["data", "synth", "--config", common[1], "--out", str(data), "--scale", "0.002", "--val-per-class", "4"]) == 0
    os.environ["HARNESS_SYSTEM_METRICS"] = "0"
    run = ["run", EXPERIMENT, *common, "--data", f"affectnet:{data}", "--epochs", "1", "--cache-dir", str(tmp / "cache")]
    assert harness(run) == 0
    assert harness(["register", EXPERIMENT, "--name", "bench", "--alias", "champion", *common]) == 0
    return common, data


def _faces(data: Path, n: int) -> list[bytes]:
    """`n` face crops of the generated validation split, as JPEG bytes."""
    from PIL import Image

    files = sorted((data / "Manually_Annotated_Images").rglob("*.jpg"))[:n] or sorted(data.rglob("*.jpg"))[:n]
    out = []
    for path in files:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize((96, 96)).save(buffer, format="JPEG")
        out.append(buffer.getvalue())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: bytes) -> float:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        json.loads(response.read())
    return time.perf_counter() - started


def _serve(uri: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/bench@champion", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                return server
        except OSError:
            if server.poll() is not None:
                raise RuntimeError("mlflow models serve exited before answering") from None
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("mlflow models serve did not answer within 180 s")


def measure_serving(uri: str, faces: list[bytes], requests: int, concurrency: int) -> tuple[dict, dict]:
    """`requests` one-face requests from `concurrency` clients against a local server."""
    port = _free_port()
    server = _serve(uri, port)
    bodies = [json.dumps({"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(f).decode()]]}}).encode()
              for f in faces]  # fmt: skip
    latencies: list[float] = []
    errors: list[str] = []

    def one(i: int) -> None:
        try:
            latencies.append(_post(port, bodies[i % len(bodies)]))
        except Exception as exc:  # noqa: BLE001 - every failure is a counted error
            errors.append(type(exc).__name__)

    try:
        _post(port, bodies[0])  # warm-up: the model's first call
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(requests)))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = sorted(1e3 * s for s in latencies)
    keys = {"deploy_serve_requests": requests, "deploy_serve_concurrency": concurrency,
            "deploy_serve_errors": len(errors), "deploy_serve_p50_ms": round(statistics.median(ms), 1),
            "deploy_serve_p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1),
            "deploy_serve_images_per_s": round(len(latencies) / wall, 1)}  # fmt: skip
    return keys, {"wall_s": round(wall, 2), "error_kinds": sorted(set(errors))}


def measure_onnx(uri: str, tmp: Path, batch: int, repeats: int) -> tuple[dict, dict]:
    """Batch-1 latency and batch-`batch` throughput, torch and onnxruntime side by side."""
    import torch

    from harness.deploy.models import loaded_model
    from harness.tracking.write import connect

    tracker = connect(uri, "fer-study")
    with loaded_model(tracker, "models:/bench@champion") as torch_model, \
         loaded_model(tracker, "models:/bench@champion", runtime="onnx") as onnx_model:  # fmt: skip
        spec = torch_model.trained.spec
        shape = (spec.data.channels, spec.data.image_size, spec.data.image_size)
        rng = np.random.default_rng(0)
        one, many = (torch.from_numpy(rng.random((n, *shape), dtype=np.float32)) for n in (1, batch))
        models = {"torch": torch_model.model.eval(), "onnxruntime": onnx_model.model}

        def call(model: torch.nn.Module, x: torch.Tensor, times: int) -> None:
            with torch.inference_mode():
                for _ in range(times):
                    model(x)

        variants = {f"{name}_b1": lambda m=m: call(m, one, 50) for name, m in models.items()}
        variants |= {f"{name}_b{batch}": lambda m=m: call(m, many, 3) for name, m in models.items()}
        for run in variants.values():
            run()  # warm-up
        seconds, _ = time_variants(variants, repeats, alternate=True)
    keys = {}
    for name in models:
        keys[f"deploy_{name}_batch1_ms"] = round(1e3 * statistics.median(seconds[f"{name}_b1"]) / 50, 3)
        keys[f"deploy_{name}_batch{batch}_img_s"] = round(3 * batch / statistics.median(seconds[f"{name}_b{batch}"]), 1)
    return keys, {"model": EXPERIMENT, "input": list(shape), "batch": batch, "threads": torch.get_num_threads(),
                  "seconds": {k: [round(s, 4) for s in v] for k, v in seconds.items()}}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 requests, batch 32; prints only (unless --out)")
    add_out_argument(parser, quick=False)
    args = parser.parse_args(argv)
    out = args.out or (None if args.quick else REPORT)
    requests, batch, repeats = (40, 32, 2) if args.quick else (500, 256, 5)
    details = machine(command_line("bench/deploy.py", list(argv) if argv is not None else None))
    with tempfile.TemporaryDirectory(prefix="fer-bench-deploy-") as folder:
        tmp = Path(folder)
        common, data = _project(tmp)
        uri = common[-1]
        serve_keys, details["serving"] = measure_serving(uri, _faces(data, 64), requests, concurrency=4)
        onnx_keys, details["onnx"] = measure_onnx(uri, tmp, batch, repeats)
    keys = serve_keys | onnx_keys
    for key, value in keys.items():
        print(f"   {key:<36} {value}")
    if out is not None:
        merge_report(out, keys, "deploy", details)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
