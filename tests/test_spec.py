"""Spec loading and validation: the repository's suite, resolution rules, and every kind of bad spec."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.core.errors import SpecError
from harness.suite.load import load_suite

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {
    "cnn_baseline",
    "cnn_residual",
    "cnn_interleaved",
    "cnn_residual_balanced",
    "cnn_baseline_balanced",
    "resnext",
    "resnext_balanced",
    "cnn_residual_final_relu",
}

BASE = """
suite: test-suite
defaults:
  data: {source: synthetic, path: data/x}
  sampler: {name: natural, per_epoch: 100}
  train: {epochs: 2}
experiments:
  a:
    description: first
    paper_val_accuracy: 0.25
    tags: [imbalance]
    model: {name: residual_cnn, num_blocks: 3}
  b:
    description: second
    extends: a
    sampler: {name: balanced}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_repository_suite_lists_every_study_iteration() -> None:
    suite = load_suite(ROOT / "experiments.yaml")
    assert REQUIRED <= set(suite.experiments)
    assert len(suite.experiments) >= 12
    future = [s for s in suite.experiments.values() if s.iteration == "future"]
    assert {s.model.params.get("norm") for s in future} >= {"batch", "layer"}
    assert any(s.data.whitening == "zca" for s in future)
    assert any(s.model.params.get("activation") == "gtu" for s in future)
    for spec in suite.experiments.values():
        assert spec.description and spec.tags
        assert spec.train.batch_size == 128 and spec.data.image_size == 32 and spec.data.channels == 3
        if "beyond" not in spec.tags or spec.ladder == 0:  # the modern recipe uses AdamW
            assert spec.train.optimizer == "adam"
    assert suite.experiments["cnn_residual"].paper_val_accuracy == pytest.approx(0.297)
    assert suite.experiments["cnn_residual_balanced"].paper_val_accuracy == pytest.approx(0.356)
    assert suite.experiments["cnn_residual_balanced"].sampler.name == "balanced"
    assert suite.experiments["cnn_residual_final_relu"].model.params["final_relu"] is True


def test_repository_profiles_resolve() -> None:
    full = load_suite(ROOT / "experiments.yaml", profile="full")
    assert all(s.train.epochs == 15 for s in full.experiments.values())
    assert full.experiments["cnn_baseline"].sampler.per_epoch == 5000
    smoke = load_suite(ROOT / "experiments.yaml", profile="smoke")
    assert all(s.train.epochs <= 2 for s in smoke.experiments.values())


def test_extends_inherits_sections_but_not_descriptions(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, BASE))
    a, b = suite.experiments["a"], suite.experiments["b"]
    assert b.model == a.model and b.model.params["num_blocks"] == 3
    assert b.sampler.name == "balanced" and b.sampler.per_epoch == 100
    assert b.paper_val_accuracy is None and b.tags == ()
    # defaults for model params are filled in: the resolved spec is complete
    assert "final_relu" in a.model.params


def test_changing_the_model_name_drops_the_parents_params(tmp_path: Path) -> None:
    text = BASE + "  c:\n    description: third\n    extends: a\n    model: {name: cnn}\n"
    c = load_suite(write(tmp_path, text)).experiments["c"]
    assert c.model.name == "cnn" and "num_blocks" not in c.model.params


def test_overrides_and_hash(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    plain = load_suite(path).experiments["a"]
    again = load_suite(path).experiments["a"]
    longer = load_suite(path, overrides={"train": {"epochs": 5}}).experiments["a"]
    assert plain.spec_hash() == again.spec_hash()
    assert longer.train.epochs == 5 and longer.spec_hash() != plain.spec_hash()
    described = load_suite(write(tmp_path, BASE.replace("first", "changed words"))).experiments["a"]
    assert described.spec_hash() == plain.spec_hash()
    params = plain.flat_params()
    assert params["model.num_blocks"] == "3" and params["train.epochs"] == "2"


def test_select_unknown_experiment_suggests(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, BASE))
    with pytest.raises(SpecError, match=r"no experiment 'aa'.*did you mean 'a'"):
        suite.select(["aa"])


