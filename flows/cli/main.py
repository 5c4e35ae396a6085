"""``pairsmith``: thin commands over the Prefect flows and the LanceDB store.

Heavy packages (prefect, lancedb, bpy) are imported inside the commands, so ``pairsmith --help``
answers at once. Every bad input ends in one line on stderr, ``pairsmith: error: ...``, and a
non-zero exit code, before anything is written.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from pairsmith.flows.cli.common import (
    EXIT_FAILED,
    CliError,
    describe_failure,
    open_store_or_fail,
    pick_run,
    quiet_prefect,
    validate_config,
)
from pairsmith.storage.db_uri import DEFAULT_DB
from pairsmith.storage.exports import EXPORT_FORMATS

# Verbs that are a registered flow's command under another name (``pairsmith.flows.cli.run.flow_command``):
# their options come from the flow's config, built when the verb is used, so --help imports no flow.
FLOW_VERBS: dict[str, tuple[str, str]] = {
    "render": ("dig-render", "Render before/after Blender scene pairs with exact difference boxes into LanceDB."),
    "evaluate": ("evaluate", "Score a model on held-out samples: grounding F1 / IoU / AP@0.5, MCQ accuracy, caption "
                 "BLEU-4 / METEOR / ROUGE-L / CIDEr and an optional LLM judge, per data source."),
    "maintain": ("maintenance", "Merge small fragments and remove old versions' files; tagged (exported) versions "
                 "are kept."),
}


class PairsmithGroup(click.Group):
    """The ``pairsmith`` group: its commands, plus the flow verbs of ``FLOW_VERBS`` built on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *FLOW_VERBS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in FLOW_VERBS:
            from pairsmith.flows.cli.run import flow_command

            flow, short = FLOW_VERBS[name]
            return flow_command(flow, command_name=name, short_help=short, doc=short + (
                f" The same as 'pairsmith run {flow}': its options are the fields of the flow's config."))
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, FLOW_VERBS[name][1] if name in FLOW_VERBS else self.commands[name].get_short_help_str(70))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):  # a flow verb's help without importing its flow
            formatter.write_dl(rows)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] in FLOW_VERBS:  # its config module imports Prefect, which reads its settings once
            quiet_prefect("--verbose" in args)
        return super().resolve_command(ctx, args)


@click.group(cls=PairsmithGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="pairsmith", prog_name="pairsmith", message="%(prog)s %(version)s")
def cli() -> None:
    """pairsmith: image-difference training data for multimodal LLMs."""


KINDS = ("shape", "color", "size", "material", "add", "remove", "move")  # = scene_sampler.CHANGE_KINDS (tests/scenes/test_scenes.py)


