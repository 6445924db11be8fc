"""Methods: how every interval and test on the page is computed, and the verdict rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.analysis.claims import RULES
from harness.analysis.stats import (
    BOOTSTRAP_RESAMPLES,
)
from harness.report.html import (
    Section,
    esc,
)

if TYPE_CHECKING:
    pass


def methods_section() -> Section:
    """How every interval and test on the page is computed, and the rules for the verdicts."""
    body = f"""<ul>
<li><strong>Repeated seeds.</strong> <code>harness run --seeds K</code> (or
<code>train.seeds</code>) trains each experiment with seeds S … S+K−1, one MLflow run each; the
page uses, per experiment and seed, the most recent finished run.</li>
<li><strong>Mean ± sd, 95% interval over seeds.</strong> Sample standard deviation; the
interval is mean ± t<sub>0.975, K−1</sub> · sd / √K (Student-t).</li>
<li><strong>One seed.</strong> There is no spread across seeds to estimate, so accuracy and
balanced accuracy get a 95% percentile bootstrap interval over the validation images
({BOOTSTRAP_RESAMPLES:,} resamples; marked “img”). This measures how much the score depends on
which images were held out, not training noise.</li>
<li><strong>Per-class recall.</strong> One seed: Wilson score interval on the class's correct /
total validation images. Several seeds: Student-t interval over the seeds' recalls.</li>
<li><strong>Differences between two experiments.</strong> Both are scored on the same
validation images. Each image's score is the share of an experiment's seeds that classified it
correctly; the interval is a paired percentile bootstrap ({BOOTSTRAP_RESAMPLES:,} resamples) that
draws images with replacement, ignoring their classes as McNemar's test does, and recomputes
A − B in accuracy and in balanced accuracy on the same draw for both.</li>
<li><strong>McNemar's exact test.</strong> On one run of A and one of B with the same seed
(pairs by seed order when none match): b = images only A got right, c = images only B got right;
p is the two-sided binomial test of b out of b + c at ½. With several seeds the page lists each
pair and quotes the largest p, the most conservative.</li>
<li><strong>Verdicts</strong> read the interval of the claim's metric (accuracy, or balanced
accuracy for the sampling claim) and require McNemar's test to confirm it:
{esc(RULES['better'])} {esc(RULES['no_better'])} The two can disagree: balanced accuracy
averages per class, so its interval leaves out how the images fall into classes, while McNemar's
test counts plain right and wrong answers.</li>
</ul>"""
    return Section("methods", body)
