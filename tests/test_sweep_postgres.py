"""Scale-out for real: two `harness sweep` processes against PostgreSQL and an MLflow server.

This is README's multi-machine set-up on one machine: Optuna's RDB storage on a PostgreSQL
server, and `mlflow server` with a PostgreSQL backend and an artifact root, which every worker
reaches through MLFLOW_TRACKING_URI. The servers are started here on loopback from Debian's
packages (`.ci/run` installs `postgresql`); under CI=true a missing server fails the test.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import tiny_suite_text
from tests.test_sweep import STUDY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must run this test: .ci/run installs it)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1; yields its URL prefix (user harness, no password)."""
    bindir = _pg_bin()
    if bindir is None:
        _missing("PostgreSQL is not installed (apt-get install postgresql)")
    # initdb refuses to run as root: run the server as the `postgres` user, in a folder it owns.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    base.chmod(0o755)
    data = base / "data"
    if as_user:
        shutil.chown(base, "postgres")
    port = _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, cwd=base)

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "harness", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "start",
        "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off")
    try:
        for db in ("optuna", "mlflow"):
            run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "harness", db)
        yield f"postgresql://harness@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, cwd=base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on loopback with the PostgreSQL backend, as README documents."""
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    log = open(artifacts.parent / "mlflow-server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"{postgres}/mlflow", "--artifacts-destination",
         str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("mlflow server did not start:\n" + Path(log.name).read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_two_workers_on_postgres_record_every_trial_once(
    postgres: str, mlflow_server: str, tmp_path: Path, tiny_data: Path
) -> None:
    import optuna
    from mlflow import MlflowClient

    suite = tmp_path / "experiments.yaml"
    suite.write_text(tiny_suite_text(tiny_data) + textwrap.dedent(STUDY))
    storage = f"{postgres}/optuna"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "harness", "sweep", "--study", "tiny", "--config", str(suite),
           "--trials", "4", "--storage", storage]
    workers = [subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
        assert "database is locked" not in err
        assert "Traceback" not in err

    study = optuna.load_study(study_name="tiny.tiny", storage=storage)
    assert len(study.trials) == 4
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    assert len({t.user_attrs["harness.pid"] for t in study.trials}) == 2  # both processes worked

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("tiny")
    trial_runs = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'", max_results=100)
    parents = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'sweep'", max_results=100)
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    # Once in Optuna, once in MLflow: the same four run ids, no stray or duplicate run.
    assert sorted(r.info.run_id for r in trial_runs) == sorted(t.user_attrs["mlflow_run_id"] for t in study.trials)
    assert sorted(int(r.data.tags["harness.trial_number"]) for r in trial_runs) == [0, 1, 2, 3]
    for run in trial_runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents}
        trial = study.trials[int(run.data.tags["harness.trial_number"])]
        assert run.data.tags["mlflow.parentRunId"] == trial.user_attrs["mlflow_parent_run_id"]
        assert run.data.tags["harness.trial_state"] == trial.state.name
    # The artifacts went through the server to its artifact root.
    listed = {a.path for a in client.list_artifacts(trial_runs[0].info.run_id, "eval")}
    assert "eval/confusion_matrix.json" in listed
