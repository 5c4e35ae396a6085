"""Deterministic ids: the same inputs always give the same row key.

Every table is upserted on such a key, which is what makes a re-run after a crash resume
instead of duplicating rows.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(value: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable value (dict keys sorted, so key order never matters)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def stable_id(*parts: Any) -> str:
    return stable_hash(list(parts))
