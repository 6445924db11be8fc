"""Fault injection: kill `harness run` anywhere, race two of them, lose the tracking server mid-run.

Each test drives the real CLI in a subprocess on tiny data. `harness.testhooks` pauses the
process at a named point (cache building, between epochs, while logging artifacts) so a signal
lands there every time, not when a timer happens to fire. What must hold afterwards: the rerun
completes; each experiment has exactly one FINISHED run; interrupted runs are KILLED or FAILED,
never left RUNNING; the preprocessing cache is whole or absent, never half-written. A run killed
after a checkpoint continues in the same MLflow run (tests/test_resume.py proves it bit for bit).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
MLFLOW = Path(sys.executable).with_name("mlflow")
# A tracking server that went away must be noticed in seconds, not after MLflow's ~4 minutes of
# retries with backoff (its defaults, right for a briefly overloaded server).
FAST_FAILING_CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its tables made: copying it saves each test ~5 s of migrations."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """The tiny suite's preprocessing cache, built once: only the tests that kill it need it cold."""
    from conftest import tiny_suite_text

    from harness.data.dataset import load_dataset
    from harness.suite.load import load_suite

    folder = tmp_path_factory.mktemp("warm")
    (folder / "experiments.yaml").write_text(tiny_suite_text(tiny_data))
    suite = load_suite(folder / "experiments.yaml")
    load_dataset(suite.experiments["plain"].data, folder, folder / "cache")
    return folder / "cache"


@pytest.fixture
def project(tiny_suite: Path, empty_store: Path) -> Path:
    """The tiny suite's folder, holding an empty tracking store."""
    shutil.copy(empty_store, tiny_suite.parent / "mlflow.db")
    return tiny_suite.parent


def _warm(project: Path, warm_cache: Path) -> None:
    shutil.copytree(warm_cache, project / ".cache" / "harness")


def _runs(uri: str, experiment: str = "tiny") -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def _statuses(uri: str) -> dict[str, list[str]]:
    """Each experiment's run statuses, sorted."""
    out: dict[str, list[str]] = {}
    for run in _runs(uri):
        out.setdefault(run.info.run_name, []).append(run.info.status)
    return {name: sorted(s) for name, s in out.items()}


def _start(args: list[str], log: Path, pause_at: str | None = None, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
    """`harness ARGS` in a subprocess, stderr to `log` (a file: orphaned workers cannot hang a pipe)."""
    marker = log.with_suffix(".paused")
    full_env = {**os.environ, **(env or {})}
    if pause_at:
        full_env |= {"HARNESS_TEST_PAUSE_AT": pause_at, "HARNESS_TEST_PAUSE_FILE": str(marker)}
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", *args], stdout=subprocess.DEVNULL, stderr=err, env=full_env,
            # A shell running pytest in the background ignores SIGINT, and children inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    return proc, marker


def _wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"harness exited ({proc.returncode}) before the pause point:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no pause point within {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)


def _cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.npz")) if cache.exists() else []


def _assert_cache_whole_or_absent(cache: Path) -> None:
    from harness.data.cache import _load

    for npz in _cache_files(cache):
        assert _load(npz) is not None, f"{npz} is half-written or damaged"


# SIGKILL between epochs is the mid-suite test below.
KILLS = [
    ("preprocessing", signal.SIGKILL),
    ("artifacts", signal.SIGKILL),
    ("preprocessing", signal.SIGTERM),
    ("training", signal.SIGINT),
    ("artifacts", signal.SIGTERM),
]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "sig"), KILLS, ids=[f"{p}-{s.name}" for p, s in KILLS])
def test_killed_run_resumes_with_exactly_one_finished_run(
    tiny_suite: Path, project: Path, warm_cache: Path, point: str, sig: signal.Signals
) -> None:
    uri, cache = _uri(project), project / ".cache" / "harness"
    if point != "preprocessing":
        _warm(project, warm_cache)
    args = ["run", "plain", "--config", str(tiny_suite), "--tracking-uri", uri]
    log = project / "first.log"
    proc, marker = _start(args, log, pause_at=point)
    _wait_for(marker, proc, log)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    err = log.read_text()

    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 130 and "interrupted" in err and "Traceback" not in err, err
    _assert_cache_whole_or_absent(cache)
    expected_before = {
        "preprocessing": {},  # no run is opened before the data is ready
        "training": {"plain": ["RUNNING" if sig == signal.SIGKILL else "KILLED"]},
        "artifacts": {"plain": ["RUNNING" if sig == signal.SIGKILL else "KILLED"]},
    }[point]
    assert _statuses(uri) == expected_before
    if point == "preprocessing":
        assert _cache_files(cache) == []  # killed before the cache was saved: nothing at its name

    assert main(args) == 0
    statuses = _statuses(uri)
    interrupted = {signal.SIGKILL: "FAILED", signal.SIGTERM: "KILLED", signal.SIGINT: "KILLED"}[sig]
    # No checkpoint was written (the automatic interval waits a minute, and this run lasts
    # seconds), so the run starts afresh beside the interrupted one; resuming from a checkpoint
    # is tests/test_resume.py's.
    assert statuses == {"plain": ["FINISHED"] if point == "preprocessing" else sorted(["FINISHED", interrupted])}
    assert not any("harness.resumed_from" in run.data.tags for run in _runs(uri))
    assert len(_cache_files(cache)) == 1
    _assert_cache_whole_or_absent(cache)


