"""A tiny name → object registry shared by every kind (samplers, sources, optimizers, models)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from harness.core.errors import SpecError

T = TypeVar("T")


def did_you_mean(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Return " (did you mean 'x'?)" for the nearest valid name, or a list of the valid ones."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; valid names: {', '.join(sorted(valid))}" if valid else ""


class Registry(Generic[T]):
    """Maps short names to builders; an unknown name is an error naming the nearest valid one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name`."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered as `name`, or raise SpecError with a suggestion."""
        try:
            return self._items[name]
        except KeyError:
            raise SpecError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}"
            ) from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
