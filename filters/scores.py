"""What counts as a missing score: never stored (None) or not a number (NaN from a failed model call)."""

from __future__ import annotations

import math


def is_missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
