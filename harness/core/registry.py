"""A tiny name → object registry shared by every kind (samplers, sources, optimizers, models)."""

from __future__ import annotations

import difflib
import importlib.metadata
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
    """Maps short names to builders; an unknown name is an error naming the nearest valid one.

    With `plugins` (an entry-point group such as ``fer_harness.models``), the entries that
    installed packages declare in that group join the registry on first use, under their
    entry-point names, so a lab's own model, data source or sampler is named in YAML like a
    built-in one (docs/extending.md). `check` vets each object (a builder's signature, say).
    """

    def __init__(self, kind: str, plugins: str | None = None, check: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self.plugins = plugins
        self._check = check
        self._items: dict[str, T] = {}
        self._plugins_loaded = plugins is None

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name`."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            if self._check is not None:
                self._check(name, obj)
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered as `name`, or raise SpecError with a suggestion."""
        items = self._all()
        try:
            return items[name]
        except KeyError:
            raise SpecError(f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}") from None

    def names(self) -> list[str]:
        """All registered names (plugins' included), sorted."""
        return sorted(self._all())

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _all(self) -> dict[str, T]:
        if not self._plugins_loaded:
            self._plugins_loaded = True  # once, even if a plugin fails: its error names it
            for entry in importlib.metadata.entry_points(group=self.plugins):
                self._add_plugin(entry)
        return self._items

    def _add_plugin(self, entry: importlib.metadata.EntryPoint) -> None:
        where = f"plugin {entry.value} (entry point '{entry.name}' in {self.plugins})"
        if entry.name in self._items:
            raise SpecError(f"{where}: a {self.kind} '{entry.name}' is already registered")
        try:
            obj = entry.load()
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raises, name the plugin
            raise SpecError(f"{where}: cannot be imported: {type(exc).__name__}: {exc}") from None
        if self._check is not None:
            try:
                self._check(entry.name, obj)
            except (TypeError, ValueError) as exc:
                raise SpecError(f"{where}: {exc}") from None
        self._items[entry.name] = obj
