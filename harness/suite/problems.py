"""Every error of one suite file, collected so a user sees them all at once, each at its key.

Loading goes on past an error wherever the rest of the file can still be read (another
experiment, another section), so a missing `description` no longer hides a typo in `train`.
Each problem is one line, ``FILE: KEY.PATH: what is wrong``, with the key path where the user
wrote the offending key (a profile's, an experiment's, the defaults', or a command-line flag).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.errors import SpecError

# Enough to fix a file in one pass; past this, the rest are usually echoes of the same mistake.
MAX_PROBLEMS = 20


class Problems:
    """The problems found so far in one file (at most MAX_PROBLEMS, each once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines: list[str] = []
        self.dropped = 0
        self._seen = 0  # every problem added, repeats included: "did this step find any?"
        self._once: set[object] = set()

    def __bool__(self) -> bool:
        return bool(self._lines)

    @property
    def count(self) -> int:
        """How many problems were added so far, repeats and those past the cap included."""
        return self._seen

    def add(self, where: str, message: str, *, once: object = None) -> None:
        """One problem at key path `where` ('' for the file as a whole); a problem found from
        several places (a cycle of `extends`) passes the same `once` key each time."""
        if once is not None:
            if once in self._once:
                return
            self._once.add(once)
        self._add(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")

    def add_error(self, error: SpecError) -> None:
        """The problems of a SpecError raised by code that knows the file (already prefixed)."""
        for line in error.problems:
            self._add(line)

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """Record a SpecError raised inside the block instead of letting it end the load."""
        try:
            yield
        except SpecError as exc:
            self.add_error(exc)

    def check(self) -> None:
        """Raise one SpecError holding every problem, if there is any."""
        if not self._lines:
            return
        lines = list(self._lines)
        if self.dropped:
            lines.append(f"{self.path}: {self.dropped} more problem(s) not shown; fix these first")
        raise SpecError(problems=lines)

    def _add(self, line: str) -> None:
        self._seen += 1
        if line in self._lines:
            return
        if len(self._lines) >= MAX_PROBLEMS:
            self.dropped += 1
            return
        self._lines.append(line)
