"""A study's claims and reference lines as frozen specs: data in the suite file, not code.

A claim names two experiments of the suite (A, the one the claim is about, and B, its baseline),
the metric it is about and what the study says: A is `better`, or A is `no_better`. The report
tests each one on the same validation images (harness.analysis.claims). A lab adds a study's
claim by adding an entry under `claims:`; no code changes.

A reference line is context on the ablation ladder's chart (human agreement, published models),
drawn only for runs on the dataset it belongs to.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Metric = Literal["accuracy", "balanced_accuracy"]
Expectation = Literal["better", "no_better"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PaperNumbers(_Strict):
    """What the paper reported for A and B (validation accuracy), where it did."""

    a: float | None = Field(None, ge=0, le=1, description="the paper's figure for experiment A")
    b: float | None = Field(None, ge=0, le=1, description="the paper's figure for experiment B")


class ClaimSpec(_Strict):
    """Experiment `a` against experiment `b` on `metric`; the study says a is `expect`."""

    key: str = Field(description="the claim's short name (its key under `claims:`)")
    title: str = Field(min_length=1, description="a heading, e.g. 'Residual vs plain CNN'")
    a: str = Field(description="the experiment the claim is about")
    b: str = Field(description="its baseline")
    claim: str = Field(min_length=1, description="the study's statement in words, with its numbers")
    metric: Metric = Field("accuracy", description="what the verdict reads: accuracy or balanced_accuracy")
    expect: Expectation = Field("better", description="A is `better` than B, or `no_better`")
    study_claim: bool = Field(
        True, description="one of the study's own claims (true) or a supporting comparison (false)"
    )
    paper: PaperNumbers | None = Field(None, description="the paper's numbers for A and B")


class ReferenceSpec(_Strict):
    """A horizontal reference line (low == high) or band on the ablation ladder's chart."""

    dataset: str = Field(description="drawn only when every ladder run is on this dataset (tag harness.dataset)")
    low: float = Field(ge=0, le=1, description="the line's value, or the band's lower edge")
    high: float = Field(ge=0, le=1, description="the band's upper edge (= low for a line)")
    label: str = Field(min_length=1, description="the legend's text")
    colour: str = Field("#7f7f7f", description="a CSS colour")
    source: str = Field("", description="where the figure comes from")
