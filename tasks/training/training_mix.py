"""Training mixes: samples of several data sources in chosen proportions, as OmniDiff trains.

OmniDiff (Liu et al., ICCV 2025) fine-tunes on a mix of public image-difference sets. A finetune
config names its mix as key -> ratio::

    mix: {clevr-change: 0.3, spot-the-diff: 0.1, dig-render: 0.6}

A key is a *data source* (``data_source``: the set a sample was imported from, its ``dataset``, or
for samples pairsmith made, its ``method``) or a source and one task (``dig-render/grounding``). A
sample belongs to the key of its source and task if the mix has one, else to its source's key;
samples of no key are left out (``select_not_in_mix``). A source may not be named both alone and
with a task. Ratios are relative weights, normalised to sum to 1.

How many: the mix takes the largest total N its ratios allow without repeating a sample (N = the
smallest available_k / share_k over the keys, rounded down), or ``total`` if that is smaller;
each key gets its share of N (rounded by largest remainders), taken in sample-id order (ids are
hashes: an arbitrary, fixed order). Samples beyond a key's share are left out
(``select_mix_surplus``). A key with no samples at all is an error: its ratio cannot be met.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.storage.verdict import Verdict


def data_source(row: dict[str, Any]) -> str:
    """Where a sample comes from: its ``dataset`` (an imported public set) if set, else its ``method``."""
    return row.get("dataset") or row["method"]


@dataclass
class MixOutcome:
    """What a mix found and took, per key (what the run card records), and the samples it left out."""

    shares: dict[str, float]
    available: dict[str, int]
    taken: dict[str, int]
    left_out: dict[str, Verdict] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        total = sum(self.taken.values())
        return {"shares": self.shares, "available": self.available, "taken": self.taken, "total": total,
                "realised_shares": {k: round(n / total, 4) if total else 0.0 for k, n in self.taken.items()}}


class TrainingMix(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    ratios: dict[str, float] = Field(min_length=1, description="data source, or source/task -> relative weight")
    total: int | None = Field(None, ge=1, description="at most this many samples in all")

    @field_validator("ratios")
    @classmethod
    def _keys(cls, ratios: dict[str, float]) -> dict[str, float]:
        for key, ratio in ratios.items():
            if not key or key.count("/") > 1 or not all(key.split("/")):
                raise ValueError(f"mix key {key!r}: give a data source or source/task, e.g. 'dig-render/grounding'")
            if not ratio > 0 or math.isinf(ratio):
                raise ValueError(f"mix key {key!r}: the ratio must be a positive number, got {ratio}")
        bare = {k for k in ratios if "/" not in k}
        both = sorted({k.split("/")[0] for k in ratios if "/" in k} & bare)
        if both:
            raise ValueError(f"mix names {both[0]!r} both alone and with a task; use one or the other")
        return ratios

    def key_of(self, row: dict[str, Any]) -> str | None:
        source = data_source(row)
        with_task = f"{source}/{row['task']}"
        return with_task if with_task in self.ratios else source if source in self.ratios else None

    def take(self, rows: list[dict[str, Any]]) -> MixOutcome:
        """Which of ``rows`` (sorted by sample id) the mix takes; raises ``ValueError`` for a key
        that no row belongs to."""
        weight = sum(self.ratios.values())
        shares = {k: r / weight for k, r in self.ratios.items()}
        members: dict[str, list[dict]] = {k: [] for k in shares}
        left_out: dict[str, Verdict] = {}
        for row in rows:
            key = self.key_of(row)
            if key is None:
                left_out[row["sample_id"]] = Verdict.drop("select_not_in_mix")
            else:
                members[key].append(row)
        empty = [k for k, m in members.items() if not m]
        if empty:
            raise ValueError(f"mix key {empty[0]!r} matches no selected sample (data sources are a sample's "
                             "dataset, else its method; check data.tasks / splits too)")
        n = min(math.floor(len(members[k]) / shares[k] + 1e-9) for k in shares)
        if self.total is not None:
            n = min(n, self.total)
        quota = {k: math.floor(shares[k] * n + 1e-9) for k in shares}
        by_remainder = [k for k in sorted(shares, key=lambda k: (quota[k] - shares[k] * n, k))
                        if quota[k] < len(members[k])]
        for k in by_remainder[: n - sum(quota.values())]:
            quota[k] += 1
        for k, m in members.items():
            for row in m[quota[k]:]:
                left_out[row["sample_id"]] = Verdict.drop("select_mix_surplus")
        return MixOutcome({k: round(s, 4) for k, s in shares.items()}, {k: len(m) for k, m in members.items()},
                          quota, left_out)
