"""The suite file's `claims:` and `references:` sections, validated against its experiments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.core.registry import did_you_mean
from harness.spec.claims import ClaimSpec, ReferenceSpec
from harness.spec.schema import ExperimentSpec
from harness.suite.problems import Problems
from harness.suite.validate import describe

Model = TypeVar("Model", bound=BaseModel)


def parse_claims(raw: Any, experiments: Mapping[str, ExperimentSpec], problems: Problems) -> tuple[ClaimSpec, ...]:
    """`claims: {KEY: {title, a, b, claim, metric, expect, study_claim, paper}}`, in file order."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.add("claims", f"expected a mapping of claim names, got {type(raw).__name__}")
        return ()
    claims = []
    for key, body in raw.items():
        where = f"claims.{key}"
        if not isinstance(body, dict):
            problems.add(where, f"expected a mapping, got {type(body).__name__}")
            continue
        claim = _parsed(ClaimSpec, {**body, "key": str(key)}, where, problems)
        if claim is None:
            continue
        for side in ("a", "b"):
            name = getattr(claim, side)
            if name not in experiments:
                problems.add(f"{where}.{side}", f"no experiment '{name}'{did_you_mean(name, list(experiments))}")
        claims.append(claim)
    return tuple(claims)


def parse_references(raw: Any, problems: Problems) -> tuple[ReferenceSpec, ...]:
    """`references: [{dataset, low, high, label, colour, source}, ...]`: lines on the ladder chart."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.add("references", f"expected a list, got {type(raw).__name__}")
        return ()
    found = []
    for i, body in enumerate(raw):
        if not isinstance(body, dict):
            problems.add(f"references[{i}]", f"expected a mapping, got {type(body).__name__}")
            continue
        reference = _parsed(ReferenceSpec, body, f"references[{i}]", problems)
        if reference is not None and reference.low > reference.high:
            problems.add(f"references[{i}].low", f"above high ({reference.low} > {reference.high})")
        elif reference is not None:
            found.append(reference)
    return tuple(found)


def _parsed(model: type[Model], body: dict[str, Any], where: str, problems: Problems) -> Model | None:
    try:
        return model(**body)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            problems.add(f"{where}.{loc}", describe(err, [f for f in model.model_fields if f != "key"]))
    except TypeError as exc:  # a non-string key
        problems.add(where, str(exc))
    return None
