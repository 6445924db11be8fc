"""The suite file's JSON Schema and config reference, and errors reported at the user's keys."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.cli.main import main
from harness.core.errors import SpecError
from harness.suite.jsonschema import schema_text, suite_schema
from harness.suite.load import load_suite
from harness.suite.reference import docs_text

REPO = Path(__file__).resolve().parents[1]
SUITE_FILES = ("experiments.yaml", "beyond.yaml")
MODELINE = "# yaml-language-server: $schema=./docs/suite.schema.json"


@pytest.mark.parametrize("name", SUITE_FILES)
def test_shipped_suite_files_validate_against_the_schema_they_name(name: str) -> None:
    text = (REPO / name).read_text(encoding="utf-8")
    assert text.splitlines()[0] == MODELINE
    schema = suite_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(text)))
    assert errors == [], [e.message for e in errors]


def test_committed_schema_and_config_page_are_current() -> None:
    assert (REPO / "docs" / "suite.schema.json").read_text(encoding="utf-8") == schema_text()
    page = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert docs_text(page) == page, "run: harness schema --docs docs/config.md"


def test_schema_rejects_what_the_loader_rejects() -> None:
    doc = yaml.safe_load((REPO / "experiments.yaml").read_text(encoding="utf-8"))
    doc["experiments"]["cnn_baseline"]["train"] = {"epoch": 3}
    doc["experiments"]["cnn_residual"]["model"]["num_block"] = 3
    doc["experiments"]["resnext"]["model"]["widths"] = "wide"
    found = {tuple(e.absolute_path) for e in jsonschema.Draft202012Validator(suite_schema()).iter_errors(doc)}
    assert ("experiments", "cnn_baseline", "train") in found
    assert ("experiments", "cnn_residual", "model") in found
    assert ("experiments", "resnext", "model", "widths") in found


def test_harness_schema_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "schema.json"
    assert main(["schema", "--out", str(out), "--check"]) == 1  # absent: out of date, nothing written
    assert not out.exists()
    assert main(["schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == suite_schema()
    assert main(["schema", "--out", str(out), "--check"]) == 0
    capsys.readouterr()
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "fer-harness suite file"


THREE_ERRORS = textwrap.dedent(
    """
    suite: errors
    defaults:
      model: {name: cnn, widths: [4, 8], dense: 16}
    profiles:
      full:
        experiments:
          b: {train: {epoch: 5}}
    experiments:
      a:
        tags: [one]
      b:
        description: second
        train: {epochs: 1, lr: -1}
    """
)


def test_a_file_with_three_errors_reports_all_three_at_their_paths(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(THREE_ERRORS)
    with pytest.raises(SpecError) as info:
        load_suite(path, profile="full")
    problems = [line.removeprefix(f"{path}: ") for line in info.value.problems]
    assert "experiments.a.description: required, but not given" in problems
    assert any(p.startswith("experiments.b.train.lr: Input should be greater than 0") for p in problems)
    assert "profiles.full.experiments.b.train.epoch: unknown key; did you mean 'epochs'?" in problems
    assert len(problems) == 3, problems


def test_the_cli_prints_every_problem_and_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(THREE_ERRORS.replace("lr: -1", "lr: 0.1"))
    code = main(["run", "--config", str(path), "--data", "bogus:/nowhere", "--epochs", "0"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert all(line.startswith(f"harness: error: {path}: ") for line in lines), lines
    text = "\n".join(lines)
    assert "experiments.a.description: required" in text
    assert "data.source (--data): unknown data source 'bogus'" in text
    assert "train.epochs (--epochs): Input should be greater than or equal to 1" in text


def test_an_unchosen_profile_is_checked_too(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(THREE_ERRORS.replace("  a:\n    tags: [one]\n", "  a:\n    description: first\n").replace("lr: -1", "lr: 0.1"))
    with pytest.raises(SpecError, match=r"profiles\.full\.experiments\.b\.train\.epoch: unknown key"):
        load_suite(path)