BAD = {
    "unknown top-level key": ("experimets: {}", r"experimets: unknown key; did you mean 'experiments'"),
    "unknown section key": (
        BASE.replace("per_epoch: 100", "per_epoh: 100"),
        r"per_epoh: unknown key; did you mean 'per_epoch'",
    ),
    "unknown experiment key": (
        BASE.replace("    description: first", "    descripton: first\n    description: first"),
        r"experiments\.a\.descripton: unknown key; did you mean 'description'",
    ),
    "wrong type": (BASE.replace("epochs: 2", "epochs: ten"), r"train\.epochs: .*integer"),
    "zero epochs": (BASE.replace("epochs: 2", "epochs: 0"), r"train\.epochs"),
    "negative batch": (BASE.replace("epochs: 2", "epochs: 2, batch_size: -1"), r"train\.batch_size"),
    "unknown model": (BASE.replace("name: residual_cnn", "name: residul_cnn"), r"unknown model 'residul_cnn'; did you mean 'residual_cnn'"),
    "unknown model param": (BASE.replace("num_blocks: 3", "num_block: 3"), r"model.*num_block: unknown key; did you mean 'num_blocks'"),
    "bad model param type": (BASE.replace("num_blocks: 3", "num_blocks: many"), r"num_blocks"),
    "bad model param value": (BASE.replace("num_blocks: 3", "num_blocks: -2"), r"num_blocks"),
    "unknown sampler": (BASE.replace("name: balanced", "name: balancd"), r"unknown sampler 'balancd'; did you mean 'balanced'"),
    "unknown source": (BASE.replace("source: synthetic", "source: synthetc"), r"unknown data source 'synthetc'; did you mean 'synthetic'"),
    "unknown optimizer": (BASE.replace("epochs: 2", "epochs: 2, optimizer: adamm"), r"unknown optimizer 'adamm'"),
    "unknown class set": (BASE.replace("path: data/x", "path: data/x, classes: all12"), r"data\.classes"),
    "yaml syntax": ("experiments: {a: [", r"invalid YAML \(line \d+"),
    "duplicate key": (BASE + "  a:\n    description: again\n", r"duplicate key 'a'"),
    "empty experiments": ("suite: x\nexperiments: {}\n", r"lists no experiments"),
    "experiments not a mapping": ("experiments: [a, b]\n", r"experiments: expected a mapping"),
    "document not a mapping": ("- a\n- b\n", r"expected a mapping"),
    "missing extends": (BASE.replace("extends: a", "extends: z"), r"extends: no experiment 'z'"),
    "cyclic extends": (
        BASE.replace("    description: first", "    description: first\n    extends: b"),
        r"cycle a -> b -> a|cycle b -> a -> b",
    ),
    "empty description": (BASE.replace("description: first", "description: ''"), r"description"),
    "paper accuracy out of range": (BASE.replace("0.25", "25"), r"paper_val_accuracy"),
    "section not a mapping": (BASE.replace("  train: {epochs: 2}", "  train: 5"), r"defaults\.train: expected a mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_specs_name_the_file_and_key(tmp_path: Path, case: str) -> None:
    text, pattern = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(SpecError, match=pattern) as info:
        load_suite(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_suite(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match=r"no profile 'fulll'.*did you mean 'full'"):
        load_suite(ROOT / "experiments.yaml", profile="fulll")


def test_seeds_expand_into_runs_without_changing_the_first_runs_identity(tiny_suite: Path) -> None:
    one = load_suite(tiny_suite).experiments["plain"]
    three = load_suite(tiny_suite, overrides={"train": {"seeds": 3, "seed": 5}}).experiments["plain"]
    assert [spec.train.seed for spec in one.seed_specs()] == [0]
    assert [spec.train.seed for spec in three.seed_specs()] == [5, 6, 7]
    hashes = {spec.spec_hash() for spec in three.seed_specs()}
    assert len(hashes) == 3  # each seed is its own run key
    # train.seeds is how many runs, not what one run trains: the seed-0 run keeps its hash.
    with_seeds = load_suite(tiny_suite, overrides={"train": {"seeds": 4}}).experiments["plain"]
    assert with_seeds.seed_specs()[0].spec_hash() == one.spec_hash()
    assert "train.seeds" not in one.flat_params()
