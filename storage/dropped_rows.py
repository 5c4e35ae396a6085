"""A run's dropped rows, one per dropped item, with the stage, the reason and ``drop_detail``.

What ``pairsmith inspect`` lists and ``contact-sheet --status dropped`` samples; also a run's stage
totals read from ``stage_stats`` (``stage_totals``), for readers in ``storage``. A run drops items in
three ways, and each is read from where it is stored (never from image columns):

* **pairs of the run** (``pairs.run_id``) with ``status = 'dropped'``: ``drop_stage``, ``drop_reason``,
  ``drop_detail`` (renders, imports, Gemini edits, Img-Diff pair filters);
* **regions of the run** (``regions.run_id``) with ``status = 'dropped'``: ``reason`` and ``drop_detail``;
  their stage is the funnel stage that counts that reason, else the stage the reason is named after
  (``confidence_too_low``: ``confidence``), else ``regions``;
* **pairs a ``refilter`` run dropped** in another run (``drop_detail = 'refilter <run id>'``);
* **verdicts a run wrote on other runs' pairs** (``propose-regions``: ``pairs.verdict_run_id``): a pair
  with no alignment (stage ``register``, ``align_reason``), a whole-image edit (stage ``extent``,
  ``change_extent_reason``, the detail gives ``change_extent_score``), a local pair with no region
  (``region_propose`` / ``propose_no_regions``) or with no region above the confidence floor (``confidence`` /
  ``confidence_too_low``). Only the latest run that processed a pair holds its verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pairsmith.storage.stage_names import current
from pairsmith.storage.store import PairStore, sql_literal
from pairsmith.storage.verdict import StageStats


@dataclass(frozen=True)
class DroppedRow:
    """One dropped item: ``kind`` is ``pair`` or ``region``; ``region_id`` is None for a pair."""

    stage: str
    reason: str
    kind: str
    pair_id: str
    region_id: str | None
    detail: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def dropped_rows(store: PairStore, run_id: str, stages: tuple[str, ...] = (), reasons: tuple[str, ...] = ()) -> list[DroppedRow]:
    """Every dropped row of ``run_id``, ordered by stage (funnel order), reason and id; ``stages`` /
    ``reasons`` (empty: all) keep only rows of those stages / reasons."""
    funnel = stage_totals(store, run_id)
    order = {s.stage: i for i, s in enumerate(funnel)}
    stage_of = {reason: s.stage for s in reversed(funnel) for reason in s.reasons}
    in_run = f"run_id = {sql_literal(run_id)}"
    flows = store.read("stage_stats", where=in_run, columns=["flow"]).column("flow").to_pylist()
    rows: list[DroppedRow] = []
    for p in store.read("pairs", where=f"{in_run} AND status = 'dropped'",
                        columns=["pair_id", "drop_stage", "drop_reason", "drop_detail"]).to_pylist():
        reason = p["drop_reason"] or "unknown"
        rows.append(DroppedRow(current(flows[0] if flows else None, p["drop_stage"]) or stage_of.get(reason, "unknown"), reason, "pair", p["pair_id"],
                               None, p["drop_detail"]))
    regions = store.read("regions", where=in_run, columns=["region_id", "pair_id", "status", "reason", "drop_detail"])
    regions = regions.to_pylist()
    for r in regions:
        if r["status"] == "dropped":
            reason = r["reason"] or "unknown"
            stage = stage_of.get(reason) or next((s for s in order if reason.startswith(s + "_")), "regions")
            rows.append(DroppedRow(stage, reason, "region", r["pair_id"], r["region_id"],
                                   r["drop_detail"]))
    for p in store.read("pairs", where=f"status = 'dropped' AND drop_detail = {sql_literal('refilter ' + run_id)}",
                        columns=["pair_id", "drop_stage", "drop_reason", "drop_detail"]).to_pylist():
        reason = p["drop_reason"] or "unknown"  # a refilter run re-judged another run's pair and dropped it
        rows.append(DroppedRow(p["drop_stage"] or stage_of.get(reason, "unknown"), reason, "pair", p["pair_id"],
                               None, p["drop_detail"]))
    rows += _verdicts(store, run_id, regions)
    if stages:
        rows = [r for r in rows if r.stage in stages]
    if reasons:
        rows = [r for r in rows if r.reason in reasons]
    return sorted(rows, key=lambda r: (order.get(r.stage, len(order)), r.stage, r.reason, r.pair_id, r.region_id or ""))


def has_column(store: PairStore, table: str, column: str) -> bool:
    """Whether ``table`` exists with ``column`` (never creates the table: readers write nothing)."""
    return table in store.table_names() and column in store.table(table).schema.names


def stage_totals(store: PairStore, run_id: str) -> list[StageStats]:
    """A run's stage stats summed over its batches, in stage order (the order ``pairsmith stats`` prints
    them in, for runs whose batches agree on it)."""
    return sum_stage_rows(store.read("stage_stats", where=f"run_id = {sql_literal(run_id)}").to_pylist())


def sum_stage_rows(rows: list[dict]) -> list[StageStats]:
    """``stage_stats`` rows (of one run or several) summed per stage, in the order the stages ran (a
    stage's lowest ``stage_order``; runs of one flow number their stages alike)."""
    from collections import Counter

    total: dict[str, StageStats] = {}
    position: dict[str, int] = {}
    for row in rows:
        stage = current(row.get("flow"), row["stage"])  # a name stored before it was unique: today's
        part = StageStats(stage, row["n_in"], row["n_kept"], row["n_dropped"],
                          Counter({r["reason"]: r["count"] for r in row["drop_reasons"] or []}), row["seconds"])
        total[stage] = total[stage] + part if stage in total else part
        position[stage] = min(position.get(stage, row["stage_order"]), row["stage_order"])
    return sorted(total.values(), key=lambda s: (position[s.stage], s.stage))


def format_stage_totals(stages: list[StageStats], reasons: int | None = 3) -> str:
    """A plain-text funnel: stage, in, kept, dropped and the top ``reasons`` (None: all)."""
    header = ("stage", "in", "kept", "dropped", "reasons")
    rows = [(s.stage, str(s.n_in), str(s.n_kept), str(s.n_dropped),
             ", ".join(f"{r} ({c})" for r, c in s.top_reasons(reasons)) or "-") for s in stages]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    return "\n".join("  ".join([r[0].ljust(widths[0]), *(r[i].rjust(widths[i]) for i in (1, 2, 3)), r[4]])
                     for r in [header, *rows])


def _verdicts(store: PairStore, run_id: str, regions: list[dict]) -> list[DroppedRow]:
    """The per-pair verdicts a propose-regions run wrote on pairs it does not own."""
    if not has_column(store, "pairs", "verdict_run_id"):  # no pairs yet, or a pinned version older than the column
        return []
    columns = ["pair_id", "align_reason", "change_extent", "change_extent_reason", "change_extent_score"]
    pairs = store.read("pairs", where=f"verdict_run_id = {sql_literal(run_id)}", columns=columns).to_pylist()
    kept_boxes: dict[str, int] = {}
    for r in regions:
        kept_boxes[r["pair_id"]] = kept_boxes.get(r["pair_id"], 0) + (r["status"] == "kept")
    out = []
    for p in pairs:
        pid = p["pair_id"]
        if p["change_extent"] is None:
            out.append(DroppedRow("register", p["align_reason"] or "align_no_transform", "pair", pid, None, None))
        elif p["change_extent"] == "global":
            score = p["change_extent_score"]
            detail = None if score is None else f"change_extent_score {score:.2f} (share of the before image not shown unchanged)"
            out.append(DroppedRow("extent", p["change_extent_reason"] or "extent_global", "pair", pid, None, detail))
        elif pid not in kept_boxes:
            out.append(DroppedRow("region_propose", "propose_no_regions", "pair", pid, None, None))
        elif kept_boxes[pid] == 0:
            out.append(DroppedRow("confidence", "confidence_too_low", "pair", pid, None, None))
    return out


def format_table(rows: list[DroppedRow], detail_chars: int = 80) -> str:
    """A plain-text table (stage, reason, pair, region, detail cut to ``detail_chars``) and a count line."""
    header = ("stage", "reason", "pair_id", "region_id", "drop_detail")
    body = [(r.stage, r.reason, r.pair_id, r.region_id or "-", _cut(r.detail, detail_chars)) for r in rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(4)]
    lines = ["  ".join([*(row[i].ljust(widths[i]) for i in range(4)), row[4]]).rstrip() for row in [header, *body]]
    return "\n".join(lines)


def _cut(text: str | None, n: int) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


__all__ = ["DroppedRow", "dropped_rows", "format_stage_totals", "format_table", "has_column", "stage_totals"]
