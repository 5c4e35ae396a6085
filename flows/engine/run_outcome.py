"""How a finished run went, told through the exit status: filtered items are normal, errors are not.

A drop reason that ends in ``_error`` (``render_error``, ``caption_error``, ...) means the item's step
raised: the item is stored as a dropped row with the exception in ``drop_detail`` and the run goes
on. Any other reason is a filter's verdict. The CLI exits

* 0 when the run finished and no item failed with an error;
* 1 when the run itself failed (what was committed stays; the same command resumes it) or its
  funnel (read back from its stored stage stats, never from the pair rows another run may have
  re-written) kept nothing;
* 2 on bad input, before anything is written;
* 3 when the run finished but some items failed with errors. Running the same command again retries
  those items (``pairsmith.flows.engine.resume``: alone where their rows tell them apart, else
  their batch) and adds nothing else.
"""

from __future__ import annotations

from collections import Counter

from pairsmith.storage.verdict import StageStats

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ITEM_ERRORS = 3

ERROR_SUFFIX = "_error"


def is_error_reason(reason: str | None) -> bool:
    return bool(reason) and reason.endswith(ERROR_SUFFIX)


def error_counts(funnel: list[StageStats]) -> Counter[str]:
    """Items that failed with an error, by reason, over a run's funnel."""
    out: Counter[str] = Counter()
    for stage in funnel:
        out.update({r: c for r, c in stage.reasons.items() if is_error_reason(r)})
    return out


def batches_with_errors(store, run_id: str, also: tuple[str, ...] = ()) -> set[str]:
    """Batches of a run with at least one item that failed with an error, or was dropped for one of
    the reasons in ``also`` (e.g. an input file that was missing): a re-run redoes them."""
    from pairsmith.storage.store import sql_literal

    rows = store.read("stage_stats", where=f"run_id = {sql_literal(run_id)}", columns=["batch", "drop_reasons"])
    return {
        row["batch"] for row in rows.to_pylist()
        if any(is_error_reason(r["reason"]) or r["reason"] in also for r in row["drop_reasons"] or [])
    }


def exit_on_item_errors(store, run_id: str) -> None:
    """After a flow's summary: if items of ``run_id`` raised, say so on stderr and exit 3."""
    import click

    from pairsmith.flows.engine.funnel import run_funnel

    funnel = run_funnel(store, run_id)
    rejected = rejected_counts(funnel)
    if rejected:  # final, not retried: said once, it is no reason to exit non-zero
        click.echo(f"pairsmith: note: run {run_id}: {describe_rejected(rejected)}", err=True)
    errors = error_counts(funnel)
    if errors:
        click.echo(f"pairsmith: warning: run {run_id}: {describe_errors(errors)}", err=True)
        raise click.exceptions.Exit(EXIT_ITEM_ERRORS)


def describe_errors(errors: Counter[str]) -> str:
    """One line for the terminal: how many items failed, why, and what to do."""
    total = sum(errors.values())
    reasons = ", ".join(f"{r} ({c})" for r, c in errors.most_common())
    return (f"{total} item{'s' if total != 1 else ''} failed with errors ({reasons}); "
            "the messages are in drop_detail; run the same command again to retry them")


def rejected_counts(funnel: list[StageStats]) -> Counter[str]:
    """Items refused for good (a reason ending in ``_rejected``: a deterministic error, see
    ``pairsmith.models.failures``), by reason, over a run's funnel."""
    from pairsmith.models.failures import is_rejected_reason

    out: Counter[str] = Counter()
    for stage in funnel:
        out.update({r: c for r, c in stage.reasons.items() if is_rejected_reason(r)})
    return out


def describe_rejected(rejected: Counter[str]) -> str:
    total = sum(rejected.values())
    reasons = ", ".join(f"{r} ({c})" for r, c in rejected.most_common())
    them = "them" if total != 1 else "it"
    return (f"{total} item{'s were' if total != 1 else ' was'} refused for good ({reasons}): the same input would "
            f"fail the same way, so a re-run does not retry {them}; the messages are in drop_detail")
