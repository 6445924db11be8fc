"""Load a suite file (experiments.yaml): resolve every experiment, validate it, return a Suite.

A suite file has these top-level keys::

    suite: fer-study            # the MLflow experiment that holds every run
    description: ...            # one line: what the suite is (the experiment's description)
    defaults: {data, sampler, model, train, augment}
    profiles: {NAME: {suite, data, sampler, model, train, augment,  # optional, e.g. `full` for a GPU
                      experiments: {NAME: {data, sampler, model, train, augment}}}}
    experiments: {NAME: {description, paper_val_accuracy, iteration, tags, extends, ladder,
                         data, sampler, model, train, augment}}
    studies: {NAME: {experiment, objective, direction, sampler, pruner, trials, ...}}  # sweeps
    claims: {NAME: {title, a, b, claim, metric, expect, study_claim, paper}}  # the report's verdicts
    references: [{dataset, low, high, label, colour, source}]  # lines on the ladder chart

An experiment's settings resolve as: defaults <- its `extends` chain <- its own keys <- the chosen
profile (its shared sections, then its per-experiment ones) <- command-line overrides. Every
problem of the file is reported at once (harness.suite.problems), each at the key path where the
user wrote it and, for an unknown name, with the nearest valid one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import SpecError
from harness.core.registry import did_you_mean
from harness.spec.claims import ClaimSpec, ReferenceSpec
from harness.spec.schema import NAME_PATTERN, SECTIONS, ExperimentSpec
from harness.spec.studies import StudySpec
from harness.suite.claims import parse_claims, parse_references
from harness.suite.files import read_yaml
from harness.suite.problems import Problems
from harness.suite.resolve import (
    Where,
    as_mapping,
    check_keys,
    check_sections,
    merge_layers,
    resolve_experiment,
)
from harness.suite.studies import parse_studies
from harness.suite.validate import check_layer, validate_experiment

TOP_LEVEL = ("suite", "description", "defaults", "profiles", "experiments", "studies", "claims", "references")
DEFAULT_NAME = "fer-study"


@dataclass(frozen=True)
class Suite:
    """A validated suite file: its MLflow experiment name, its experiments, studies and claims."""

    path: Path
    name: str
    experiments: dict[str, ExperimentSpec]
    profile: str | None = None
    studies: dict[str, StudySpec] = field(default_factory=dict)
    claims: tuple[ClaimSpec, ...] = ()
    references: tuple[ReferenceSpec, ...] = ()
    description: str = ""  # what the suite is: the MLflow experiment's description

    @property
    def root(self) -> Path:
        """The folder relative data paths resolve against."""
        return self.path.parent

    def select(self, names: Sequence[str]) -> list[ExperimentSpec]:
        """The named experiments (all when `names` is empty), in file order."""
        if not names:
            return list(self.experiments.values())
        valid = list(self.experiments)
        missing = [f"{self.path}: no experiment '{n}'{did_you_mean(n, valid)}" for n in names if n not in valid]
        if missing:
            raise SpecError(problems=missing)
        return [self.experiments[n] for n in names]

    def study(self, name: str) -> StudySpec:
        """The named sweep study."""
        if name not in self.studies:
            raise SpecError(f"{self.path}: no study '{name}'{did_you_mean(name, list(self.studies))}")
        return self.studies[name]


def load_suite(
    path: Path | str,
    profile: str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    override_origins: Mapping[str, str] | None = None,
) -> Suite:
    """Load, resolve and validate a suite file; `overrides` apply last, per section.

    `override_origins` names the command-line flag of each overridden "section.key", so an
    error in an override names the flag. Raises one SpecError holding every problem found.
    """
    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: expected a mapping with keys {', '.join(TOP_LEVEL)}")
    problems = Problems(path)
    doc = check_keys(doc, TOP_LEVEL, "", problems)
    name = _suite_name(doc.get("suite", DEFAULT_NAME), problems, "suite")
    profiles = doc.get("profiles")
    chosen = profiles.get(profile) if isinstance(profiles, dict) and profile else None
    if isinstance(chosen, dict) and "suite" in chosen:  # a profile's runs may have an experiment of their own
        name = _suite_name(chosen["suite"], problems, f"profiles.{profile}.suite")
    defaults = check_sections(as_mapping(doc.get("defaults"), "defaults", problems), "defaults", problems)
    experiments = as_mapping(doc.get("experiments"), "experiments", problems)
    if not experiments:
        problems.add("experiments", "the suite lists no experiments")
    layers = _profile_layers(doc.get("profiles"), profile, experiments, problems)
    if not experiments or layers is None:
        problems.check()  # nothing to resolve
    origins: Where = override_origins or "command line"
    resolved = {}
    for exp_name in experiments:
        raw = resolve_experiment(exp_name, experiments, defaults, problems)
        if raw is None:
            continue
        for layer, where in [*(layers or {}).get(exp_name, []), (overrides or {}, origins)]:
            raw = merge_layers(raw, layer, where)
        spec = validate_experiment(exp_name, raw, problems, f"experiments.{exp_name}")
        if spec is not None:
            resolved[exp_name] = spec
    problems.check()  # studies and claims are checked against valid experiments only
    studies = parse_studies(path, doc.get("studies"), resolved, problems)
    claims = parse_claims(doc.get("claims"), resolved, problems)
    references = parse_references(doc.get("references"), problems)
    problems.check()
    description = doc.get("description") or ""
    if not isinstance(description, str):
        problems.add("description", f"expected a line of text, got {type(description).__name__}")
    problems.check()
    return Suite(path, name, resolved, profile, studies, claims, references, str(description))


def _suite_name(name: Any, problems: Problems, where: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        problems.add(where, "expected a name of letters, digits, '_', '-', '.'")
        return DEFAULT_NAME
    return name


def _profile_layers(
    raw: Any, chosen: str | None, experiments: Mapping[str, Any], problems: Problems
) -> dict[str, list[tuple[dict[str, Any], str]]] | None:
    """Every profile checked; the chosen one's layers per experiment, with their key paths
    (None when the chosen profile does not exist).

    A profile that is not chosen is still read section by section (keys, types, names), so a
    typo in it is found before the day it is used.
    """
    profiles = as_mapping(raw, "profiles", problems)
    chosen_layers: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for pname, body in profiles.items():
        where = f"profiles.{pname}"
        body = check_keys(as_mapping(body, where, problems), (*SECTIONS, "experiments", "suite"), where, problems)
        shared = check_sections({k: v for k, v in body.items() if k not in ("experiments", "suite")}, where, problems)
        per_experiment = {}
        for exp_name, layer in as_mapping(body.get("experiments"), f"{where}.experiments", problems).items():
            at = f"{where}.experiments.{exp_name}"
            if exp_name not in experiments:
                problems.add(at, f"no experiment '{exp_name}'{did_you_mean(str(exp_name), list(experiments))}")
                continue
            per_experiment[exp_name] = (check_sections(as_mapping(layer, at, problems), at, problems), at)
        if pname != chosen:
            for section, values in shared.items():
                check_layer(section, values, where, problems)
            for layer, at in per_experiment.values():
                for section, values in layer.items():
                    check_layer(section, values, at, problems)
            continue
        for exp_name in experiments:
            chosen_layers[exp_name] = [(shared, where)]
            if exp_name in per_experiment:
                chosen_layers[exp_name].append(per_experiment[exp_name])
    if chosen is not None and chosen not in profiles:
        problems.add("", f"no profile '{chosen}'{did_you_mean(chosen, list(profiles))}")
        return None
    return chosen_layers
