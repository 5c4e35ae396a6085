"""Adapters that are cheap to build and to pickle, and load their weights once per process.

Prefect and Ray ship task arguments to workers; an adapter holding loaded weights would ship
gigabytes. A ``LazyModel`` keeps only its pydantic config; ``loaded()`` builds the model on first
use and caches it per process under (adapter class, config), so every task in a worker shares it.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel

ConfigT = TypeVar("ConfigT", bound=BaseModel)

_LOADED: dict[tuple[str, str], Any] = {}


def cached_load(key: tuple[str, str], load: Callable[[], Any]) -> Any:
    if key not in _LOADED:
        _LOADED[key] = load()
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
        return cached_load(key, self._load)

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.config = state["config"]
