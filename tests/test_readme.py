"""The README is a manual: short, undated, and every command it shows exists with the flags it shows.

Each `harness ...` line (in code blocks, `.venv/bin/` or not) is checked against that command's
`--help`: the subcommand exists and takes every flag the line uses. Each `make TARGET` names a
target of the Makefile. Server and ssh lines (mlflow models serve, ssh tunnels) are left to
docs/serving.md's and docs/sweeps.md's own tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
SUBCOMMANDS_WITH_ACTIONS = {"data"}  # `harness data synth`


def _code_lines() -> list[str]:
    blocks = re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _harness_lines() -> list[str]:
    found = []
    for line in _code_lines():
        line = re.sub(r"^(MLFLOW_TRACKING_URI=\S+ )?(\.venv/bin/)?", "", line)
        if line.startswith("harness "):
            found.append(line.split("#")[0].strip())
    return found


def _make_targets() -> set[str]:
    targets = set()
    for text in [*_code_lines(), *re.findall(r"`(make [^`]+)`", README)]:
        for match in re.finditer(r"\bmake ((?:[a-z][\w-]*\s*)+)", text.split("#")[0]):
            targets |= {word for word in match.group(1).split() if "=" not in word}
    return targets


def test_the_readme_is_a_short_undated_manual() -> None:
    assert README.count("\n") <= 250
    assert not re.search(r"(19|20)\d\d-[01]\d-[0-3]\d", README), "dates belong in generated results pages"
    assert not re.search(r"\bcommit [0-9a-f]{7}", README)
    assert "make reproduce" in README and "make test" in README


@pytest.mark.parametrize("line", _harness_lines())
def test_every_harness_command_shown_takes_the_flags_shown(line: str) -> None:
    words = line.split()[1:]
    command = words[:2] if words[0] in SUBCOMMANDS_WITH_ACTIONS else words[:1]
    done = subprocess.run([sys.executable, "-m", "harness", *command, "--help"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    for flag in set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line)):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}\b", done.stdout), f"{' '.join(command)} has no {flag}"


def test_every_make_target_shown_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = _make_targets()
    assert {"reproduce", "test", "bench", "lint"} <= targets
    missing = [t for t in sorted(targets) if not re.search(rf"^{re.escape(t)}:", makefile, flags=re.M)]
    assert missing == []


def test_every_page_the_readme_links_exists() -> None:
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (REPO / target).exists(), target
