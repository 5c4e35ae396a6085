"""``pairsmith import med-bench``: bring a published dataset into the store."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("import")
def import_group() -> None:
    """Import published data sets as pairs and samples."""


@import_group.command("med-bench")
@click.option("--json", "json_path", required=True, help="MED_bench.json (list of image_name, edited_image_name, type, question, options, answer).")
@click.option("--images", "images_dir", default=None, help="Folder the image names are relative to (default: the JSON's folder).")
@click.option("--db", default=None, help="LanceDB URI (default ./data/pairsmith.lance).")
@click.option("--verbose", is_flag=True, help="Show Prefect's task-run logs.")
def med_bench(json_path: str, images_dir: str | None, db: str | None, verbose: bool) -> None:
    """Store every MED benchmark item as a pair and its question as a med-mcq sample."""
    from pairsmith.flows.cli.common import CliError, open_store_or_fail, quiet_prefect, validate_config
    from pairsmith.tasks.med.bench_items import read_med_json

    try:
        read_med_json(Path(json_path))  # a broken file is one line, before Prefect starts
    except ValueError as err:
        raise CliError(str(err)) from None
    if images_dir is not None and not Path(images_dir).is_dir():
        raise CliError(f"--images {images_dir!r}: not a folder")
    quiet_prefect(verbose)  # before anything imports prefect: it reads its settings once
    from pairsmith.flows.import_med_bench import ImportMedBenchConfig

    data = {"json_path": json_path, "images_dir": images_dir}
    if db:
        data["db"] = db
    config = validate_config(ImportMedBenchConfig, data, "options")
    store = open_store_or_fail(config.db)
    from pairsmith.flows.engine.funnel import format_funnel, run_funnel
    from pairsmith.flows.import_med_bench import import_med_bench

    summary = import_med_bench(config)
    click.echo(f"Imported {summary.entries} entries from {json_path} into {summary.db} (run {summary.run_id}): "
               f"{summary.pairs_kept} pairs kept, {summary.pairs_dropped} dropped, {summary.samples} med-mcq samples")
    click.echo("categories: " + ", ".join(f"{c} ({n})" for c, n in summary.categories.items()))
    click.echo(format_funnel(run_funnel(store, summary.run_id)))
