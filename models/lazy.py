"""Adapters that are cheap to build and to pickle, and load their weights once per process.

Prefect and Ray ship task arguments to workers; an adapter holding loaded weights would ship
gigabytes. A ``LazyModel`` keeps only its pydantic config; ``loaded()`` builds the model on first
use and caches it per process under (adapter class, config), so every task in a worker shares it.

A load that fails is remembered for ``FAILED_LOAD_SECONDS``: the batches after it fail at once with
the same error (each still a per-item error, asked again by the next run) instead of paying the
load again. Without ``HF_HUB_OFFLINE`` and without a network, one ``from_pretrained`` spends
about 2.5 minutes in the hub client's retries; a run of 40 batches would have spent 100 minutes.
Hugging Face loaders first ask ``ModelRuntime.check_model_source``, which answers in seconds.

Any load failure reaches the caller marked as the run's failure
(``pairsmith.models.failures.is_model_unavailable``): ``pairsmith.tasks.stage.call_per_item`` lets it
stop the run (every item would fail the same way) instead of counting it against each item.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel

ConfigT = TypeVar("ConfigT", bound=BaseModel)

FAILED_LOAD_SECONDS = 600.0
"""How long a failed load is answered with its error before it is tried again (a worker process
that lives across runs tries again after this)."""

_LOADED: dict[tuple[str, str], Any] = {}
_FAILED: dict[tuple[str, str], tuple[float, BaseException]] = {}  # key -> (when it failed, its error without traceback)


def cached_load(key: tuple[str, str], load: Callable[[], Any]) -> Any:
    """``load()`` once per key and process; its error again, without loading, for a while."""
    if key in _LOADED:
        return _LOADED[key]
    failed = _FAILED.get(key)
    if failed is not None and time.monotonic() - failed[0] < FAILED_LOAD_SECONDS:
        raise _bare(failed[1])
    try:
        _LOADED[key] = load()
    except Exception as err:
        _FAILED[key] = (time.monotonic(), _bare(err))
        raise
    _FAILED.pop(key, None)
    return _LOADED[key]


def _bare(err: BaseException) -> BaseException:
    """The same error without its traceback, whose frames would hold a half-loaded model alive."""
    from pairsmith.models.failures import is_model_unavailable, mark_model_unavailable

    try:
        bare = type(err)(*err.args)
    except Exception:  # an exception type whose constructor wants other arguments
        bare = RuntimeError(f"{type(err).__name__}: {err}")
    return mark_model_unavailable(bare) if is_model_unavailable(err) else bare


def clear_loaded() -> None:
    """Drop every loaded model and remembered load failure of this process (tests, or freeing
    GPU memory between flows)."""
    _LOADED.clear()
    _FAILED.clear()


class LazyModel(Generic[ConfigT]):
    def __init__(self, config: ConfigT):
        self.config = config

    def _load(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement _load()")

    def loaded(self) -> Any:
        """The loaded model; if it cannot be loaded, the loader's error (``ModelUnavailable`` from
        ``ModelRuntime.check_model_source``, or e.g. ``FileNotFoundError``), marked as the run's
        failure (``pairsmith.models.failures.is_model_unavailable``)."""
        key = (f"{type(self).__module__}.{type(self).__qualname__}", self.config.model_dump_json())
        return cached_load(key, self._load_or_say_why)

    def _load_or_say_why(self) -> Any:
        from pairsmith.models.failures import mark_model_unavailable

        try:
            return self._load()
        except Exception as err:
            raise mark_model_unavailable(err)
