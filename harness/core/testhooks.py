"""A test-only hook: stop the process at a named point so a fault-injection test can hit it there.

Inert unless `HARNESS_TEST_PAUSE_AT` names the point (``POINT``, or ``POINT#N`` for its N-th
occurrence). Then, when the process reaches it, it writes its pid to the file
`HARNESS_TEST_PAUSE_FILE` and waits until a test deletes that file (or `MAX_PAUSE_S` passes), so
`tests/test_faults.py` can send SIGKILL or SIGTERM, or stop a tracking server, at a known moment
instead of racing a timer. The points:

- ``preprocessing``: a chunk of images decoded while the cache is built, nothing saved yet;
- ``training``: an experiment's epoch 1 is logged, its epoch 2 not started;
- ``artifacts``: an experiment's final metrics and some artifacts logged, the weights not yet.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

POINT_ENV = "HARNESS_TEST_PAUSE_AT"
FILE_ENV = "HARNESS_TEST_PAUSE_FILE"
# Long enough for any test to act; short enough that a forgotten pause cannot hang CI for long.
MAX_PAUSE_S = 120.0
_reached: dict[str, int] = {}  # occurrences of each point in this process


def pause_point(name: str) -> None:
    """Pause here if a test asked to (see the module docstring); otherwise return at once."""
    wanted = os.environ.get(POINT_ENV)
    if not wanted:
        return
    _reached[name] = _reached.get(name, 0) + 1
    point, _, nth = wanted.partition("#")
    if point != name or _reached[name] != int(nth or 1):
        return
    marker = Path(os.environ[FILE_ENV])
    marker.write_text(str(os.getpid()))
    deadline = time.monotonic() + MAX_PAUSE_S
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
