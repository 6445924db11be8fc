"""CLI start-up benchmark: the wall time of `harness --help`, and which heavy modules it imports.

`harness --help` runs the installed console script as a user would; its median over several
runs is compared with the 1.0 s target and with a bare `python -c pass` (the interpreter's own
floor). A second interpreter parses the same arguments through `harness.cli.main` and lists the
heavy modules (torch, mlflow, ...) that ended up imported: there should be none, since every
command imports what it needs inside itself.

    .venv/bin/python bench/startup.py            # 10 runs, writes reports/bench.json
    .venv/bin/python bench/startup.py --quick    # 3 runs, prints only (unless --out)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import common
from common import (
    REPO,
    REPORT,
    command_line,
    machine,
    merge_report,
    met,
    rounded,
    time_variants,
)

TARGET_S = 1.0
REPEATS = (10, 3)
HEAVY = ("torch", "mlflow", "sklearn", "pandas", "plotly", "optuna", "numpy", "PIL", "sqlalchemy", "scipy")
# Run in a fresh interpreter: `--help` exits through SystemExit once argparse has printed.
IMPORTS_PROBE = f"""
import json, sys
from harness.cli.main import main
try:
    main(["--help"])
except SystemExit:
    pass
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)
"""


def run_quietly(argv: Sequence[str]) -> None:
    """Run a command, discarding its output; fail loudly if it fails."""
    subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def heavy_imports(python: str) -> list[str]:
    """The heavy modules that `harness --help` imports."""
    done = subprocess.run(
        [python, "-c", IMPORTS_PROBE], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stderr.strip().splitlines()[-1])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs, prints only")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (median)")
    common.add_out_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = args.repeats or REPEATS[1 if args.quick else 0]
    out = args.out or (None if args.quick else REPORT)
    python = sys.executable
    harness = str(Path(python).with_name("harness"))
    variants = {
        "harness_help": lambda: run_quietly([harness, "--help"]),
        "python_floor": lambda: run_quietly([python, "-c", "pass"]),
    }
    for run in variants.values():  # warm-up: the page cache for the interpreter and the package
        run()
    seconds, _ = time_variants(variants, repeats)
    help_s = statistics.median(seconds["harness_help"])
    floor_s = statistics.median(seconds["python_floor"])
    heavy = heavy_imports(python)
    keys = {
        "startup_help_s": round(help_s, 3),
        "startup_python_floor_s": round(floor_s, 3),
        "startup_help_target_s": TARGET_S,
        "startup_help_met": met(help_s, TARGET_S, at_most=True),
        "startup_heavy_imports": len(heavy),
    }
    print(
        f"6  start-up   harness --help {help_s:.3f} s (target <= {TARGET_S:.1f} s; python -c pass "
        f"{floor_s:.3f} s); heavy modules imported: {', '.join(heavy) or 'none'}"
    )
    if out is not None:
        details = machine(command_line("bench/startup.py", argv))
        details |= {"quick": args.quick, "repeats": repeats, "seconds": rounded(seconds), "heavy_imports": heavy}
        merge_report(out, keys, "startup", details)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