@cli.command()
@click.option("--db", default=DEFAULT_DB, show_default=True, help="LanceDB URI.")
@click.option("--run", default=None, help="Run id (default: the newest run).")
@click.option("--list", "list_runs", is_flag=True, help="List the stored runs with status and counts instead.")
@click.option("--all-reasons", is_flag=True, help="Every drop reason of a stage, not the top 3.")
@click.option("--dataset", "per_dataset", is_flag=True, help="Per dataset instead: pairs, samples per task and split, "
              "subsets / K / change kinds / categories, caption lengths and words, the funnel with every reason.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="With --dataset: draw them into this PNG.")
def stats(db: str, run: str | None, list_runs: bool, all_reasons: bool, per_dataset: bool, plot: str | None) -> None:
    """Per-stage counts of a run: in, kept, dropped and the top drop reasons (`pairsmith inspect`: the rows)."""
    from pairsmith.flows.engine.funnel import format_funnel, run_funnel, run_status

    store = open_store_or_fail(db, read_only=True)
    if per_dataset or plot:
        from pairsmith.flows.cli.dataset_stats import print_dataset_stats

        print_dataset_stats(store, plot, per_dataset)
        return
    if list_runs:
        for r in store.runs():
            funnel = run_funnel(store, r["run_id"])
            kept = funnel[-1].n_kept if funnel else 0
            click.echo(f"{r['run_id']}  {r['flow']}  {r['created_at']:%Y-%m-%d %H:%M:%S}  "
                       f"{run_status(store, r['run_id'])}  in {funnel[0].n_in if funnel else 0}  kept {kept}  "
                       f"dropped {sum(s.n_dropped for s in funnel)}")
        return
    run_id = pick_run(store, run)
    click.echo(f"run {run_id} in {store.uri}: {run_status(store, run_id)}")
    click.echo(format_funnel(run_funnel(store, run_id), reasons=None if all_reasons else 3))
    from pairsmith.flows.engine.resume import owner_note

    note = owner_note(store, run_id)  # a run whose pairs a later run re-wrote
    if note:
        click.echo(note)


@cli.command()
@click.option("--db", default=DEFAULT_DB, show_default=True, help="LanceDB URI.")
@click.option("--run", default=None, help="Run id (default: the newest run).")
@click.option("--stage", "stages", multiple=True, help="Only rows dropped at this stage (repeat).")
@click.option("--reason", "reasons", multiple=True, help="Only rows dropped for this reason (repeat).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row (stage, reason, kind, pair_id, "
              "region_id, detail) instead of a table.")
def inspect(db: str, run: str | None, stages: tuple[str, ...], reasons: tuple[str, ...], as_json: bool) -> None:
    """A run's dropped rows: stage, reason, pair / region and drop_detail (storage/dropped_rows.py)."""
    import json

    from pairsmith.storage.dropped_rows import dropped_rows, format_table

    store = open_store_or_fail(db, must_exist=True, read_only=True)
    run_id = pick_run(store, run)
    rows = dropped_rows(store, run_id, stages, reasons)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.as_dict(), ensure_ascii=False))
        return
    click.echo(f"run {run_id} in {store.uri}: {len(rows)} dropped rows"
               + (f" (stage {', '.join(stages)})" if stages else "") + (f" (reason {', '.join(reasons)})" if reasons else ""))
    if rows:
        click.echo(format_table(rows))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(list(EXPORT_FORMATS)), required=True,
              help="llava: images + llava.json; sharegpt: images + sharegpt.json + LLaMA-Factory's dataset_info.json; "
              "hf: Hugging Face datasets (Parquet shards + save_to_disk, images embedded); clevr-change: "
              "CLEVR-Change's data/ layout (images/, sc_images/, nsc_images/, captions, splits, types).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New or empty folder for the export.")
@click.option("--db", default=DEFAULT_DB, show_default=True, help="LanceDB URI.")
@click.option("--run", default=None, help="Only this run (default: all kept samples).")
@click.option("--task", "tasks", multiple=True, help="Only these tasks (repeat), e.g. grounding, diff-caption.")
@click.option("--split", "splits", type=click.Choice(["train", "val", "test", "bench"]), multiple=True,
              help="Splits to export (repeat). Default: train only (clevr-change: train, val and test); bench "
              "(benchmark items) is never in a default export, only when named.")
@click.option("--layout", type=click.Choice(["multi", "side-by-side"]), default="multi", show_default=True,
              help="Two images per sample, or one image with both side by side for single-image models.")
@click.option("--box-format", type=click.Choice(["pixels", "norm1000", "resized-pixels"]), default="pixels",
              show_default=True, help="Frame of grounding boxes: pixels of the image; 0-1000 (Qwen2-VL, Qwen3-VL); "
              "pixels after the processor's resize (Qwen2.5-VL).")
@click.option("--processor", default=None, help="resized-pixels: an image processor folder (default: Qwen2.5-VL's "
              "defaults).")
@click.option("--dataset-name", default=None, help="Dataset name in dataset_info.json / the hf card "
              "(default: pairsmith_<out folder name>).")
@click.option("--absolute-paths", is_flag=True, help="Absolute image and file paths, so the dataset_info.json entry "
              "works from any LLaMA-Factory dataset_dir.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier pairsmith export in --out (never a folder with other files, nor one holding the database).")
