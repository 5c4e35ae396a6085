"""Difference-caption metrics: BLEU-4, ROUGE-L and CIDEr-D with the COCO caption scorers.

``pycocoevalcap``'s BLEU, ROUGE-L and CIDEr scorers are pure Python; only its PTB tokenizer needs
Java, so captions are tokenized here the way that tokenizer leaves them for these scorers:
lower case, punctuation removed, split on whitespace. BLEU-4 is corpus-level (as COCO reports it);
ROUGE-L and CIDEr-D are averaged over captions. CIDEr's document frequencies come from the
references of the evaluated set, as in the COCO evaluation, so it is only comparable between runs
on the same samples.
"""

from __future__ import annotations

import re

_PUNCT = re.compile(r"[^\w\s]|_")


def tokenize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def caption_metrics(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """{"bleu4", "rouge_l", "cider"} for predictions keyed like their references."""
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
    return {"bleu4": float(bleu[3]), "rouge_l": float(rouge), "cider": float(cider)}
