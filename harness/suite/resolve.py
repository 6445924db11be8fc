"""Resolution of an experiment's settings: defaults <- extends chain <- its own keys <- profile <- CLI.

Each layer is merged section by section, and every key remembers where it was set (its
*origin*: the YAML key path, or the command-line flag), so an error in the merged spec is
reported at the key the user wrote, e.g. `profiles.full.experiments.resnext.train.epoch`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.registry import did_you_mean
from harness.spec.schema import EXPERIMENT_META, NAME_PATTERN, SECTIONS, ExperimentSpec
from harness.suite.problems import Problems

# Where a layer comes from: its YAML key path, or (command-line overrides) a label per
# "section.key", e.g. {"train.epochs": "--epochs"}.
Where = str | Mapping[str, str]


@dataclass
class Resolved:
    """An experiment's merged settings and, per key, where its value was written."""

    raw: dict[str, Any] = field(default_factory=dict)
    # "section.key" (or a top-level key such as "description") -> the key path that set it.
    origins: dict[str, str] = field(default_factory=dict)

    def origin(self, loc: Sequence[Any], default: str) -> str:
        """The key path of `loc` (a pydantic error location) where the user wrote it."""
        parts = [str(p) for p in loc]
        if not parts:
            return default
        head = 2 if parts[0] in SECTIONS and len(parts) > 1 else 1
        found = self.origins.get(".".join(parts[:head]))
        if found is None:
            return ".".join([default, *parts])
        return ".".join([found, *parts[head:]])

    def section_origin(self, section: str, default: str) -> str:
        """The key path of a whole section: the one layer that set all of its keys, if one did."""
        layers = {o.rsplit(".", 1)[0] for k, o in self.origins.items() if k.startswith(f"{section}.")}
        return layers.pop() if len(layers) == 1 else f"{default}.{section}"


def _origin_of(where: Where, key_path: str) -> str:
    if isinstance(where, str):
        return f"{where}.{key_path}"
    flag = where.get(key_path)
    return f"{key_path} ({flag})" if flag else f"{key_path} (command line)"


def merge_layers(base: Resolved, layer: Mapping[str, Any], where: Where) -> Resolved:
    """Section-wise merge; a model section naming another model starts from scratch."""
    merged = Resolved(copy.deepcopy(base.raw), dict(base.origins))
    for key, value in layer.items():
        if key in SECTIONS and isinstance(value, Mapping):
            current = merged.raw.get(key) or {}
            if key == "model" and "name" in value and value["name"] != current.get("name"):
                current = {}
                merged.origins = {k: o for k, o in merged.origins.items() if not k.startswith("model.")}
            merged.raw[key] = {**current, **copy.deepcopy(dict(value))}
            for sub in value:
                merged.origins[f"{key}.{sub}"] = _origin_of(where, f"{key}.{sub}")
        else:
            merged.raw[key] = copy.deepcopy(value)
            merged.origins[str(key)] = _origin_of(where, str(key))
    return merged


def as_mapping(value: Any, where: str, problems: Problems) -> dict[str, Any]:
    """`value` if it is a mapping (None: empty); else a problem at `where` and an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(where, f"expected a mapping, got {type(value).__name__}")
        return {}
    return value


def check_keys(value: Mapping[str, Any], valid: Sequence[str], where: str, problems: Problems) -> dict[str, Any]:
    """The keys of `value` that are valid; a problem for each other one."""
    prefix = f"{where}." if where else ""
    for key in value:
        if key not in valid:
            problems.add(f"{prefix}{key}", f"unknown key{did_you_mean(str(key), list(valid))}")
    return {k: v for k, v in value.items() if k in valid}


def check_sections(layer: Mapping[str, Any], where: str, problems: Problems) -> dict[str, Any]:
    """A layer of sections (data, sampler, model, train, augment), each a mapping."""
    layer = check_keys(layer, SECTIONS, where, problems)
    return {section: as_mapping(value, f"{where}.{section}", problems) for section, value in layer.items()}


def resolve_experiment(
    name: Any, experiments: Mapping[str, Any], defaults: Mapping[str, Any], problems: Problems,
    chain: Sequence[str] = (),
) -> Resolved | None:  # fmt: skip
    """Merge defaults, the `extends` chain and the experiment's own keys (None after a problem)."""
    where = f"experiments.{name}"
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        problems.add(where, "names use letters, digits, '_', '-', '.'")
        return None
    if name in chain:
        cycle = [*chain[chain.index(name) :], name]
        problems.add(f"experiments.{chain[-1]}.extends", f"cycle {' -> '.join(cycle)}", once=frozenset(cycle))
        return None
    own = check_keys(as_mapping(experiments[name], where, problems), (*EXPERIMENT_META, *SECTIONS), where, problems)
    own = {k: (as_mapping(v, f"{where}.{k}", problems) if k in SECTIONS else v) for k, v in own.items()}
    parent = own.pop("extends", None)
    if parent is None:
        base = merge_layers(Resolved(), defaults, "defaults")
    elif not isinstance(parent, str) or parent not in experiments:
        problems.add(f"{where}.extends", f"no experiment '{parent}'{did_you_mean(str(parent), list(experiments))}")
        return None
    else:
        inherited = resolve_experiment(parent, experiments, defaults, problems, [*chain, name])
        if inherited is None:
            return None
        # Descriptions, paper numbers and tags belong to one experiment, not its children.
        base = Resolved(
            {k: v for k, v in inherited.raw.items() if k in SECTIONS},
            {k: o for k, o in inherited.origins.items() if k.split(".", 1)[0] in SECTIONS},
        )
    return merge_layers(base, own, where)


def spec_sections(spec: ExperimentSpec) -> dict[str, Any]:
    """A resolved spec back as raw sections (model params inlined), ready for `derive`."""
    raw = spec.model_dump(mode="json", exclude={"name"})
    model = raw.pop("model")
    raw["model"] = {"name": model["name"], **model["params"]}
    return raw
