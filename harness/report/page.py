"""Turn a suite's MLflow runs into one self-contained HTML page that works offline.

MLflow runs -> frozen records (tracking.read) -> pandas tables and plotly figures -> one page with
plotly.js inlined once and images as data URIs. Whatever is missing (no experiment, a run without
a confusion matrix) is said on the page and returned as a warning; the page is always written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.locks import atomic_write_text
from harness.report.architecture import architecture_section
from harness.report.beyond import beyond_section
from harness.report.claims import claims_section
from harness.report.compute import compute_section
from harness.report.confusion import confusion_section
from harness.report.curves import learning_curves_section
from harness.report.dataset import data_quality_section, examples_section
from harness.report.html import Section, esc, timestamp_text
from harness.report.imbalance import imbalance_section
from harness.report.markdown import markdown_page
from harness.report.methods import methods_section
from harness.report.overfitting import overfitting_section
from harness.report.paper import paper_section
from harness.report.provenance import provenance_section
from harness.report.summary import headlines, summary_section
from harness.report.sweeps import sweeps_section
from harness.report.system import system_section
from harness.spec.claims import ClaimSpec, ReferenceSpec
from harness.tracking.read import Results, load_results

if TYPE_CHECKING:
    pass


# (anchor, heading) of every section, in page order; the table of contents is built from this.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary: headline metrics over seeds"),
    ("compute", "Accuracy against training compute"),
    ("system", "System metrics of the longest runs"),
    ("claims", "The study's claims, tested"),
    ("paper", "Paper vs reproduced"),
    ("learning-curves", "Learning curves (paper Figures 1–2)"),
    ("overfitting", "Overfitting: the train–validation gap"),
    ("imbalance", "Imbalanced vs balanced sampling"),
    ("architecture", "Plain vs residual vs ResNeXt"),
    ("confusion", "Confusion matrices"),
    ("sweeps", "Hyper-parameter sweeps"),
    ("beyond", "Beyond the study: a modern recipe"),
    ("examples", "Preprocessed examples (paper Figure 4)"),
    ("data-quality", "Data quality and duplicates"),
    ("methods", "Methods: intervals and tests"),
    ("provenance", "Where the numbers come from"),
)


@dataclass(frozen=True)
class ReportSummary:
    """What build_report wrote: where, how many runs, what was missing, and how long it took."""

    out_path: Path
    n_runs: int
    warnings: list[str]
    seconds: float


def build_report(
    tracking_uri: str, experiment_name: str, out_path: Path, *, claims: Sequence[ClaimSpec] = (),
    references: Sequence[ReferenceSpec] = (), fmt: str = "html", command: str = "harness report",
    profile: str | None = None,
) -> ReportSummary:  # fmt: skip
    """Write the suite's report to `out_path` (atomically) and summarise what it holds.

    `claims` and `references` come from the suite file (`claims:`, `references:`). `fmt` is
    "html" (the self-contained page) or "markdown" (the numbers, for docs/results/; `command`
    is what the page says regenerates it). `profile` selects the runs of that suite profile.
    """
    started = time.perf_counter()
    out_path = Path(out_path)
    suite = load_results(tracking_uri, experiment_name, profile=profile)
    generated = datetime.now(UTC)
    if fmt == "markdown":
        text, warnings = markdown_page(suite, claims, command, generated), list(suite.notes)
    else:
        sections = _sections(suite, generated, claims, references)
        warnings = [*suite.notes, *(warning for section in sections for warning in section.warnings)]
        text = _page(suite, sections, warnings, generated)
    atomic_write_text(out_path, text)
    return ReportSummary(out_path=out_path, n_runs=len(suite.runs), warnings=warnings, seconds=time.perf_counter() - started)


def _sections(
    suite: Results, generated: datetime, claims: Sequence[ClaimSpec], references: Sequence[ReferenceSpec]
) -> list[Section]:
    runs = suite.runs
    table = headlines(suite)  # shared by the summary and the paper table
    return [
        summary_section(suite, table),
        compute_section(suite),
        system_section(suite),
        claims_section(suite, claims),
        paper_section(suite, table),
        learning_curves_section(runs),
        overfitting_section(suite),
        imbalance_section(runs, suite.seed_runs),
        architecture_section(runs),
        confusion_section(runs),
        sweeps_section(suite),
        beyond_section(suite, table, references),
        examples_section(runs),
        data_quality_section(runs),
        methods_section(),
        provenance_section(suite, generated),
    ]


def _page(suite: Results, sections: list[Section], warnings: list[str], generated: datetime) -> str:
    from plotly.offline import get_plotlyjs

    title = f"FER study report: {suite.experiment_name}"
    headings = dict(SECTIONS)
    body = "\n".join(_section_html(section, headings[section.anchor]) for section in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<main>
<header>
<h1>{esc(title)}</h1>
<p class="lede">{len(suite.runs)} run(s) · tracking store <code>{esc(suite.tracking_uri)}</code> ·
generated {esc(timestamp_text(generated))}</p>
</header>
{_contents()}
{_notes_html(warnings)}
{body}
</main>
</body>
</html>
"""