@pytest.mark.slow
def test_kill_9_mid_suite_then_rerun_gives_one_finished_run_per_experiment(
    tiny_suite: Path, project: Path, warm_cache: Path
) -> None:
    """The `make reproduce` case: SIGKILL between epochs of the second experiment, then the same command."""
    _warm(project, warm_cache)
    uri = _uri(project)
    args = ["run", "--config", str(tiny_suite), "--tracking-uri", uri]
    log = project / "first.log"
    proc, marker = _start(args, log, pause_at="training#2")
    _wait_for(marker, proc, log)
    proc.kill()
    proc.wait(timeout=60)
    assert _statuses(uri) == {"plain": ["FINISHED"], "plain_balanced": ["RUNNING"]}

    assert main(args) == 0
    assert _statuses(uri) == {"plain": ["FINISHED"], "plain_balanced": ["FAILED", "FINISHED"], "residual": ["FINISHED"]}
    failed = next(r for r in _runs(uri) if r.info.status == "FAILED")
    assert "process died" in failed.data.tags["harness.failure"]


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "manifest deleted", "garbage manifest"])
def test_damaged_cache_is_detected_on_load_and_rebuilt(tmp_path: Path, damage: str) -> None:
    from test_data import make_tree

    from harness.core.classes import CLASS_SETS
    from harness.data.affectnet import list_affectnet
    from harness.data.cache import Preprocess, load_or_build

    root = make_tree(tmp_path / "d")

    listing = list_affectnet(root, CLASS_SETS["all11"])
    splits, prep, cache = {"train": listing.train, "val": listing.val}, Preprocess(16, 3), tmp_path / "cache"
    first, path, built = load_or_build(cache, splits, prep, workers=1)
    assert built
    data = path.read_bytes()
    manifest = path.with_suffix(".json")
    if damage == "truncated":  # what a crash half-way through a plain (non-atomic) write leaves
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":  # the archive still opens; only the checksum can tell
        path.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    elif damage == "manifest deleted":
        manifest.unlink()
    else:
        manifest.write_text("{not json")
    again, _, rebuilt = load_or_build(cache, splits, prep, workers=1)
    assert rebuilt
    assert (again["train"].x == first["train"].x).all() and path.read_bytes() == data
    assert not load_or_build(cache, splits, prep, workers=1)[2]  # whole again: reused


