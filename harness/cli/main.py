"""The `harness` command: parse arguments, call one library function, map errors to exit codes.

Exit codes: 0 success, 2 a user-facing error (bad spec, bad data, tracking store down),
1 an unexpected internal error, 130 interrupted (Ctrl-C / SIGTERM). Heavy libraries are
imported inside the command functions so `harness --help` answers at once.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from harness.cli.parser import build_parser
from harness.core.errors import HarnessError


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `harness` console script; returns the exit code."""
    # MLflow 3 sends usage telemetry from background threads unless told not to. The harness
    # records nothing outside the user's own store and runs offline; MLFLOW_DISABLE_TELEMETRY=false
    # in the environment turns MLflow's telemetry back on.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # A progress bar per artifact downloaded is noise on a terminal that reads rows.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM ends a run the way Ctrl-C does, so MLflow marks it KILLED, not RUNNING forever.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return args.func(args)
    except HarnessError as exc:
        if args.debug:
            raise
        for problem in getattr(exc, "problems", None) or (str(exc),):
            print(f"harness: error: {problem}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`harness list | head`): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("harness: interrupted (a run in progress is marked KILLED); rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
        if args.debug:
            raise
        print(f"harness: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
