"""Make Prefect 3.8.8's client and its own server agree under the fastapi<0.155 pin.

The client sends every optional body parameter of a ``.../filter`` request, the unset ones as
explicit nulls (``"limit": null, "offset": null, "sort": null``). Under fastapi<0.155 the server
validates those nulls against ``int`` / the sort enum instead of using its defaults and answers
HTTP 422. That breaks ``prefect deploy`` (it lists a pool's workers after creating each
deployment, so ``--all`` stops after the first one) and ``client.read_artifacts`` / ``read_flow_runs``.

``install()`` leaves top-level nulls out of those request bodies, which is what the client meant:
"use the server's default". Nothing else changes. The deployment entrypoint modules
(``flows/dig_render.py``, ``flows/maintenance.py``) call it, so ``prefect deploy --all``, which
imports them before that request, works as written in the README.
"""

from __future__ import annotations

from typing import Any

_PAGED_SUFFIXES = ("/filter", "/paginate")


def _without_top_level_nulls(method: str, url: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    body = kwargs.get("json")
    if (
        str(method).upper() == "POST" and isinstance(body, dict)
        and str(url).rstrip("/").endswith(_PAGED_SUFFIXES) and any(v is None for v in body.values())
    ):
        kwargs = {**kwargs, "json": {k: v for k, v in body.items() if v is not None}}
    return kwargs


def install() -> None:
    """Patch Prefect's two httpx client classes once per process (idempotent)."""
    from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

    for cls in (PrefectHttpxAsyncClient, PrefectHttpxSyncClient):
        if getattr(cls, "_pairsmith_null_paging_fix", False):
            continue
        original = cls.build_request

        def build_request(self, method, url, *args, _original=original, **kwargs):
            return _original(self, method, url, *args, **_without_top_level_nulls(method, url, kwargs))

        cls.build_request = build_request
        cls._pairsmith_null_paging_fix = True
