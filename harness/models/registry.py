"""A timm-style model registry: short names → plain builder functions.

A builder has the signature
``builder(num_classes: int, in_channels: int, image_size: int, *, <params>) -> nn.Module``;
its keyword-only parameters, with their annotations and defaults, are the model's YAML params.
Importing `harness.models` registers the families and so imports torch: the CLI should import it
inside the commands that need it, not at start-up.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from harness.core.errors import SpecError
from harness.core.registry import Registry, did_you_mean

Builder = Callable[..., Any]

# The positional arguments every builder takes, in order; everything else is keyword-only.
_POSITIONAL = ("num_classes", "in_channels", "image_size")

# The one name → builder map. It is filled at import time by the @register_model decorators in the
# family modules, and by installed plugins' `fer_harness.models` entry points on first use; it
# never changes afterwards, so it is a constant rather than hidden run state.
_MODELS: Registry[Builder] = Registry(
    "model", plugins="fer_harness.models", check=lambda _name, builder: _check_signature(builder)
)


def register_model(builder: Builder) -> Builder:
    """Register `builder` under its function name; a malformed signature fails at import time."""
    return _MODELS.register(builder.__name__)(builder)


def model_names() -> list[str]:
    """Sorted names of all registered models."""
    return _MODELS.names()


def model_params(name: str) -> dict[str, tuple[Any, Any]]:
    """The model's tunable params: name → (annotation, default), in signature order."""
    builder = _MODELS.get(name)
    hints = typing.get_type_hints(builder)
    return {
        p.name: (hints[p.name], p.default)
        for p in inspect.signature(builder).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def create_model(
    name: str, *, num_classes: int, in_channels: int = 3, image_size: int = 32, **params: Any
) -> Any:
    """Build the registered model `name`; unknown names and params raise SpecError."""
    builder = _MODELS.get(name)
    known = model_params(name)
    for key in params:
        if key not in known:
            raise SpecError(
                f"model {name!r} has no parameter {key!r}{did_you_mean(key, list(known))}"
            )
    _check_positive(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    typed = {key: _coerce(name, key, known[key][0], value) for key, value in params.items()}
    return builder(num_classes, in_channels, image_size, **typed)


def require(ok: bool, model: str, problem: str) -> None:
    """Raise SpecError naming `model` unless `ok`: how builders reject out-of-range params."""
    if not ok:
        raise SpecError(f"model {model!r}: {problem}")


def _check_positive(model: str, **sizes: int) -> None:
    for key, value in sizes.items():
        # bool is an int subclass; a YAML `true` here is a typo, not a size.
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"model {model!r}: {key} must be a positive integer, got {value!r}")


def _coerce(model: str, key: str, annotation: Any, value: Any) -> Any:
    """Check `value` against the param's annotation; YAML lists become the annotated tuples."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        ok = value in args
    elif origin is tuple:
        # Only the homogeneous tuple[X, ...] form is used by builders.
        ok = isinstance(value, list | tuple)
        if ok:
            return tuple(_coerce(model, key, args[0], item) for item in value)
    elif annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif annotation in (int, bool):
        # bool is an int subclass, so compare exact types.
        ok = type(value) is annotation
    else:
        ok = True
    require(ok, model, f"{key} must be {_describe(annotation)}, got {value!r}")
    return value


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is tuple:
        return f"a list of {_describe(typing.get_args(annotation)[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _check_signature(builder: Builder) -> None:
    """The registry's contract with builders, so the spec layer can trust model_params."""
    params = list(inspect.signature(builder).parameters.values())
    positional = tuple(p.name for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY)
    if positional != _POSITIONAL:
        raise TypeError(f"{builder.__name__}: positional parameters must be {_POSITIONAL}")
    hints = typing.get_type_hints(builder)
    for p in params[len(_POSITIONAL) :]:
        if p.name not in hints or p.default is inspect.Parameter.empty:
            raise TypeError(f"{builder.__name__}: parameter {p.name!r} needs a type and a default")
