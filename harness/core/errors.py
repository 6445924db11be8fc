"""The harness's own error types: each carries a message fit to show a user as-is."""

from __future__ import annotations

from collections.abc import Sequence


class HarnessError(Exception):
    """An error the CLI reports as one line and exit code 2, without a traceback."""

    def __init__(self, message: str = "") -> None:
        # One line whatever went into it: a YAML key or a file name may hold a line break.
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


class SpecError(HarnessError):
    """An experiment spec file is malformed: each problem names the file and the key path.

    A file with several errors gives one SpecError holding all of them (`problems`, one line
    each, as the CLI prints them); its message is the first, with a count of the others.
    """

    def __init__(self, message: str = "", problems: Sequence[str] = ()) -> None:
        self.problems = tuple(HarnessError(p).args[0] for p in problems) or (HarnessError(message).args[0],)
        more = len(self.problems) - 1
        super().__init__(message or self.problems[0] + (f" (and {more} more problem(s))" if more else ""))


class DataError(HarnessError):
    """A dataset is missing, malformed, or has nothing usable left."""


class TrackingError(HarnessError):
    """The MLflow tracking store cannot be reached or used."""


def first_line(exc: BaseException, *, with_type: bool = True, limit: int | None = None) -> str:
    """An exception as one line: its type (unless `with_type` is False) and its message's first
    line, cut to `limit` characters."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else ""
    if with_type:
        line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    line = line or type(exc).__name__
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"
