"""Does a cheap profile rank variants as the full runs do? The experiments measured both ways,
side by side: each one's validation accuracy and training compute under the full runs and under
the other profile (e.g. beyond.yaml's `proxy`, a tenth of the compute), their ranks, and
Kendall's tau between the two orders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from harness.report.compute import spent_by
from harness.tracking.read import Results, RunRecord, load_results

METRIC = "final_val_accuracy"


@dataclass(frozen=True)
class Ranked:
    experiment: str
    full: float
    other: float
    full_tflop: float | None
    other_tflop: float | None
    full_rank: int
    other_rank: int


@dataclass(frozen=True)
class Ranking:
    """One other profile against the runs shown."""

    profile: str
    rows: tuple[Ranked, ...]

    @property
    def kendall_tau(self) -> float:
        """(concordant − discordant pairs) / pairs: 1 when both orders agree."""
        pairs = list(combinations(self.rows, 2))
        score = sum(1 if (a.full - b.full) * (a.other - b.other) > 0 else -1 for a, b in pairs)
        return score / len(pairs)

    @property
    def same_order(self) -> bool:
        return all(r.full_rank == r.other_rank for r in self.rows)


def profile_rankings(results: Results) -> list[Ranking]:
    """Every other named profile with at least two experiments in common with `results`."""
    rankings = []
    for profile in sorted(name for name in results.other_profiles if name):
        other = load_results(results.tracking_uri, results.experiment_name, artifacts=False, profile=profile)
        rows = _rows(results.seed_runs, other.seed_runs)
        if len(rows) >= 2:
            rankings.append(Ranking(profile, rows))
    return rankings


def _rows(full: dict[str, Sequence[RunRecord]], other: dict[str, Sequence[RunRecord]]) -> tuple[Ranked, ...]:
    shared = [name for name in full if name in other and _mean(full[name], METRIC) is not None and _mean(other[name], METRIC) is not None]
    full_rank = _ranks({name: _mean(full[name], METRIC) for name in shared})
    other_rank = _ranks({name: _mean(other[name], METRIC) for name in shared})
    rows = [Ranked(name, _mean(full[name], METRIC), _mean(other[name], METRIC), _tflop(full[name]), _tflop(other[name]),
                   full_rank[name], other_rank[name]) for name in shared]  # fmt: skip
    return tuple(sorted(rows, key=lambda r: r.full_rank))


def _ranks(values: dict[str, float | None]) -> dict[str, int]:
    order = sorted(values, key=lambda name: -(values[name] or 0.0))
    return {name: rank for rank, name in enumerate(order, start=1)}


def _mean(runs: Sequence[RunRecord], key: str) -> float | None:
    values = [v for v in (run.metric(key) for run in runs) if v is not None]
    return sum(values) / len(values) if values else None


def _tflop(runs: Sequence[RunRecord]) -> float | None:
    spent = [s.train_tflop for s in map(spent_by, runs) if s.train_tflop is not None]
    return sum(spent) / len(spent) if spent else None
