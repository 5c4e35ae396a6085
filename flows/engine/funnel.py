"""A run's drop-off funnel: summed from stored stage stats, printed, and shown in the Prefect UI.

The funnel is always read back from the ``stage_stats`` table, never from what one invocation
saw, so a run resumed after a crash reports every batch, not just the ones it redid.
"""

from __future__ import annotations

from collections import Counter

from pairsmith.filters.pipeline import merged_order
from pairsmith.storage.stage_names import current
from pairsmith.storage.verdict import StageStats
from pairsmith.storage.store import PairStore, sql_literal

DROPOFF_ARTIFACT_KEY = "filter-dropoff"


def run_funnel(store: PairStore, run_id: str) -> list[StageStats]:
    rows = store.read("stage_stats", where=f"run_id = {sql_literal(run_id)}").to_pylist()
    return funnel_from_rows(rows)


def funnel_from_rows(rows: list[dict]) -> list[StageStats]:
    """Sum per-batch rows into one StageStats per stage, in pipeline order.

    Each batch stored its stages in the order it ran them; the funnel keeps every batch's order
    (``merged_order``), so a stage added by an upgrade half-way through a run sits where it runs,
    not after the stages that batches written before the upgrade numbered the same."""
    total: dict[str, StageStats] = {}
    by_batch: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        stage = current(row.get("flow"), row["stage"])  # a name stored before it was unique: today's
        by_batch.setdefault(row["batch"], []).append((row["stage_order"], stage))
        reasons = Counter({r["reason"]: r["count"] for r in row["drop_reasons"]})
        part = StageStats(stage, row["n_in"], row["n_kept"], row["n_dropped"], reasons, row["seconds"])
        total[stage] = total[stage] + part if stage in total else part
    sequences = sorted(([s for _, s in sorted(seq)] for seq in by_batch.values()), key=len, reverse=True)
    return [total[s] for s in merged_order(sequences)]


def _reasons_text(stats: StageStats, n: int | None = 3, empty: str = "-") -> str:
    return ", ".join(f"{reason} ({count})" for reason, count in stats.top_reasons(n)) or empty


def run_status(store: PairStore, run_id: str) -> str:
    """``complete``, or ``incomplete`` and why: batches whose items failed with errors (the same command
    retries them), a gap in the run's numbered batches (it was interrupted), or fewer items stored than
    its latest start asked for (``run_starts``: stopped after its last stored batch, or still running).
    Batches of two invocations at once may overlap; only a hole is a gap."""
    from pairsmith.flows.engine.resume import batch_span
    from pairsmith.flows.engine.run_outcome import batches_with_errors

    errors = batches_with_errors(store, run_id)
    batches = set(store.read("stage_stats", where=f"run_id = {sql_literal(run_id)}", columns=["batch"]).column("batch").to_pylist())
    spans = sorted((span.start, span.stop) for b in batches if (span := batch_span(b)) is not None)
    numbered = bool(spans) and len(spans) == len(batches)
    merged = _merged(spans)
    gaps = numbered and (merged[0][0] > 0 or len(merged) > 1)
    if errors:
        return (f"incomplete: {len(errors)} of {len(batches)} batches have items that failed with errors "
                "(the same command retries them)")
    if gaps:
        return "incomplete: interrupted, batches missing (the same command resumes it)"
    asked = store.read("run_starts", where=f"run_id = {sql_literal(run_id)}", columns=["items"]).column("items").to_pylist()
    if asked and numbered:
        stored = sum(max(0, min(end, asked[0]) - begin) for begin, end in merged)
        if stored < asked[0]:
            return (f"incomplete: {stored} of the {asked[0]} items its last start asked for are stored "
                    "(stopped early, or still running; the same command resumes it)")
    return f"complete ({len(batches)} batches)"


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ``(begin, end)`` spans with overlapping ones joined."""
    out: list[tuple[int, int]] = []
    for begin, end in spans:
        if out and begin <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((begin, end))
    return out


def dropoff_table(funnel: list[StageStats]) -> list[dict]:
    """Rows of the ``filter-dropoff`` artifact: one per stage."""
    return [
        {
            "stage": s.stage,
            "in": s.n_in,
            "kept": s.n_kept,
            "dropped": s.n_dropped,
            # "none", not "-": the UI renders a cell as Markdown, where a lone "-" is a list bullet
            "top reasons": _reasons_text(s, empty="none"),
            "seconds": round(s.seconds, 2),
        }
        for s in funnel
    ]


def format_funnel(funnel: list[StageStats], reasons: int | None = 3) -> str:
    """A plain-text table for the terminal: the top ``reasons`` drop reasons per stage (None: all)."""
    if not funnel:
        return "(no stage stats)"
    header = ("stage", "in", "kept", "dropped", "top reasons")
    rows = [(s.stage, str(s.n_in), str(s.n_kept), str(s.n_dropped), _reasons_text(s, reasons)) for s in funnel]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = []
    for r in [header, *rows]:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in (1, 2, 3)] + [r[4]]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def publish_dropoff(run_id: str, funnel: list[StageStats]) -> None:
    """Publish the funnel as the keyed table artifact the Prefect UI lists under Artifacts."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        table=dropoff_table(funnel),
        key=DROPOFF_ARTIFACT_KEY,
        description=f"Drop-off per stage for run `{run_id}`: in = kept + dropped at every stage.",
    )


def read_dropoff_artifact(flow_run_id) -> list[dict] | None:
    """The ``filter-dropoff`` table a flow run published, read back through the Prefect API."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from pairsmith.flows.engine.prefect_compat import install

    install()  # Prefect 3.8.8's client sends null paging fields its server rejects under fastapi<0.155
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[DROPOFF_ARTIFACT_KEY]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            ),
            limit=1,
        )
    if not found:
        return None
    data = found[0].data
    return json.loads(data) if isinstance(data, str) else data