@pytest.mark.slow
def test_two_runs_at_once_train_each_spec_once(tiny_suite: Path) -> None:
    project = tiny_suite.parent  # no store yet: both processes create it at once
    uri = _uri(project)
    args = ["run", "plain", "plain_balanced", "--config", str(tiny_suite), "--tracking-uri", uri]
    procs = [_start(args, project / f"run{i}.log")[0] for i in range(2)]
    codes = [p.wait(timeout=300) for p in procs]
    logs = [(project / f"run{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    assert all("Traceback" not in log for log in logs)
    assert _statuses(uri) == {"plain": ["FINISHED"], "plain_balanced": ["FINISHED"]}
    # Both processes saw each spec: one trained it, the other skipped it and said why.
    said = Counter(line.strip() for log in logs for line in log.splitlines() if line.strip().startswith(("run ", "skipped")))
    assert sum(n for line, n in said.items() if line.startswith("run ")) == 2
    assert sum(n for line, n in said.items() if line.startswith("skipped")) == 2
    _assert_cache_whole_or_absent(project / ".cache" / "harness")
    assert len(_cache_files(project / ".cache" / "harness")) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_server(folder: Path, port: int) -> subprocess.Popen:
    """A real `mlflow server` on 127.0.0.1 with a sqlite store in `folder`; waits until it answers."""
    import urllib.request

    cmd = [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
           "--artifacts-destination", str(folder / "server-artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    with open(folder / "server.log", "a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=folder)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    pytest.fail(f"mlflow server did not start:\n{(folder / 'server.log').read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_tracking_server_lost_mid_run_keeps_results_and_recover_replays_them(
    tiny_suite: Path, empty_store: Path, warm_cache: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = tiny_suite.parent
    _warm(project, warm_cache)
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _mlflow_server(project, port)
    try:
        args = ["run", "plain", "--config", str(tiny_suite), "--tracking-uri", uri]
        log = project / "run.log"
        proc, marker = _start(args, log, pause_at="training", env=FAST_FAILING_CLIENT)
        _wait_for(marker, proc, log)
        _stop(server)  # the server goes away after epoch 1 was logged
        marker.unlink()  # training goes on
        code = proc.wait(timeout=120)
    finally:
        _stop(server)
    err = log.read_text()
    assert code == 2 and "Traceback" not in err, err
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"harness: error: {uri}: the tracking server went away during run 'plain'")
    assert "training finished and its results are kept in" in message
    folder = Path(message.rsplit("harness recover ", 1)[1])
    assert (folder / "meta.json").is_file() and (folder / "events.jsonl").is_file()
    copy = shutil.copytree(folder, project / "bundle-copy")

    for key, value in FAST_FAILING_CLIENT.items():
        monkeypatch.setenv(key, value)
    # While the server is still down, recover fails and keeps the folder.
    assert main(["recover", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tracking store unavailable" in err and f"{folder} is kept" in err
    assert folder.is_dir()

    server = _mlflow_server(project, port)
    try:
        assert main(["recover", str(folder)]) == 0
        assert "the original run now holds every result" in capsys.readouterr().out
        assert not folder.exists()
        (run,) = _runs(uri)
        assert run.info.status == "FINISHED" and "harness.failure" not in run.data.tags
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2]
        assert "final_val_accuracy" in run.data.metrics
        assert "model/weights.pt" in {a.path for a in client.list_artifacts(run.info.run_id, "model")}
        # The spec now counts as done: rerunning skips it rather than training it twice.
        assert main(args) == 0
        assert len(_runs(uri)) == 1
    finally:
        _stop(server)

    # The same folder replayed into a store without the original run: a new FINISHED run.
    (project / "elsewhere").mkdir()
    shutil.copy(empty_store, project / "elsewhere" / "mlflow.db")
    other = _uri(project / "elsewhere")
    assert main(["recover", str(copy), "--tracking-uri", other]) == 0
    (recreated,) = _runs(other)
    assert recreated.info.status == "FINISHED"
    assert recreated.data.tags["harness.recovered_from"] == run.info.run_id
    assert recreated.data.metrics["final_val_accuracy"] == run.data.metrics["final_val_accuracy"]


def test_unreachable_tracking_server_fails_before_any_data_work(tiny_suite: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in FAST_FAILING_CLIENT.items():
        monkeypatch.setenv(key, value)
    started = time.perf_counter()
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    assert main(["run", "--config", str(tiny_suite), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - started < 30
    assert err.count("\n") == 1 and f"{uri}: tracking store unavailable" in err
    assert not (tiny_suite.parent / ".cache").exists()  # failed before preprocessing


class _Client:
    """An MLflow client stand-in that records each round trip (and can fail from call `fail_at`)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.fail_at = fail_at

    def _call(self, kind: str, steps: list[int]) -> None:
        if self.fail_at is not None and len(self.calls) >= self.fail_at:
            raise ConnectionError("server gone")
        self.calls.append((kind, steps))

    def log_batch(self, run_id: str, metrics=(), params=(), tags=(), synchronous=True) -> None:  # type: ignore[no-untyped-def]
        self._call("batch", sorted({m.step for m in metrics}))

    def log_artifact(self, run_id: str, path: str, folder: str | None = None) -> None:
        self._call("artifact", [])


def test_epoch_metrics_are_batched_per_interval_in_order_and_journaled() -> None:
    from harness.tracking.logger import RunLogger

    client = _Client()
    log = RunLogger(client, "r" * 32, metrics_interval=3600.0)
    for epoch in range(1, 6):
        log.log_epoch({"val_accuracy": 0.1 * epoch}, step=epoch)
    assert client.calls == [("batch", [1])]  # the first epoch at once, the rest held back
    log.log_text("x", "notes.txt")  # any other call sends the held-back epochs first
    assert client.calls == [("batch", [1]), ("batch", [2, 3, 4, 5]), ("artifact", [])]
    assert [e.get("step") for e in log.journal] == [1, 2, 3, 4, 5, None]
    assert all(e["sent"] for e in log.journal)

    every = RunLogger(client := _Client(), "r" * 32, metrics_interval=0.0)
    for epoch in range(1, 4):
        every.log_epoch({"loss": 1.0}, step=epoch)
    assert client.calls == [("batch", [1]), ("batch", [2]), ("batch", [3])]

    # A store lost mid-run: the held-back epochs are kept in the journal, unsent, for recovery.
    lost = RunLogger(client := _Client(fail_at=1), "r" * 32, metrics_interval=3600.0)
    for epoch in range(1, 4):
        lost.log_epoch({"loss": 1.0}, step=epoch)
    lost.flush()
    assert "server gone" in (lost.lost or "") and [e["sent"] for e in lost.journal] == [True, False, False]