@click.option("--at", "at_tag", default=None, help="Export the database as it was at this tag (e.g. export-20261123T020000Z).")
@click.option("--push-to-hub", "hub_repo", default=None, help="--format hf: also upload to this Hub repository.")
def export(fmt: str, out: str, db: str, run: str | None, tasks: tuple[str, ...], splits: tuple[str, ...], layout: str,
           box_format: str, processor: str | None, dataset_name: str | None, absolute_paths: bool, overwrite: bool,
           at_tag: str | None, hub_repo: str | None) -> None:
    """Write kept samples as files that trainers and `datasets` load as they are (train split by default)."""
    from pairsmith.storage.exports import export as run_export
    from pairsmith.storage.exports.base import ExportOptions, check_out
    from pairsmith.storage.versions import delete_tag, finish_export, pin_for_export

    if hub_repo and fmt != "hf":
        raise CliError("--push-to-hub needs --format hf")
    options = validate_config(ExportOptions, {
        "run_id": run, "tasks": list(tasks), "layout": layout, "box_format": box_format, "processor": processor,
        "dataset_name": dataset_name, "absolute_paths": absolute_paths,
        **({"splits": list(splits)} if splits else {})}, "options")  # unnamed: the format's default splits
    if fmt == "hf":  # the card names the paper preset each exported run ran
        options = options.model_copy(update={"run_presets": _run_presets()})
    live = open_store_or_fail(db, must_exist=True, read_only=True)  # reading needs no write access
    try:  # never the database, never a folder pairsmith did not export to: checked before any tag is made
        check_out(Path(out), overwrite, live.uri)
        store, snapshot = pin_for_export(live, at_tag)
    except ValueError as err:
        raise CliError(str(err)) from None
    try:
        try:
            if run is not None:
                pick_run(store, run)
            from pairsmith.flows.engine.progress import terminal_bars

            result = run_export(store, Path(out), fmt, options, overwrite=overwrite, tag=snapshot.tag,
                                progress=terminal_bars())
            finish_export(live, snapshot)
        except BaseException:
            if snapshot.pinning is not None:  # the running tag names an export that does not exist
                delete_tag(live, snapshot.pinning)
            raise
    except ValueError as err:
        from pairsmith.flows.engine.resume import with_owner_note

        raise CliError(with_owner_note(str(err), live, run)) from None
    except OSError as err:  # a disk that fills up or goes away mid-export: --out is left as it was
        click.echo(f"pairsmith: error: export to {out} failed, nothing written: {err}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from None
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(result.skipped.items()))
    click.echo(f"Wrote {result.samples} samples and {result.images} images to {out} "
               f"({', '.join(result.files)}; dataset {result.dataset_name})" + (f"; skipped {skipped}" if skipped else ""))
    if snapshot.tag is not None:
        click.echo(f"Database versions tagged {snapshot.tag}: 'pairsmith export --at {snapshot.tag} ...' repeats this export")
    else:
        click.echo(f"Could not tag the database versions read: {snapshot.untagged}; "
                   f"they were {', '.join(f'{t}@{v}' for t, v in snapshot.versions.items())}")
    if hub_repo:
        from pairsmith.storage.exports.hf import push_to_hub

        try:
            click.echo(f"Pushed to {push_to_hub(Path(out), hub_repo)}")
        except ValueError as err:
            click.echo(f"pairsmith: error: {err}", err=True)
            raise click.exceptions.Exit(EXIT_FAILED) from None


def _run_presets() -> dict[str, str] | None:
    """Run id -> the paper preset that gives it (``flows/papers.py:preset_run_ids``); None where the
    presets cannot be read (an installed package without ``configs/``): the card then says so."""
    from pairsmith.flows.papers import preset_run_ids

    try:
        return preset_run_ids()
    except Exception:  # noqa: BLE001  (the card says so rather than fail the export)
        return None


@cli.command("contact-sheet")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--n", type=click.IntRange(1, 200), default=12, show_default=True, help="Pairs to draw.")
@click.option("--db", default=DEFAULT_DB, show_default=True, help="LanceDB URI.")
@click.option("--run", default=None, help="Run id (default: the newest run with pairs to draw).")
@click.option("--regions-run", default=None, help="Draw this run's boxes, e.g. a propose-regions run over an "
              "import (default: the drawn run's own boxes, else every run's).")
@click.option("--status", type=click.Choice(["kept", "dropped", "all"]), default=None,
              help="Which pairs: kept (default), dropped (default with --stage / --reason), or all.")
