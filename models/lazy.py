"""Adapters that are cheap to build and to pickle, and load their weights once per process.

Prefect and Ray ship task arguments to workers; an adapter holding loaded weights would ship
gigabytes. A ``LazyModel`` keeps only its pydantic config; ``loaded()`` builds the model on first
use and caches it per process under (adapter class, config), so every task in a worker shares it.

A model that cannot load (weights not in the cache offline, a wrong id, no GPU) raises
``ModelLoadError``: every item would fail the same way, so steps that isolate failures per item
(``pairsmith.tasks.stage.call_per_item``) let it stop the run instead of dropping every item.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel

ConfigT = TypeVar("ConfigT", bound=BaseModel)

_LOADED: dict[tuple[str, str], Any] = {}


class ModelLoadError(RuntimeError):
    """A model adapter could not load its model; the message names the model and the cause."""


def cached_load(key: tuple[str, str], load: Callable[[], Any], label: str | None = None) -> Any:
    """``load()`` once per process and ``key``; a failure is raised as ``ModelLoadError``."""
    if key not in _LOADED:
        try:
            _LOADED[key] = load()
        except ModelLoadError:
            raise
        except Exception as err:  # noqa: BLE001 - hub, torch, open_clip, ultralytics ... each raise their own
            cause = (str(err).strip().splitlines() or [""])[0][:300]
            raise ModelLoadError(f"{label or key[0]} could not be loaded: {type(err).__name__}: {cause}") from err
    return _LOADED[key]


def clear_loaded() -> None:
    """Drop every loaded model of this process (tests, or freeing GPU memory between flows)."""
    _LOADED.clear()


class LazyModel(Generic[ConfigT]):
    def __init__(self, config: ConfigT):
        self.config = config

    def _load(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement _load()")

    def loaded(self) -> Any:
        key = (f"{type(self).__module__}.{type(self).__qualname__}", self.config.model_dump_json())
        name = getattr(self.config, "model_id", None) or getattr(self.config, "model_name", None)
        return cached_load(key, self._load, f"{type(self).__name__} model {name!r}" if name else type(self).__name__)

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.config = state["config"]
