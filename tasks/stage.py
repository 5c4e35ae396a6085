"""The stage helper: one named step of a pipeline as a Prefect task that times and counts its own work.

A stage has one name, used everywhere: it is the Prefect task's name (its runs show as
``<stage>-<batch>`` in the UI, see ``flows/engine/stages.py:batch_step``), the ``stage``
column of ``stage_stats``, the ``drop_stage`` of the pairs it drops, and the row of the
``filter-dropoff`` artifact. Following datatrove's ``PipelineStep``, the helper, not the step,
does the bookkeeping::

    @stage("pair_filter")
    def filter_pairs(stats: StageStats, items, clip, thresholds) -> None:
        for item in alive(items):
            judge(stats, item, keep_pair(...))        # one verdict per item in, counted in stats

The decorated function gets a fresh ``StageStats`` per stage name as its leading arguments (a step
that judges two things, such as rendering and the visibility check, names two stages); callers
pass only the other arguments, passed through as given. The task returns a ``StageResult``: the function's return value
and the stats, timed. Time the function set itself (e.g. only the seconds inside Blender) is kept;
the rest of the elapsed time goes to the stages that set none.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import StageStats

T = TypeVar("T")


@dataclass
class StageResult(Generic[T]):
    """What a stage task returns: its value (often None: stages mark the items they were given) and
    one ``StageStats`` per stage name, in the order the decorator named them."""

    value: T
    stats: list[StageStats] = field(default_factory=list)


def stage(name: str, *more: str, **task_options: Any) -> Callable[[Callable[..., T]], Any]:
    """Decorate ``fn(stats, [stats_2, ...], *args, **kwargs)`` into a Prefect task named ``name``.

    ``more`` names further stages the same function counts. ``task_options`` go to ``prefect.task``
    (``retries``, ``tags``, ...); results are never cached, since stages pass live objects.
    """
    names = (name, *more)

    def decorate(fn: Callable[..., T]):
        params = list(inspect.signature(fn).parameters.values())
        if len(params) < len(names):
            raise TypeError(f"stage {name!r}: {fn.__qualname__} must take {len(names)} StageStats argument(s) first")

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> StageResult[T]:
            stats = [StageStats(n) for n in names]
            start = time.perf_counter()
            value = fn(*stats, *args, **kwargs)
            unset = [s for s in stats if not s.seconds]
            rest = max(0.0, time.perf_counter() - start - sum(s.seconds for s in stats))
            for s in unset:
                s.seconds = rest / len(unset)
            return StageResult(value, stats)

        # No signature is copied or rewritten: Prefect binds a call's arguments to ``(*args, **kwargs)`` as
        # given, and no caller reads a stage's parameters to find its inputs (Img-Diff's steps take a typed
        # context, ``pairsmith.tasks.imgdiff.context``).
        del run.__wrapped__
        options = {"cache_policy": NO_CACHE, **task_options}
        return task(name=name, **options)(run)

    return decorate


R = TypeVar("R")


def call_per_item(
    call: Callable[[list[T]], list[R]],
    items: list[T],
    on_error: Callable[[T, Exception], None],
) -> list[R | None]:
    """``call(items)`` (one batched model call, results in item order), isolating failures per item.

    If the batched call raises, each item is tried alone, so one bad input (a 1000x4 crop the VLM
    processor refuses, an image a model cannot decode) costs only its own item: ``on_error(item,
    error)`` is called for each item that still raises, and its result is None. A batch that fails
    for every item therefore reports the error on every item. A model that cannot load at all
    (``pairsmith.models.failures.is_model_unavailable``) is no item's failure: it is raised, so the
    run stops at once naming the model.
    """
    from pairsmith.models.failures import is_model_unavailable

    if not items:
        return []
    try:
        results = call(items)
    except Exception as err:  # noqa: BLE001 - whatever the model raised, find the items it raised for
        if is_model_unavailable(err):
            raise
        if len(items) == 1:
            on_error(items[0], err)
            return [None]
        return [result for item in items for result in call_per_item(call, [item], on_error)]
    if len(results) != len(items):
        raise ValueError(f"a batched model call returned {len(results)} results for {len(items)} items")
    return list(results)
