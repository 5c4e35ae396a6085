"""What each verb prints after its flow ran: ``report(summary, config, store)`` per flow (``FlowSpec.report``).

Only the printing differs between verbs; running, failing, the funnel's exit status and the
warnings live once, in ``pairsmith.flows.cli.run.execute``. ``store`` is the flow's database
(``None`` for a flow without one), ``flow`` its registry name and ``source`` where the settings came
from (the config file, or "options").
"""

from __future__ import annotations

import click


def summary_counts(summary) -> dict[str, int]:
    return {k: v for k, v in summary.model_dump().items() if isinstance(v, int) and not isinstance(v, bool)}


def generic_report(summary, config, store, flow: str, source: str) -> None:
    """A pipeline flow run by ``pairsmith run``: its counts in one line, then its funnel."""
    from pairsmith.flows.engine.funnel import format_funnel, run_funnel

    click.echo(f"run {summary.run_id} ({flow}) in {config.db}: "
               + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary_counts(summary).items()))
    click.echo(format_funnel(run_funnel(store, summary.run_id)))


def render_report(summary, config, store, flow: str, source: str) -> None:
    from pairsmith.flows.engine.funnel import format_funnel, run_funnel

    click.echo(
        f"Stored {summary.pairs_kept + summary.pairs_dropped} pairs ({summary.pairs_kept} kept, "
        f"{summary.pairs_dropped} dropped) and {summary.samples} samples in {summary.db}"
    )
    click.echo(f"run {summary.run_id}: {summary.seconds:.1f} s, {summary.blender_seconds:.1f} s of it in Blender"
               + (f"; {summary.batches_resumed} of {summary.batches} batches were already stored, "
                  f"{summary.pairs_rendered} pairs rendered now" if summary.batches_resumed else ""))
    click.echo(format_funnel(run_funnel(store, summary.run_id)))


def import_report(summary, config, store, flow: str, source: str) -> None:
    from pairsmith.flows.engine.funnel import format_funnel, run_funnel
    from pairsmith.tasks.imports import load_importer

    files = ", ".join(str(f) for f in load_importer(config.importer).input_files(config))
    click.echo(f"Imported {summary.entries} entries from {files} into {summary.db} (run {summary.run_id}): "
               f"{summary.pairs_kept} pairs kept, {summary.pairs_dropped} dropped, "
               f"{summary.samples} {summary.sample_task} samples")
    if summary.duplicates:
        click.echo(f"{summary.duplicates} entries repeated an earlier entry exactly and were stored once")
    if summary.batches_resumed:
        click.echo(f"{summary.batches_resumed} of {summary.batches} batches were already stored")
    click.echo("splits: " + (", ".join(f"{s} ({n})" for s, n in summary.splits.items()) or "none"))
    if summary.categories:
        click.echo("categories: " + ", ".join(f"{c} ({n})" for c, n in summary.categories.items()))
    if summary.entries_retried:
        click.echo(f"{summary.entries_retried} dropped entries were tried again "
                   "(an image file changed, or --retry-failed)")
    funnel = run_funnel(store, summary.run_id)
    click.echo(format_funnel(funnel))
    kept = funnel[-1].n_kept if funnel else 0
    if kept > summary.pairs_kept:
        click.echo(f"{kept - summary.pairs_kept} of its kept pairs are now stored under another run: an import of "
                   "the same entries with other options re-wrote them (see 'pairsmith stats --list')")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{what} ({n})" for what, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def refilter_report(summary, config, store, flow: str, source: str) -> None:
    from pairsmith.flows.engine.funnel import format_funnel, run_funnel

    click.echo(f"Re-filtered run {summary.source_run} with {source} as run {summary.run_id}")
    click.echo(f"pairs: {summary.pairs_rejudged} of {summary.pairs} re-judged, {summary.pairs_changed} changed; "
               f"kept {summary.pairs_kept_before} -> {summary.pairs_kept_after}")
    click.echo(f"regions: {summary.regions_rejudged} re-judged, {summary.regions_changed} changed")
    if summary.not_rejudged:
        click.echo(f"not re-judged, stored verdicts kept (scores missing): {_counts(summary.not_rejudged)}")
    if summary.left_alone:
        click.echo(f"left alone (decided by other steps): {_counts(summary.left_alone)}")
    click.echo(format_funnel(run_funnel(store, summary.run_id)))


def format_metrics(rows: list[dict]) -> str:
    header = ("task", "group", "metric", "value", "n")
    lines = [(r["task"], r["group"], r["metric"], f"{r['value']:.4f}", str(r["n"])) for r in rows]
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(x, widths)))
                     for x in [header, *lines])


def evaluate_report(summary, config, store, flow: str, source: str) -> None:
    model = summary.model_id + (f" + {summary.adapter}" if summary.adapter else "")
    click.echo(f"Evaluated {model} on {summary.n_samples} samples (samples table version {summary.samples_version});"
               f" results stored as eval_id {summary.eval_id}")
    click.echo(format_metrics(summary.metrics))
    for metric, why in summary.unavailable.items():
        click.echo(f"{metric}: unavailable ({why})")


def finetune_report(summary, config, store, flow: str, source: str) -> None:
    verb = "Already trained" if summary.resumed else "Trained"
    click.echo(f"{verb} {summary.method} run {summary.run_name} on {summary.n_samples} samples "
               f"(samples table version {summary.samples_version})")
    click.echo(f"adapter   {summary.adapter_dir}\nrun card  {summary.run_card}")
    for s in summary.stages:
        reward = f", final reward {s['final_reward']:.4f}" if s["final_reward"] is not None else ""
        loss = f"{s['final_loss']:.4f}" if s["final_loss"] is not None else "-"
        click.echo(f"stage {s['name']}: {s['n_samples']} samples, {s['steps']} steps, final loss {loss}{reward}")


def maintenance_report(summary, config, store, flow: str, source: str) -> None:
    from pairsmith.flows.maintenance import format_report

    click.echo(format_report(summary))