def _section_html(section: Section, heading: str) -> str:
    tag = "footer" if section.anchor == "provenance" else "section"
    return f'<{tag} id="{section.anchor}">\n<h2>{esc(heading)}</h2>\n{section.body}\n</{tag}>'


def _contents() -> str:
    items = "".join(
        f'<li><a href="#{anchor}">{esc(heading)}</a></li>' for anchor, heading in SECTIONS
    )
    return f'<nav id="contents" aria-label="Contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def _notes_html(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{esc(warning)}</li>" for warning in warnings)
    return f'<aside id="notes" class="missing"><h2>What is missing</h2><ul>{items}</ul></aside>'


_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #222;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; background: white; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2.25rem 0 .75rem; border-bottom: 1px solid #ddd; padding-bottom: .25rem; }
h3 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
.lede { color: #555; margin-top: 0; }
code { background: #f1f1f1; padding: 0 .25em; border-radius: 3px; font-size: .9em; }
nav ol { columns: 2; margin: 0; }
nav h2 { margin-top: 1rem; }
.missing { background: #fff6e0; border-left: 4px solid #e0a100; padding: .5rem .9rem; }
aside.missing h2 { margin-top: .25rem; border: 0; }
.note { color: #555; }
.table-wrap { overflow-x: auto; margin: .75rem 0; }
table.data { border-collapse: collapse; font-size: .9rem; width: 100%; }
table.data th, table.data td { padding: .3rem .55rem; border-bottom: 1px solid #e3e3e3; text-align: right; }
table.data th:first-child, table.data td:first-child { text-align: left; white-space: nowrap; }
table.data td:last-child, table.data th:last-child { text-align: left; }
table.data thead th { background: #f3f5f8; position: sticky; top: 0; }
.block { margin: 1rem 0 2rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1rem; }
.card { border: 1px solid #e3e3e3; border-radius: 6px; padding: .25rem; }
figure.examples { margin: 1rem 0; }
.example-grid { display: flex; gap: .6rem; align-items: flex-start; overflow-x: auto; }
.row-labels { display: grid; align-items: center; text-align: right; font-size: .85rem; color: #444; }
.example-grid img { image-rendering: pixelated; width: auto; border: 1px solid #ccc; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; word-break: break-all; }
footer { margin-top: 2rem; font-size: .92rem; }
.source { color: #444; font-size: .9rem; }
ul.claims { padding-left: 1.2rem; }
ul.claims li { margin: .5rem 0; padding: .4rem .7rem; border-left: 4px solid #999; list-style: none; }
ul.claims li.ok { border-color: #2ca02c; background: #f0f8f0; }
ul.claims li.bad { border-color: #d62728; background: #fbefef; }
ul.claims li.unclear { border-color: #e0a100; background: #fff6e0; }
@media (max-width: 1100px) { .grid { grid-template-columns: 1fr; } }
"""
