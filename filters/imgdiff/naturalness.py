"""Img-Diff's unnatural-image filter (supplementary §15): a VLM judges whether each image of a pair looks natural.

Img-Diff §15 runs InternVL2.5-8B over its 13K pairs, finds 28 % of the images unnatural (SDXL and
Prompt2Prompt artefacts), removes them and fine-tunes LLaVA-1.5-7B again: the model trained
*without* them is worse (Tables 15-16, "w/o UNI"). So the filter is optional and off in the paper
preset; when a run scores naturalness, the scores are stored on the pair (``natural_before``,
``natural_after``) and ``pairsmith refilter`` can apply a threshold later without a model.

The score of one image is the VLM's probability of "Yes" against "No" to ``NATURALNESS_PROMPT``
(``pairsmith.tasks.imgdiff.prompts``): the two answers' mean token log-likelihoods
(``VlmChat.score_options_batch``) through a softmax, a number in [0, 1]. Img-Diff prints neither
its prompt nor a threshold (its filter is in the authors' code repository, not in the paper); the
prompt, the yes/no scoring and the threshold 0.5 (an image is natural when "Yes" is the likelier
answer) are pairsmith's, listed as assumptions in ``configs/papers/parameters.yaml``.

Keep rule: with ``natural_min`` None (the default and the preset) every pair is kept and nothing is
read; otherwise a pair is kept iff *both* images score ``> natural_min`` (strict, like the other
Img-Diff thresholds), and dropped as ``unnatural_before`` / ``unnatural_after`` (the first side that
fails) or ``natural_missing`` when a score was never measured.
"""

from __future__ import annotations

import math
from typing import Any

from pairsmith.filters.pipeline import PAIR, Stage
from pairsmith.filters.scores import is_missing
from pairsmith.storage.verdict import KEEP, Verdict

NATURAL_OPTIONS = ("Yes", "No")  # the answers scored; the first is "looks natural"
REASONS = ("unnatural_before", "unnatural_after", "natural_missing")
COLUMNS = ("natural_before", "natural_after")  # pairs columns: P("Yes") of each image, 0..1
PAPER_UNNATURAL_SHARE = 0.28  # Img-Diff supp. §15: InternVL2.5-8B found 28 % of Img-Diff's images unnatural
ASSUMED_NATURAL_MIN = 0.5  # pairsmith's: natural when "Yes" is likelier than "No" (the paper states no threshold)


def yes_probability(yes_loglik: float, no_loglik: float) -> float:
    """P("Yes") from the mean log-likelihoods of the answers "Yes" and "No" (a two-way softmax), 0..1."""
    if math.isinf(yes_loglik) and math.isinf(no_loglik):
        return 0.5
    top = max(yes_loglik, no_loglik)
    yes, no = math.exp(yes_loglik - top), math.exp(no_loglik - top)
    return yes / (yes + no)


def natural_columns(natural_min: float | None) -> tuple[str, ...]:
    """The stored columns the rule reads: none while the filter is off (old runs re-judge as before)."""
    return () if natural_min is None else COLUMNS


def keep_natural(natural_before: float | None, natural_after: float | None, natural_min: float | None) -> Verdict:
    """``natural_*``: P("Yes, it looks natural") of each image (0..1); ``natural_min`` None keeps every pair."""
    if natural_min is None:
        return KEEP
    if is_missing(natural_before) or is_missing(natural_after):
        return Verdict.drop("natural_missing")
    if natural_before <= natural_min:
        return Verdict.drop("unnatural_before")
    if natural_after <= natural_min:
        return Verdict.drop("unnatural_after")
    return KEEP


def natural_rule(row: dict[str, Any], thresholds: Any) -> Verdict:
    """The stage's keep rule over a pair row (``pairsmith.filters.pipeline.RowRule``)."""
    natural_min = getattr(thresholds, "natural_min", None)
    if natural_min is None:
        return KEEP
    return keep_natural(row.get("natural_before"), row.get("natural_after"), natural_min)


def natural_reads(thresholds: Any) -> tuple[str, ...]:
    """The pair columns the rule reads under ``thresholds``: none while the filter is off."""
    return natural_columns(getattr(thresholds, "natural_min", None))


# The stage, declared here so that the pipelines only list it (``pairsmith.filters.imgdiff.pipelines``):
# a pair filter after the pair filter (replacement) or the pair source (removal).
NATURAL = Stage(
    "natural", PAIR, writes=COLUMNS, reasons=REASONS, rule=natural_rule,
    reads=natural_reads, thresholds=("natural_min",), optional=True,
    doc="optional: both images look natural to a VLM (Img-Diff supp. §15; off unless natural_min is set)",
)
