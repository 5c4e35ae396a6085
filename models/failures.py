"""Errors by permanence: will the same call fail the same way next time?

Every step that turns an exception into a reason row asks ``is_transient(err)`` and names the reason
after the answer (``failure_reason``):

* ``<stage>_error``: transient, the cause may be gone on the next run (HTTP 408 / 429 / 5xx, a
  timeout, a dropped connection, memory that ran out). The item's batch is not done, the CLI exits
  3 and running the same command again retries it.
* ``<stage>_rejected``: deterministic, the same input fails the same way (HTTP 400 / 404 / 413, a
  processor that refuses an image's shape, a malformed answer...). The row is final: a re-run does
  not pay for it again, and ``drop_detail`` keeps the message so the user can fix the input.

The kind is read from the error itself (its HTTP status or exception type), never guessed from
the message. A model that cannot load at all is neither: it is ``ModelUnavailable`` (or the
loader's own error, marked by ``mark_model_unavailable``) and stops the whole run, naming the model
(every item would fail the same way).
"""

from __future__ import annotations

TRANSIENT_HTTP = frozenset({408, 409, 429, 500, 502, 503, 504})
"""HTTP statuses worth asking again: timeouts, rate limits, server-side failures (Gemini's own list,
plus 409 ABORTED, which Google APIs use for a concurrency conflict)."""

ERROR_SUFFIX = "_error"
REJECTED_SUFFIX = "_rejected"


class ModelUnavailable(OSError):
    """A model that cannot be loaded (not a folder, not in the cache and no network, broken files).

    Raised once for the whole run instead of once per item: its message names the model and why.
    An ``OSError``, as transformers' own "can't load" errors are."""


MARK = "_pairsmith_model_unavailable"


def mark_model_unavailable(err: BaseException) -> BaseException:
    """Mark ``err``, raised while loading a model, as the run's failure rather than an item's (its
    type and message stay the loader's own: ``FileNotFoundError: CLIP weights ... not found``)."""
    try:
        setattr(err, MARK, True)
    except AttributeError:  # an exception type with __slots__: cannot be marked
        pass
    return err


def is_model_unavailable(err: BaseException) -> bool:
    """Whether ``err`` says a model cannot be loaded (``ModelUnavailable``, or marked so by
    ``pairsmith.models.lazy``): every item would fail the same way, so the run stops."""
    return isinstance(err, ModelUnavailable) or bool(getattr(err, MARK, False))


def _status(err: BaseException) -> int | None:
    for attr in ("code", "status_code", "status"):
        value = getattr(err, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(err, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _transient_types() -> tuple[type[BaseException], ...]:
    """Exception types meaning "try again later", from the libraries this process has imported (an
    error of a library that is not imported cannot be raised, so nothing is imported here)."""
    import sys

    types: list[type[BaseException]] = [TimeoutError, ConnectionError, MemoryError]
    httpx, requests, torch = (sys.modules.get(name) for name in ("httpx", "requests", "torch"))
    if httpx is not None:
        types += [httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError]
    if requests is not None:
        types += [requests.ConnectionError, requests.Timeout]
    if torch is not None and hasattr(torch, "OutOfMemoryError"):
        types.append(torch.OutOfMemoryError)
    return tuple(types)


def is_transient(err: BaseException) -> bool:
    """True if the same call may succeed later: an HTTP status in ``TRANSIENT_HTTP``, a timeout, a
    network error, out of memory. Any other HTTP status (400 invalid argument, 404, 413 too large)
    and any other exception (``ValueError`` from a processor, ``TypeError``, a decoding error) is
    deterministic. google-genai's ``ServerError`` carries a 5xx code, ``ClientError`` a 4xx one."""
    if is_model_unavailable(err):
        return False  # not an item's failure at all: the run stops
    status = _status(err)
    if status is not None and type(err).__module__.split(".")[0] in {"google", "httpx", "requests", "huggingface_hub"}:
        return status in TRANSIENT_HTTP
    if isinstance(err, _transient_types()):
        return True
    cause = err.__cause__ or err.__context__
    return cause is not None and cause is not err and not is_model_unavailable(cause) and (
        isinstance(cause, _transient_types()) or (_status(cause) in TRANSIENT_HTTP))


def failure_reason(stage: str, err: BaseException) -> str:
    """``<stage>_error`` for a transient error, ``<stage>_rejected`` for a deterministic one."""
    return stage + (ERROR_SUFFIX if is_transient(err) else REJECTED_SUFFIX)


def is_rejected_reason(reason: str | None) -> bool:
    """A reason row for a deterministic failure: final, not retried unless asked."""
    return bool(reason) and reason.endswith(REJECTED_SUFFIX)
