"""The MED benchmark as §3.3 builds it, once a run's batches are all stored.

MED §3.3: "We select image pairs with high semantic similarity (CLIP cosine similarity > 0.95), and
for each pair, generate nine rephrased questions (see Appendix D). GPT-4o produces the correct answer
and three subtle distractors for each question. [...] benchmark samples are excluded from the
fine-tuning dataset. The final benchmark contains 165 questions evenly distributed across all edit
types": 11 types x 15. Here:

- candidates: the run's kept pairs whose CLIP cosine is above ``similarity.bench_clip_sim`` (0.95,
  ``bench_candidate``), filed under their difference type (MED Fig. 11's TYPE, the samples'
  ``category``);
- per type, candidates are taken in a fixed order drawn from the pair id (``bench_order``: the same
  whatever the batch size or the order pairs were made in) until ``per_type`` (15) have a benchmark
  item; a pair whose answers do not parse is counted (its reason) and the next candidate is asked;
- each selected pair gets one ``med-mcq`` sample (split ``bench``): one of Fig. 15's nine phrasings
  (drawn from the pair id; 165 questions in all as in §3.3, so one phrasing per pair), the answer
  writer's right answer (Fig. 16, from Fig. 11's difference) and three wrong answers (Fig. 17);
- only the selected pairs are withheld from training: their ``med-diff-qa`` sample moves to split
  ``bench``; every other pair, candidates not selected included, keeps its train/val/test split.

Resume: pairs that already have their benchmark item keep it and count towards ``per_type``; only
the missing items are asked for (a type still short asks its earlier failures again). The stage row
``med-bench`` (batch ``bench`` of ``stage_stats``) holds the latest invocation's counts: items kept
(built before or now) and the reasons of this invocation's failed answers. The manual verification of §3.3 is not automated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.failures import failure_reason
from pairsmith.models.adapters.role_chat import RoleChat
from pairsmith.models.adapters.vlm_chat import VlmRequest
from pairsmith.storage.ids import stable_hash
from pairsmith.storage.schemas import SampleRow
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.med import prompts as P
from pairsmith.tasks.med.prompts import CATEGORIES
from pairsmith.tasks.med.samples import mcq_sample, question_for

BENCH_STAGE = "med-bench"
BENCH_BATCH = "bench"


class BenchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    per_type: int = Field(15, ge=0, le=100_000, description="benchmark items per difference type (MED §3.3: "
                          "165 questions over 11 types = 15 each); 0 builds no benchmark")


@dataclass(frozen=True)
class BenchCandidate:
    pair_id: str
    category: str  # MED Fig. 11's TYPE
    difference: str  # MED Fig. 11's DIFFERENCE: the input of Figs. 16-17


@dataclass
class BenchOutcome:
    selected: dict[str, list[str]] = field(default_factory=dict)  # type -> pair ids, in bench order
    stats: StageStats = field(default_factory=lambda: StageStats(BENCH_STAGE))


def bench_order(pair_id: str) -> str:
    """The order candidates of one type are taken in: from the pair id only."""
    return stable_hash(["med-bench", pair_id], 16)


def select_bench(candidates: list[BenchCandidate], per_type: int, built: set[str] = frozenset(),
                 failed: set[str] = frozenset()) -> dict[str, list[str]]:
    """Per type, the pairs of the benchmark: those ``built`` already, then candidates in ``bench_order``
    (skipping ``failed`` ones) until ``per_type``. A type with fewer candidates has fewer items."""
    by_type: dict[str, list[BenchCandidate]] = {}
    for c in candidates:
        by_type.setdefault(c.category, []).append(c)
    out: dict[str, list[str]] = {}
    for category in sorted(by_type, key=lambda c: (CATEGORIES.index(c) if c in CATEGORIES else 99, c)):
        ordered = sorted(by_type[category], key=lambda c: bench_order(c.pair_id))
        chosen = [c.pair_id for c in ordered if c.pair_id in built][:per_type]
        chosen += [c.pair_id for c in ordered if c.pair_id not in built and c.pair_id not in failed][
            : max(0, per_type - len(chosen))]
        out[category] = sorted(chosen, key=bench_order)
    return out


def write_answers(writer: RoleChat, todo: list[BenchCandidate], stats: StageStats
                  ) -> dict[str, tuple[str, list[str]]]:
    """Right answer (Fig. 16), then three wrong ones (Fig. 17) for each candidate; pair id -> (right,
    wrong). A failed or unparseable reply is counted in ``stats`` and that pair gets none."""
    right: dict[str, str] = {}
    answers = writer.ask_batch([VlmRequest((), P.right_answer_prompt(c.difference)) for c in todo])
    for c, answer in zip(todo, answers):
        try:
            if isinstance(answer, Exception):
                raise answer
            right[c.pair_id] = P.parse_right_answer(answer)
        except P.Unparsed as err:
            stats.record(Verdict.drop(err.reason))
        except Exception as err:  # noqa: BLE001 - the writer failed for this pair only
            stats.record(Verdict.drop(failure_reason(BENCH_STAGE, err)))
    asked = [c for c in todo if c.pair_id in right]
    out: dict[str, tuple[str, list[str]]] = {}
    answers = writer.ask_batch([VlmRequest((), P.wrong_answers_prompt(c.difference, right[c.pair_id]))
                                for c in asked])
    for c, answer in zip(asked, answers):
        try:
            if isinstance(answer, Exception):
                raise answer
            out[c.pair_id] = (right[c.pair_id], P.parse_wrong_answers(answer, right[c.pair_id]))
            stats.record(KEEP)
        except P.Unparsed as err:
            stats.record(Verdict.drop(err.reason))
        except Exception as err:  # noqa: BLE001
            stats.record(Verdict.drop(failure_reason(BENCH_STAGE, err)))
    return out


def plan_bench(candidates: list[BenchCandidate], per_type: int, built: set[str], writer_answers
               ) -> tuple[dict[str, list[str]], dict[str, tuple[str, list[str]]]]:
    """Rounds of ``select_bench`` and ``writer_answers(todo) -> {pair id: answers}`` until every type has
    ``per_type`` items or no candidate is left; returns the selection and the new answers."""
    failed: set[str] = set()
    new: dict[str, tuple[str, list[str]]] = {}
    while True:
        selected = select_bench(candidates, per_type, built | set(new), failed)
        todo = [c for c in candidates if c.pair_id in {p for ids in selected.values() for p in ids}
                and c.pair_id not in built and c.pair_id not in new]
        if not todo:
            return selected, new
        got = writer_answers(todo)
        new.update(got)
        failed |= {c.pair_id for c in todo if c.pair_id not in got}


@task(name=BENCH_STAGE, cache_policy=NO_CACHE)
def build_bench(db_uri: str, run_id: str, flow_name: str, writer: RoleChat, settings: BenchSettings) -> BenchOutcome:
    """Select the run's benchmark pairs, write their MCQs, and withhold them (only them) from training."""
    from pairsmith.tasks.write_batch import write_batch

    store = open_store(db_uri)
    run = f"run_id = {sql_literal(run_id)}"
    outcome = BenchOutcome()
    if settings.per_type == 0:
        return outcome
    pairs = {r["pair_id"]: r for r in store.read(
        "pairs", where=f"{run} AND status = 'kept' AND bench_candidate = true",
        columns=["pair_id", "difference"]).to_pylist()}
    samples = store.read("samples", where=f"{run} AND (task = 'med-diff-qa' OR task = 'med-mcq')").to_pylist()
    qa = {s["pair_id"]: s for s in samples if s["task"] == "med-diff-qa"}
    built = {s["pair_id"] for s in samples if s["task"] == "med-mcq"} & set(pairs)
    candidates = [BenchCandidate(pid, qa[pid]["category"], row["difference"])
                  for pid, row in sorted(pairs.items()) if pid in qa and qa[pid]["category"] and row["difference"]]
    stats = outcome.stats
    for _ in built:
        stats.record(KEEP)
    selected, answers = plan_bench(candidates, settings.per_type, built,
                                   lambda todo: write_answers(writer, todo, stats))
    outcome.selected = selected
    by_id = {c.pair_id: c for c in candidates}
    rows: list[SampleRow] = []
    for pid, (right, wrong) in answers.items():
        rows.append(mcq_sample(pair_id=pid, run_id=run_id, correct=right, wrong=wrong,
                               category=by_id[pid].category, split="bench", question=question_for(pid, "bench")))
    chosen = {p for ids in selected.values() for p in ids}
    for pid in chosen:
        if qa[pid]["split"] != "bench":
            rows.append(SampleRow(**{**qa[pid], "split": "bench"}))
    write_batch(db_uri, run_id, flow_name, BENCH_BATCH, {"samples": rows}, [stats])
    return outcome
