"""Deterministic ids: the same inputs always give the same row key, and only inputs that change a row count.

Every table is upserted on such a key, which is what makes a re-run after a crash resume instead of
duplicating rows. A run id and its pair ids derive from a config's *content*: the fields that
change what the run writes. Two rules keep an upgrade from silently breaking resume:

* a field marked ``Field(..., json_schema_extra=NOT_CONTENT)`` (a device, a batch size, a progress
  bar, an endpoint, a retry count) never counts;
* a field whose value equals its default counts for nothing, so a field added later with an
  "off" default leaves every existing id as it was (``tests/storage/test_ids.py`` pins the default ids).

An intended change of ids (a default whose change alters the output, a new hashing rule) bumps
``ID_SCHEMA_VERSION``, which every content key carries.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

ID_SCHEMA_VERSION = 2
"""Version of what content keys hash. 2: defaults and NOT_CONTENT fields are left out (1 hashed them too)."""

NOT_CONTENT: dict[str, Any] = {"content": False}
"""``json_schema_extra`` of a config field that never changes what a run writes (marker, see above)."""


def stable_hash(value: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable value (dict keys sorted, so key order never matters)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def stable_id(*parts: Any) -> str:
    return stable_hash(list(parts))


def _counts(field) -> bool:
    extra = field.json_schema_extra
    return not (isinstance(extra, dict) and extra.get("content") is False)


def config_content(config: BaseModel, reference: BaseModel | None = None) -> dict[str, Any]:
    """The fields of ``config`` that shape its output, JSON-ready: values that differ from
    ``reference`` (default: each field's default), nested configs compared field by field with
    their own defaults, fields marked ``NOT_CONTENT`` left out. A nested config set where the
    default is None counts as set (``{}``) even when its fields are all defaults."""
    out: dict[str, Any] = {}
    for name, field in type(config).model_fields.items():
        if not _counts(field):
            continue
        value = getattr(config, name)
        base = getattr(reference, name) if reference is not None else field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            same_kind = type(base) is type(value)
            inner = config_content(value, base if same_kind else None)
            if inner or not same_kind:
                out[name] = inner
        elif value != base:
            out[name] = json.loads(json.dumps(plain(value), default=str))
    return out


def plain(value: Any) -> Any:
    """``value`` as JSON-like data: pydantic models dumped, tuples as lists, dict keys as str."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def content_key(config: BaseModel, **extra: Any) -> str:
    """The hash of ``config``'s content plus ``extra`` facts (e.g. a hash of the scenes a path points
    at); an ``extra`` that is None counts for nothing, like a default."""
    content = config_content(config)
    content.update({k: v for k, v in extra.items() if v is not None})
    return stable_hash({"id_schema": ID_SCHEMA_VERSION, **content})
