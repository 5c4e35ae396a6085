"""Difference-caption metrics: BLEU-4, METEOR, ROUGE-L and CIDEr-D with the COCO caption scorers.

These are the scores OmniDiff (Liu et al., ICCV 2025; supp. Tables 11-12) and the change-captioning
papers report, computed by ``pycocoevalcap``. BLEU, ROUGE-L and CIDEr are pure Python; METEOR runs
the METEOR 1.5 jar that ships with pycocoevalcap and needs a Java runtime: without ``java`` on the
PATH (or if the jar fails) METEOR is reported as unavailable, with the reason, instead of being
scored.

SPICE runs pycocoevalcap's ``spice-1.0.jar`` (Anderson et al., ECCV 2016), which needs Java and the
Stanford CoreNLP 3.6.0 jars ``stanford-corenlp-3.6.0.jar`` and ``stanford-corenlp-3.6.0-models.jar``
(from ``stanford-corenlp-full-2015-12-09.zip``). pycocoevalcap does not ship them: its ``Spice()``
downloads them from nlp.stanford.edu into ``pycocoevalcap/spice/lib`` at first use, and writes its
temporary files and LMDB cache inside the installed package. pairsmith makes no downloads and writes
nothing into the environment: it looks for the two jars in ``$PAIRSMITH_CORENLP_DIR`` or in
pycocoevalcap's ``spice/lib`` and, where both are there, runs the SPICE jar itself (the same main
class and options as ``Spice.compute_score``: ``-subset -silent``, no cache; ``--add-opens`` for
Java 16+) with its files in a temporary folder, and reports the mean of the captions' ``All``
F-scores as pycocoevalcap does. Where they are not, SPICE is reported as unavailable in one line naming the missing jars and where
they were looked for (``spice_unavailable``).

Captions are tokenized here the way COCO's Java PTB tokenizer leaves them for these scorers: lower
case, punctuation removed, split on whitespace. BLEU-4 is corpus-level (as COCO reports it);
METEOR is the jar's corpus score; ROUGE-L and CIDEr-D are averaged over captions. CIDEr's document
frequencies come from the references of the evaluated set, as in the COCO evaluation, so it is only
comparable between runs on the same samples.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

_PUNCT = re.compile(r"[^\w\s]|_")
CORENLP_ENV = "PAIRSMITH_CORENLP_DIR"
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")  # what spice-1.0.jar's manifest names
SPICE_MAIN = "edu.anu.spice.SpiceScorer"
SPICE_MEMORY = "-Xmx8G"  # pycocoevalcap's Spice.compute_score
# spice-1.0.jar (built for Java 8) serialises with FST, which on Java 16+ fails with "Unable to make field
# private final byte[] java.lang.String.value accessible" (SpiceParser.java:178) unless these packages are
# opened; Java 8 ignores the options (IgnoreUnrecognizedVMOptions, as Spark starts its JVMs).
SPICE_JVM_OPTIONS = ("-XX:+IgnoreUnrecognizedVMOptions", *(f"--add-opens=java.base/{package}=ALL-UNNAMED" for package in (
    "java.lang", "java.util", "java.math", "java.net", "java.text", "java.util.concurrent")))
SPICE_TIMEOUT_S = 3600
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


def spice_dir() -> Path:
    """pycocoevalcap's ``spice`` folder: ``spice-1.0.jar`` and its ``lib/`` of dependencies."""
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap.spice")  # a namespace package: no __file__ at the top
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def corenlp_dirs() -> list[Path]:
    """Where the CoreNLP 3.6.0 jars are looked for: ``$PAIRSMITH_CORENLP_DIR`` first, then the
    folder pycocoevalcap's ``get_stanford_models`` downloads them into."""
    dirs = [Path(os.environ[CORENLP_ENV])] if os.environ.get(CORENLP_ENV) else []
    return dirs + [spice_dir() / "lib"]


def corenlp_jars() -> list[Path] | None:
    """Both CoreNLP jars from the first folder that holds both, or None."""
    for folder in corenlp_dirs():
        jars = [folder / name for name in CORENLP_JARS]
        if all(j.is_file() for j in jars):
            return jars
    return None


def spice_unavailable() -> str | None:
    """Why SPICE cannot run here (one line), or None when it can."""
    if shutil.which("java") is None:
        return NO_JAVA
    if not (spice_dir() / "spice-1.0.jar").is_file():
        return f"spice-1.0.jar is not in {spice_dir()}"
    if corenlp_jars() is None:
        where = " or ".join(str(d) for d in corenlp_dirs())
        return (f"Stanford CoreNLP 3.6.0 jars ({', '.join(CORENLP_JARS)}) not in {where}; pycocoevalcap downloads "
                f"them at first use (stanford-corenlp-full-2015-12-09.zip) and pairsmith makes no downloads: put both "
                f"in a folder and set {CORENLP_ENV}")
    return None


def spice_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, str | None]:
    """SPICE F-score (0-1, mean over captions as pycocoevalcap's ``Spice``) of tokenized captions, or (None, why)."""
    why = spice_unavailable()
    if why is not None:
        return None, why
    folder = spice_dir()
    classpath = os.pathsep.join([str(folder / "spice-1.0.jar"), str(folder / "lib" / "*"),
                                 *(str(j) for j in corenlp_jars())])
    ids = sorted(gts)
    with tempfile.TemporaryDirectory(prefix="pairsmith-spice-") as tmp:
        src, out = Path(tmp) / "input.json", Path(tmp) / "output.json"
        src.write_text(json.dumps([{"image_id": k, "test": res[k][0], "refs": gts[k]} for k in ids]))
        cmd = ["java", SPICE_MEMORY, *SPICE_JVM_OPTIONS, "-cp", classpath, SPICE_MAIN, str(src), "-out", str(out), "-subset", "-silent"]
        try:
            done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=SPICE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as err:
            return None, f"the SPICE jar failed: {type(err).__name__}: {err}"
        if done.returncode != 0 or not out.is_file():
            lines = [ln.strip() for ln in (done.stderr or done.stdout or "").splitlines() if ln.strip()
                     and not ln.strip().startswith("at ")]
            return None, f"the SPICE jar failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}"
        try:
            results = {str(r["image_id"]): r["scores"]["All"]["f"] for r in json.loads(out.read_text())}
        except (ValueError, KeyError, TypeError) as err:
            return None, f"the SPICE jar wrote no scores: {type(err).__name__}: {err}"
    missing = [k for k in ids if k not in results]
    if missing:
        return None, f"the SPICE jar scored {len(results)} of {len(ids)} captions (none for {missing[0]!r})"
    scores = [_float(results[k]) for k in ids]
    mean = sum(scores) / len(scores)
    if not math.isfinite(mean):
        return None, f"the SPICE jar gave no F-score for {sum(not math.isfinite(x) for x in scores)} captions"
    return mean, None


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def caption_metrics(predictions: dict[str, str], references: dict[str, list[str]]) -> CaptionScores:
    """``bleu4``, ``meteor``, ``rouge_l``, ``cider`` and ``spice`` for predictions keyed like their
    references (each on pycocoevalcap's scale: 0-1, CIDEr-D 0-10); what cannot run is in ``unavailable``."""
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
    spice, why_spice = spice_score(gts, res)
    values = {"bleu4": float(bleu[3]), "meteor": meteor, "rouge_l": float(rouge), "cider": float(cider),
              "spice": spice}
    unavailable = {name: reason for name, reason in (("meteor", why), ("spice", why_spice)) if reason is not None}
    return CaptionScores({k: v for k, v in values.items() if v is not None}, unavailable)
