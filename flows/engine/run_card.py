"""The run card: what a fine-tuned adapter was trained from, written next to it as ``run_card.json``.

It records the data (database, pinned table versions or tag, the selection, per-task counts and
the drop reasons), the full config, each stage's steps and final loss / reward with the trainer's
log, and the library versions, so a result can be traced to the exact rows it learned from.
``pairsmith evaluate --run-card`` reads the base model and the adapter from it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

RUN_CARD = "run_card.json"


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "lancedb", "prefect"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


class RunCard(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    run_name: str
    method: str
    status: str = Field(description="complete once the adapter is saved")
    base_model: str
    adapter_dir: str = Field(description="relative to the run card's folder")
    data: dict[str, Any]
    stages: list[dict[str, Any]]
    logs: dict[str, list[dict[str, Any]]] = Field(default_factory=dict, description="stage -> trainer log lines")
    config: dict[str, Any]
    versions: dict[str, str] = Field(default_factory=library_versions)
    started_at: datetime
    finished_at: datetime
    seconds: float

    def write(self, run_dir: Path) -> Path:
        path = Path(run_dir) / RUN_CARD
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(path)  # a crash never leaves half a card that looks finished
        return path

    @classmethod
    def read(cls, path: str | Path) -> "RunCard":
        path = Path(path)
        if path.is_dir():
            path = path / RUN_CARD
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ValueError(f"run card {str(path)!r}: no such file") from None
        except (json.JSONDecodeError, ValueError) as err:
            raise ValueError(f"run card {str(path)!r}: not a pairsmith run card ({str(err).splitlines()[0]})") from None

    def adapter_path(self, card_path: str | Path) -> Path:
        base = Path(card_path)
        return (base if base.is_dir() else base.parent) / self.adapter_dir
