"""The run engine (``pairsmith.flows.engine.run``) driving a small fake flow: resume, redo, funnel, summary.

The fake flow's items are numbers ``0..n-1``; its pipeline counts two stages: ``fake_parity`` drops odd
numbers, ``fake_call`` drops the numbers told to fail with ``fake_call_error`` (an item that raised).
Each item is stored as a pair row, kept or dropped, so item-by-item redos can be checked too.
"""

from __future__ import annotations

import pytest
from prefect import flow
from pydantic import Field

from pairsmith.flows.engine.run import Batch, ItemRetry, Output, Run, RunSpec, RunSummary, declare, ordered
from pairsmith.flows.engine.run_outcome import is_error_reason
from pairsmith.storage.ids import stable_id
from pairsmith.storage.schemas import PairRow, utc_now
from pairsmith.storage.store import PairStore
from pairsmith.storage.verdict import KEEP, StageStats, Verdict

FAKE = "fake-flow"
PIPELINE = declare(FAKE, ("fake_parity", "drops odd numbers"), ("fake_call", "drops the numbers told to fail"))


class FakeSummary(RunSummary):
    items: int
    items_run: int
    pairs_kept: int
    pairs_dropped: int
    pairs_failed: int = Field(0)
    stopped_early: str | None = None
    made: list[list[int]] = []  # the items of each batch the step made, in order


def _pid(i: int) -> str:
    return stable_id(FAKE, i)


def _row(run_id: str, i: int, stage: str | None, reason: str | None) -> PairRow:
    return PairRow(pair_id=_pid(i), run_id=run_id, method=FAKE, width=1, height=1,
                   status="dropped" if reason else "kept", drop_stage=stage, drop_reason=reason, created_at=utc_now())


@flow(name=FAKE)
def fake_flow(db: str, n: int, batch_size: int, fail: list[int], per_item: bool = False,
              stop_after: int | None = None) -> FakeSummary:
    seen: list[list[int]] = []
    spec = RunSpec(FAKE, db, PIPELINE, "fake-flow-run", n, batch_size, description="fake items",
                   item_retry=ItemRetry(lambda span: [_pid(i) for i in span],
                                        lambda row: is_error_reason(row["drop_reason"])) if per_item else None)
    run = Run.start(spec)

    def step(batch: Batch) -> Output | None:
        if stop_after is not None and len(seen) >= stop_after:
            run.stop("told to stop")
            return None
        seen.append(list(batch.indices))
        # the stats in the reverse of the pipeline's order: the engine stores them in its order
        call, parity = StageStats("fake_call"), StageStats("fake_parity")
        rows = []
        for i in batch.indices:
            if i % 2:
                parity.record(Verdict.drop("fake_odd"))
                rows.append(_row(run.run_id, i, "fake_parity", "fake_odd"))
                continue
            parity.record(KEEP)
            verdict = Verdict.drop("fake_call_error") if i in fail else KEEP
            call.record(verdict)
            rows.append(_row(run.run_id, i, "fake_call", verdict.reason) if not verdict.keep
                        else _row(run.run_id, i, None, None))
        return Output({"pairs": rows}, [call, parity])

    run.execute(step)
    return run.finish(FakeSummary, items=n, items_run=run.items_run, made=seen)


def _funnel(db) -> list[tuple[str, int, int, int]]:
    from pairsmith.flows.engine.funnel import run_funnel

    return [(s.stage, s.n_in, s.n_kept, s.n_dropped) for s in run_funnel(PairStore(str(db)), "fake-flow-run")]


def _stat_rows(db) -> list[tuple[str, str, int]]:
    rows = PairStore(str(db)).read("stage_stats", columns=["batch", "stage", "stage_order"]).to_pylist()
    return sorted((r["batch"], r["stage"], r["stage_order"]) for r in rows)


def test_a_run_commits_each_batch_with_its_stats_in_pipeline_order_and_resumes_without_new_rows(tmp_path):
    db = str(tmp_path / "db.lance")
    first = fake_flow(db, 10, 4, [])
    assert first.made == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert (first.batches, first.batches_resumed, first.items_run) == (3, 0, 10)
    assert (first.pairs_kept, first.pairs_dropped, first.pairs_failed) == (5, 5, 0)
    assert _funnel(db) == [("fake_parity", 10, 5, 5), ("fake_call", 5, 5, 0)]
    stored = _stat_rows(db)
    assert stored[:2] == [("0000000-0000004", "fake_call", 1), ("0000000-0000004", "fake_parity", 0)]
    again = fake_flow(db, 10, 3, [])  # another batch size: nothing to do
    assert again.made == [] and (again.batches, again.batches_resumed, again.items_run) == (3, 3, 0)
    assert _stat_rows(db) == stored
    grown = fake_flow(db, 13, 2, [])  # more items: only the new ones, cut by the new size
    assert grown.made == [[10, 11], [12]] and grown.batches == 5 and grown.batches_resumed == 3
    assert _funnel(db)[0] == ("fake_parity", 13, 7, 6)


