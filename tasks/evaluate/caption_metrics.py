"""Difference-caption metrics: BLEU-4, METEOR, ROUGE-L and CIDEr-D with the COCO caption scorers.

These are the scores OmniDiff (Liu et al., ICCV 2025) and the change-captioning papers report,
computed by ``pycocoevalcap``. BLEU, ROUGE-L and CIDEr are pure Python; METEOR runs the METEOR 1.5
jar that ships with pycocoevalcap and needs a Java runtime: without ``java`` on the PATH (or if the
jar fails) METEOR is reported as unavailable, with the reason, instead of being scored. SPICE needs
Stanford CoreNLP models that pycocoevalcap downloads on first use; pairsmith makes no downloads, so
SPICE is always reported as unavailable.

Captions are tokenized here the way COCO's Java PTB tokenizer leaves them for these scorers: lower
case, punctuation removed, split on whitespace. BLEU-4 is corpus-level (as COCO reports it);
METEOR is the jar's corpus score; ROUGE-L and CIDEr-D are averaged over captions. CIDEr's document
frequencies come from the references of the evaluated set, as in the COCO evaluation, so it is only
comparable between runs on the same samples.
"""

from __future__ import annotations

import re
import shutil
import threading
from dataclasses import dataclass, field

_PUNCT = re.compile(r"[^\w\s]|_")
SPICE_UNAVAILABLE = ("needs Stanford CoreNLP models, which pycocoevalcap downloads on first use; "
                     "pairsmith makes no downloads")
NO_JAVA = "no Java runtime ('java' is not on the PATH; e.g. apt-get install default-jre-headless)"

_meteor = None
_meteor_lock = threading.Lock()


@dataclass
class CaptionScores:
    """Metric name -> value, and metric name -> why it was not computed."""

    values: dict[str, float]
    unavailable: dict[str, str] = field(default_factory=dict)


def tokenize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _meteor_scorer():
    """One METEOR jar process per Python process (it loads 60 MB of paraphrase tables on start)."""
    global _meteor
    with _meteor_lock:
        if _meteor is None:
            from pycocoevalcap.meteor.meteor import Meteor

            _meteor = Meteor()
        return _meteor


def meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, str | None]:
    """METEOR of tokenized captions, or (None, why) when it cannot run."""
    if shutil.which("java") is None:
        return None, NO_JAVA
    try:
        score, _ = _meteor_scorer().compute_score(gts, res)
    except Exception as err:  # noqa: BLE001 - a dead or missing jar process: report it, score the rest
        global _meteor
        _meteor = None
        return None, f"the METEOR jar failed: {type(err).__name__}: {err}"
    return float(score), None


def caption_metrics(predictions: dict[str, str], references: dict[str, list[str]]) -> CaptionScores:
    """``bleu4``, ``meteor``, ``rouge_l``, ``cider`` for predictions keyed like their references."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if not predictions:
        raise ValueError("no captions to score")
    missing = sorted(set(predictions) ^ set(references))
    if missing:
        raise ValueError(f"predictions and references differ in ids, e.g. {missing[0]!r}")
    res = {k: [tokenize(v)] for k, v in predictions.items()}
    gts = {k: [tokenize(r) for r in refs] for k, refs in references.items()}
    if any(not any(refs) for refs in gts.values()):
        raise ValueError("every caption needs a non-empty reference")
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    meteor, why = meteor_score(gts, res)
    values = {"bleu4": float(bleu[3]), "meteor": meteor, "rouge_l": float(rouge), "cider": float(cider)}
    unavailable = {"meteor": why} if meteor is None else {}
    return CaptionScores({k: v for k, v in values.items() if v is not None},
                         {**unavailable, "spice": SPICE_UNAVAILABLE})