@click.option("--stage", "stages", multiple=True, help="Dropped pairs of this stage only (repeat).")
@click.option("--reason", "reasons", multiple=True, help="Dropped pairs with this reason only (repeat).")
@click.option("--include-dropped", is_flag=True, help="Same as --status all.")
def contact_sheet(out: str, n: int, db: str, run: str | None, regions_run: str | None, status: str | None,
                  stages: tuple[str, ...], reasons: tuple[str, ...], include_dropped: bool) -> None:
    """Draw pairs side by side with their boxes, confidences, captions, verdicts and questions."""
    from pairsmith.storage.contact_sheet import check_sheet_out, draw_contact_sheet, newest_drawable_run

    store = open_store_or_fail(db, read_only=True)
    try:
        check_sheet_out(Path(out), store.uri)
    except ValueError as err:
        raise CliError(str(err)) from None
    run_id = pick_run(store, run) if run else (newest_drawable_run(store) or pick_run(store, None))
    if regions_run is not None:
        pick_run(store, regions_run)
    try:
        drawn = draw_contact_sheet(store, Path(out), n=n, run_id=run_id, include_dropped=include_dropped,
                                   status=status, stages=stages, reasons=reasons, regions_run=regions_run)
    except ValueError as err:
        from pairsmith.flows.engine.resume import with_owner_note

        raise CliError(with_owner_note(str(err), store, run_id)) from None
    click.echo(f"Drew {drawn} pairs of run {run_id} to {out}")


# Commands of the other flows live in their own modules (flows/cli_<topic>.py, importing only
# click and the standard library at module level) and are registered here, one line each.
from pairsmith.flows.cli import ops as cli_ops  # noqa: E402  (issue 6: maintain, versions)

cli.add_command(cli_ops.versions)
from pairsmith.flows.cli import train as cli_train  # noqa: E402  (issue 5: finetune, evaluate)

cli.add_command(cli_train.finetune)
from pairsmith.flows.cli import refilter as cli_refilter  # noqa: E402  (issue 3: refilter)

cli.add_command(cli_refilter.refilter)
from pairsmith.flows.cli import run as cli_run  # noqa: E402  (run FLOW --config: med-edit, img-diff flows)

cli.add_command(cli_run.run)
from pairsmith.flows.cli import imports as cli_import  # noqa: E402  (import NAME: one per registered importer)

cli.add_command(cli_import.import_group)
from pairsmith.flows.cli import bench as cli_bench  # noqa: E402  (bench med)

cli.add_command(cli_bench.bench_group)
from pairsmith.flows.cli import papers as cli_papers  # noqa: E402  (papers: the parity table)

cli.add_command(cli_papers.papers)


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C (SIGTERM: 143, see interrupts.exit_code)


def main(argv: list[str] | None = None) -> int:
    """Entry point: click's usage errors and ours become one line and exit code 2; Ctrl-C exits 130
    and SIGTERM 143, within seconds (``pairsmith.storage.interrupts``)."""
    from pairsmith.storage import interrupts
    from pairsmith.flows.engine.progress import show_in_terminal

    previous = interrupts.install()  # Ctrl-C / SIGTERM: a clean stop (see storage/interrupts.py)
    bars = show_in_terminal(True) if sys.stderr.isatty() else None  # bars of imports, propose-regions, export, maintain
    try:
        result = cli.main(args=argv, prog_name="pairsmith", standalone_mode=False)
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.ClickException as err:
        click.echo(f"pairsmith: error: {err.format_message()}", err=True)
        return err.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("pairsmith: aborted", err=True)
        return EXIT_INTERRUPTED
    except Exception as err:  # a failure no command foresaw: one line too (PAIRSMITH_TRACEBACK=1 re-raises it)
        if interrupts.requested():  # the stop surfaced wrapped in a library's error
            click.echo("pairsmith: aborted", err=True)
            return EXIT_INTERRUPTED
        if os.environ.get("PAIRSMITH_TRACEBACK"):
            raise
        click.echo(f"pairsmith: error: {describe_failure(err)} (PAIRSMITH_TRACEBACK=1 shows where)", err=True)
        return EXIT_FAILED
    finally:
        if interrupts.requested():  # a real SIGINT/SIGTERM, however the command ended: 130/143, now, no child left
            interrupts.exit_now(interrupts.exit_code(interrupts.requested()))
        interrupts.restore(previous)  # main() called in-process (tests): leave no trace
        if bars is not None:
            show_in_terminal(bars)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
