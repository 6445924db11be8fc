"""A lab's own model, sampler and data source, from its own installed package, named in YAML.

tests/plugin/ is a real package (pyproject.toml with `fer_harness.*` entry points); the test
installs it with pip into a folder of its own and runs `harness` with that folder on the path,
so the registries find the plugin exactly as they would in a lab's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent / "plugin"

SUITE = textwrap.dedent(
    """
    suite: plugged
    defaults:
      data: {source: noise, path: noise-data, image_size: 16, classes: basic7, dedupe: none}
      sampler: {name: first_half, per_epoch: 64}
      model: {name: tiny_mlp, hidden: 8}
      train: {epochs: 1, batch_size: 16, precision: fp32}
    experiments:
      mlp:
        description: a plugin's model on a plugin's data with a plugin's sampler
    """
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = build / "plugin"  # setuptools builds in the source tree: keep tests/ clean
    shutil.copytree(PLUGIN, source)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, cwd=build, timeout=300,
    )  # fmt: skip
    return target


def _harness(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_a_plugin_model_sampler_and_source_train_by_name(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "experiments.yaml").write_text(SUITE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = _harness(installed, tmp_path, "run", "--tracking-uri", uri)
    assert done.returncode == 0, done.stderr
    assert "mlp" in done.stdout and "finished" in done.stdout
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("plugged").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "tiny_mlp" and run.data.params["model.hidden"] == "8"
    assert run.data.params["sampler.name"] == "first_half" and run.data.params["data.source"] == "noise"


@pytest.mark.slow
def test_plugin_names_get_the_same_checks_as_built_in_ones(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "experiments.yaml").write_text(
        SUITE.replace("name: tiny_mlp, hidden: 8", "name: tiny_mpl, hidden: 8").replace("first_half,", "first_hlf,")
    )
    typo = _harness(installed, tmp_path, "list")
    assert typo.returncode == 2
    assert "unknown model 'tiny_mpl'; did you mean 'tiny_mlp'?" in typo.stderr
    assert "unknown sampler 'first_hlf'; did you mean 'first_half'?" in typo.stderr
    (tmp_path / "experiments.yaml").write_text(SUITE.replace("hidden: 8", "hiden: 8"))
    param = _harness(installed, tmp_path, "list")
    assert param.returncode == 2
    assert "model.hiden: unknown key; did you mean 'hidden'?" in param.stderr
    # Without the plugin installed, the same file names the missing model plainly.
    (tmp_path / "experiments.yaml").write_text(SUITE)
    bare = subprocess.run([sys.executable, "-m", "harness", "list"], cwd=tmp_path, capture_output=True, text=True)
    assert bare.returncode == 2 and "unknown model 'tiny_mlp'" in bare.stderr
