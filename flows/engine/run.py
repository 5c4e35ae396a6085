"""The run engine: what every batched flow does around its steps, written once.

A batched flow is its config, its items, its declared ``Pipeline`` and a *step*: a function from one
``Batch`` (its name and item indices) to the rows and stage stats it made (``Output``). The engine
owns the rest, following datatrove's executor (one executor runs any pipeline, the base class counts
and times):

* the store: opened, and its reachability checked before any work;
* the run id: the config's content id, or the id of the same content stored under a sized id
  (``resume.resolve_run_id``), and the start recorded by ``flow_runs.claim_run``;
* resume (``pairsmith.flows.engine.resume``): stored batches are skipped; batches with items that
  failed with an error (plus any the flow names, ``RunSpec.redo``) are redone, whole or, with
  ``RunSpec.item_retry``, item by item inside their stored batch;
* batch naming (``batching.batch_name``: the items' index range; a redone batch keeps its name) and
  the task run names and GPU tags of its steps (``Batch.step``, ``stages.batch_step``);
* progress (``progress.RunProgress``): per finished item, in the terminal and in the Prefect UI;
* the single commit per batch (``tasks.write_batch``) with the batch's stage stats in the order the
  pipeline declares them: the one place a flow's stage order is written;
* the funnel and its ``filter-dropoff`` artifact, and one ``RunSummary`` that flows extend with
  their own fields.

Batch names, run ids and what a stored batch counts are those of the hand-written loops this replaced,
so a database made before resumes with no new rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from pairsmith.filters.pipeline import Pipeline
from pairsmith.flows.engine.batching import batch_name
from pairsmith.flows.engine.flow_runs import claim_run
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.flows.engine.progress import RunProgress
from pairsmith.flows.engine.resume import ItemRedo, ResumePlan, plan_item_redos, plan_resume, resolve_run_id
from pairsmith.flows.engine.run_outcome import batches_with_errors, error_counts
from pairsmith.flows.engine.stages import batch_step
from pairsmith.storage.store import PairStore, open_store, sql_literal
from pairsmith.storage.verdict import StageStats

S = TypeVar("S", bound="RunSummary")


class RunSummary(BaseModel):
    """What every batched run reports; a flow's summary extends it with its own fields.

    Counts a subclass declares among ``pairs_kept``, ``pairs_dropped``, ``pairs_failed``, ``samples``,
    ``regions`` and ``regions_kept`` are filled by ``Run.finish`` from the store (this run's rows) and
    the funnel, unless the flow passes them."""

    run_id: str
    db: str
    batches: int = Field(description="the run's batches stored after this invocation")
    batches_resumed: int = Field(description="stored batches this invocation did not touch")
    seconds: float = Field(description="wall time of this invocation, in seconds")


@dataclass
class ItemRetry:
    """Redo single items of a stored batch instead of the whole batch (``resume.plan_item_redos``):
    ``ids_of(span)`` are the pair ids of a batch's items, ``should_retry(row)`` says which stored
    dropped pair rows to make again."""

    ids_of: Callable[[range], list[str]]
    should_retry: Callable[[dict], bool]


@dataclass
class RunSpec:
    """One run of a batched flow, as the engine needs it.

    ``flow``: the flow's name (``stage_stats.flow``, ``run_starts``, the progress artifact key ``<flow>-progress``
    and the prefix of its sized legacy ids). ``run_id``: the config's content id; ``legacy_id(n_items,
    batch_size)``: the id the same content had under a sized id (None: never had one). ``n_items``:
    the items this invocation asks for, indices ``0..n_items-1``. ``redo(store, run_id)``: stored batches
    to redo besides those with errors (e.g. a changed input file); ``error_also``: drop reasons that
    count as errors here. ``terminal``: draw a progress bar (None: when the CLI asked for bars)."""

    flow: str
    db: str
    pipeline: Pipeline
    run_id: str
    n_items: int
    batch_size: int
    legacy_id: Callable[[int, int], str] | None = None
    redo: Callable[[PairStore, str], set[str]] | None = None
    error_also: tuple[str, ...] = ()
    item_retry: ItemRetry | None = None
    description: str = ""
    terminal: bool | None = None
    requested: tuple[int, int] | None = None  # the sizes a sized legacy id counted; default (n_items, batch_size)


@dataclass
class Batch:
    """One batch of a run: its stored name, the indices of its items (a range for a batch run whole,
    the chosen indices for items redone alone) and, for those, the stored batch's ``ItemRedo``."""

    name: str
    indices: Sequence[int]
    redo: ItemRedo | None = None
    run: "Run | None" = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.indices)

    def step(self, task, gpu: bool = False):
        """``task`` with its run named ``<task>-<batch>`` (a ``tag:gpu`` slot when ``gpu``)."""
        return batch_step(task, self.name, gpu)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` items of this batch as finished (a step that reports per item); the engine
        counts the rest when the batch is committed."""
        if self.run is not None:
            self.run.advance(self, n)


@dataclass
class Output:
    """What a step made of one batch: rows per table, column ``updates`` by key, and its stage stats
    (any order: the engine writes them in the pipeline's)."""

    tables: dict[str, list] = field(default_factory=dict)
    stats: list[StageStats] = field(default_factory=list)
    updates: dict[str, list[dict]] | None = None


def ordered(pipeline: Pipeline, stats: Iterable[StageStats]) -> list[StageStats]:
    """``stats`` in the order ``pipeline`` declares its stages; a stage it does not declare is an error
    (a step counting under a name the pipeline, the funnel and refilter do not know)."""
    stats = list(stats)
    names = pipeline.names
    unknown = [s.stage for s in stats if s.stage not in names]
    if unknown:
        raise ValueError(f"pipeline {pipeline.method!r} declares no stage {unknown[0]!r} (its stages: {list(names)})")
    return sorted(stats, key=lambda s: names.index(s.stage))


class Run:
    """A started run: its store, id and resume plan; ``execute`` runs its batches through a step."""

    def __init__(self, spec: RunSpec, store: PairStore, run_id: str, plan: ResumePlan, redos: list[ItemRedo]):
        self.spec, self.store, self.run_id, self.plan, self.redos = spec, store, run_id, plan, redos
        self.started = time.perf_counter()
        self.items_run = 0  # items this invocation ran (new, redone whole, redone alone)
        self.new_batches = 0  # batches this invocation committed that were not stored before
        self.stopped: str | None = None
        self._progress: RunProgress | None = None
        self._advanced: dict[str, int] = {}

    @classmethod
    def start(cls, spec: RunSpec, store: PairStore | None = None) -> "Run":
        """Open the store (checked reachable), resolve the run id, record the start and plan the resume."""
        started = time.perf_counter()
        if store is None:
            store = open_store(spec.db)
            store.check_reachable()
        run_id, legacy = resolve_run_id(store, spec.flow, spec.run_id, spec.legacy_id,
                                        spec.requested or (spec.n_items, spec.batch_size))
        claim_run(run_id, store, spec.flow, spec.n_items)  # a flow run of it killed with -9: marked CRASHED
        redo = batches_with_errors(store, run_id, also=spec.error_also)
        if spec.redo is not None:
            redo |= spec.redo(store, run_id)
        redos: list[ItemRedo] = []
        if spec.item_retry is not None:
            redos, redo = plan_item_redos(store, run_id, redo, spec.item_retry.ids_of, spec.item_retry.should_retry)
        plan = plan_resume(store, run_id, spec.n_items, spec.batch_size, redo=redo, legacy=legacy)
        run = cls(spec, store, run_id, plan, redos)
        run.started = started
        if plan.stored_batches:
            _log("run %s%s: %d of %d items already stored; %d to do, %d to do again", run_id,
                 " (stored under a sized id)" if legacy else "", plan.done_items, spec.n_items, plan.new_items,
                 run.retried_items + plan.items_to_do - plan.new_items)
        return run

    # --- the batches -------------------------------------------------------------------------------------

    @property
    def retried_items(self) -> int:
        return sum(len(r.indices) for r in self.redos)

    def batches(self) -> list[Batch]:
        """This invocation's batches: new items and batches redone whole first, then items redone alone."""
        return ([Batch(batch_name(r), r, run=self) for r in self.plan.todo]
                + [Batch(r.batch, list(r.indices), r, run=self) for r in self.redos])

    def execute(self, step: Callable[[Batch], Output | None], batches: Sequence[Batch] | None = None) -> "Run":
        """Run ``step`` over ``batches`` (default: all of this invocation's) in order and commit each result;
        a step returning None stops the run there (``stop`` says why), its batch uncommitted. Draws the
        progress bar unless one is open (``progress``)."""
        with nullcontext() if self._progress is not None else self.progress():
            for batch in self.batches() if batches is None else batches:
                out = step(batch)
                if out is None:
                    break
                self.commit(batch, out)
        return self

    @contextmanager
    def progress(self) -> Iterator[RunProgress]:
        """The run's progress bar over all its items, stored ones counted as done, open while in ``with``."""
        spec = self.spec
        total = self.plan.done_items + self.plan.items_to_do + self.retried_items
        with RunProgress(key=f"{spec.flow}-progress", total=total, done=self.plan.done_items,
                         description=spec.description, terminal=spec.terminal) as bar:
            self._progress = bar
            try:
                yield bar
            finally:
                self._progress = None

    def advance(self, batch: Batch, n: int = 1) -> None:
        if self._progress is not None and n:
            self._progress.advance(n)
            self._advanced[batch.name] = self._advanced.get(batch.name, 0) + n

    def stop(self, why: str) -> None:
        """End the run early (after the batch being made, which is not committed): ``why`` goes to the
        log and the summary's ``stopped_early``."""
        self.stopped = why
        _log("run %s stops early: %s", self.run_id, why, warning=True)

    def commit(self, batch: Batch, out: Output) -> None:
        """The batch's one commit: its rows, then its stage stats in pipeline order (restated over the
        stored batch's for items redone alone); then its items count as done."""
        stats = ordered(self.spec.pipeline, out.stats)
        if batch.redo is not None:
            stats = ordered(self.spec.pipeline, batch.redo.restated(stats))
        self.write(batch.name, out.tables, stats, out.updates)
        self.items_run += len(batch)
        if batch.redo is None and batch.name not in self.plan.redone:
            self.new_batches += 1
        if self._progress is not None:
            self._progress.advance(max(0, len(batch) - self._advanced.pop(batch.name, 0)))
            self._progress.flush()

    def write(self, name: str, tables: dict[str, list], stats: list[StageStats] = (),
              updates: dict[str, list[dict]] | None = None):
        """One commit through the single writer under batch ``name`` (a step's batch, or a named batch
        of the run such as evaluate's ``select`` or a run-wide pass after the last batch)."""
        from pairsmith.tasks.write_batch import write_batch

        return batch_step(write_batch, name)(self.spec.db, self.run_id, self.spec.flow, name, tables, list(stats),
                                             updates)

    # --- the end -----------------------------------------------------------------------------------------

    @property
    def n_batches(self) -> int:
        return self.plan.stored_batches + self.new_batches

    @property
    def batches_resumed(self) -> int:
        return self.plan.stored_batches - len(self.plan.redone) - len(self.redos)

    def funnel(self) -> list[StageStats]:
        return run_funnel(self.store, self.run_id)

    def finish(self, summary: type[S], **fields: Any) -> S:
        """Publish the funnel and build the run's summary: the engine's fields, the store's counts the
        summary declares, and the flow's own ``fields``."""
        funnel = self.funnel()
        if funnel:
            publish_dropoff(self.run_id, funnel)
        in_run = f"run_id = {sql_literal(self.run_id)}"
        counts: dict[str, Callable[[], Any]] = {
            "pairs_kept": lambda: self.store.count("pairs", f"{in_run} AND status = 'kept'"),
            "pairs_dropped": lambda: self.store.count("pairs", f"{in_run} AND status = 'dropped'"),
            "pairs_failed": lambda: sum(error_counts(funnel).values()),
            "samples": lambda: self.store.count("samples", in_run),
            "regions": lambda: self.store.count("regions", in_run),
            "regions_kept": lambda: self.store.count("regions", f"{in_run} AND status = 'kept'"),
            "stopped_early": lambda: self.stopped,
        }
        values = {"run_id": self.run_id, "db": self.spec.db, "batches": self.n_batches,
                  "batches_resumed": self.batches_resumed,
                  "seconds": round(time.perf_counter() - self.started, 3)}
        values.update({k: get() for k, get in counts.items() if k in summary.model_fields and k not in fields})
        values.update(fields)
        return summary(**values)


def _log(message: str, *args: Any, warning: bool = False) -> None:
    import logging

    try:
        from prefect import get_run_logger

        logger = get_run_logger()
    except Exception:  # outside a flow run (a unit test of the engine)
        logger = logging.getLogger("pairsmith.run")
    (logger.warning if warning else logger.info)(message, *args)


def declare(method: str, *stages: tuple[str, str]) -> Pipeline:
    """A pipeline of ``(name, what it does)`` stages judged per pair, in the order they run (stored
    order, funnel order): how a flow without keep rules of its own declares its stages as data."""
    from pairsmith.filters.pipeline import PAIR, Stage

    return Pipeline(method, tuple(Stage(name, PAIR, doc=doc) for name, doc in stages))