def test_a_batch_with_an_item_that_failed_is_redone_under_its_own_name(tmp_path):
    db = str(tmp_path / "db.lance")
    first = fake_flow(db, 10, 4, [6])
    assert first.pairs_failed == 1 and _funnel(db)[1] == ("fake_call", 5, 4, 1)
    stored = _stat_rows(db)
    redone = fake_flow(db, 10, 4, [])
    assert redone.made == [[4, 5, 6, 7]]  # the stored batch, whole, under its stored name
    assert (redone.batches, redone.batches_resumed, redone.pairs_failed) == (3, 2, 0)
    assert _stat_rows(db) == stored  # its stats replaced themselves: no new rows
    assert _funnel(db) == [("fake_parity", 10, 5, 5), ("fake_call", 5, 5, 0)]
    last = fake_flow(db, 10, 4, [])
    assert last.batches_resumed == 3 and last.made == []


def test_items_that_failed_are_redone_alone_and_their_batch_stats_restated(tmp_path):
    db = str(tmp_path / "db.lance")
    fake_flow(db, 8, 4, [2, 6], per_item=True)
    stored = _stat_rows(db)
    redone = fake_flow(db, 8, 4, [], per_item=True)
    assert redone.made == [[2], [6]]  # only the failed items, each in its stored batch
    assert redone.items_run == 2 and redone.batches == 2 and redone.batches_resumed == 0
    assert _stat_rows(db) == stored
    assert _funnel(db) == [("fake_parity", 8, 4, 4), ("fake_call", 4, 4, 0)]
    assert redone.pairs_kept == 4 and redone.pairs_failed == 0


def test_a_step_that_stops_leaves_its_batch_to_the_next_run(tmp_path):
    db = str(tmp_path / "db.lance")
    stopped = fake_flow(db, 10, 4, [], stop_after=1)
    assert stopped.stopped_early == "told to stop" and stopped.items_run == 4 and stopped.batches == 1
    resumed = fake_flow(db, 10, 4, [])
    assert resumed.made == [[4, 5, 6, 7], [8, 9]] and resumed.stopped_early is None and resumed.batches_resumed == 1


def test_stats_of_a_stage_the_pipeline_does_not_declare_are_refused():
    with pytest.raises(ValueError, match="declares no stage 'fake_other'"):
        ordered(PIPELINE, [StageStats("fake_parity"), StageStats("fake_other")])


def _house_pipelines():
    from pairsmith.filters.imgdiff.pipelines import LOAD, MAKE_PAIRS, REMOVE, REPLACE
    from pairsmith.flows import dig_render_config, evaluate_config, import_dataset, med_edit, propose_regions, recaption_config

    return [dig_render_config.PIPELINE, import_dataset.PIPELINE, med_edit.PIPELINE, propose_regions.PIPELINE,
            evaluate_config.PIPELINE, recaption_config.PIPELINE, REPLACE, REMOVE, REMOVE.with_source(MAKE_PAIRS, (LOAD,))]


def test_a_stage_name_means_one_stage_in_every_flow():
    """Issue 25: ``align`` was caption alignment in med-edit and registration in propose-regions."""
    by_name: dict[str, set[int]] = {}
    users: dict[str, set[str]] = {}
    for pipeline in _house_pipelines():
        for s in pipeline.stages:
            by_name.setdefault(s.name, set()).add(id(s))  # one Stage object: Img-Diff's two flows share steps
            users.setdefault(s.name, set()).add(pipeline.method)
    shared = {name: sorted(users[name]) for name, ids in by_name.items() if len(ids) > 1}
    assert not shared, f"stage names declared by more than one flow, each its own way: {shared}"


def test_stats_stored_under_a_name_from_before_the_rename_count_under_todays_and_keep_their_ids(tmp_path):
    """A batch stored with ``plan`` (dig-render before issue 25) sums with batches stored as ``scene_plan``,
    and a redo of it under today's name replaces its row (the id hashes the first name)."""
    from pairsmith.flows.engine.funnel import run_funnel
    from pairsmith.storage.ids import stable_id as sid
    from pairsmith.tasks.write_batch import stage_rows

    store = PairStore(str(tmp_path / "db.lance"))
    old = stage_rows("r", "dig-render", "0000000-0000002", [StageStats("plan", 2, 2, 0)])
    old = [row.model_copy(update={"stage": "plan"}) for row in old]  # as main stored it
    assert old[0].stat_id == sid("r", "plan", "0000000-0000002")
    store.upsert("stage_stats", old + stage_rows("r", "dig-render", "0000002-0000004", [StageStats("scene_plan", 2, 1, 1)]))
    assert [(s.stage, s.n_in, s.n_kept) for s in run_funnel(store, "r")] == [("scene_plan", 4, 3)]
    store.upsert("stage_stats", stage_rows("r", "dig-render", "0000000-0000002", [StageStats("scene_plan", 2, 2, 0)]))
    assert store.count("stage_stats") == 2
