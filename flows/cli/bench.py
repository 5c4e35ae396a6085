"""``pairsmith bench med``: a VLM's accuracy on MED multiple-choice questions, per category.

Two sources of questions: the ``med-mcq`` samples of a database (``--db``, ``--split``, ``--run``),
or a published MED benchmark file read directly (``--json`` / ``--images``: imported into a
temporary database first, or into ``--db`` if given). Either way the evaluate flow asks the model
and scores the answers; an answer that names no single option is unparseable: counted, reported
and scored wrong, never guessed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from pairsmith.flows.cli.common import EXIT_FAILED, CliError, describe_failure, open_store_or_fail, quiet_prefect
from pairsmith.flows.cli.common import validate_config
from pairsmith.storage.db_uri import DEFAULT_DB


@click.group("bench")
def bench_group() -> None:
    """Benchmark a VLM on stored or published benchmark items."""


@bench_group.command("med")
@click.option("--model", "model_id", default=None, help="VLM hub id or local folder (default Qwen/Qwen2-VL-2B-Instruct).")
@click.option("--adapter", default=None, help="LoRA adapter folder from 'pairsmith finetune'.")
@click.option("--json", "json_path", default=None, help="A MED benchmark JSON file to evaluate directly.")
@click.option("--images", "images_dir", default=None, help="With --json: folder the image names are relative to.")
@click.option("--db", default=None, help=f"LanceDB URI (default {DEFAULT_DB}; with --json: a temporary one).")
@click.option("--split", default="bench", show_default=True, help="Samples of this split.")
@click.option("--run", "run_id", default=None, help="Only the med-mcq samples of this run.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many questions.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--verbose", is_flag=True, help="Show Prefect's task-run logs.")
def med(model_id, adapter, json_path, images_dir, db, split, run_id, limit, device, max_new_tokens, verbose) -> None:
    """Accuracy on MED multiple-choice questions, overall and per category."""
    quiet_prefect(verbose)  # before anything imports prefect: it reads its settings once
    if images_dir and not json_path:
        raise CliError("--images needs --json")
    if json_path and run_id:
        raise CliError("--run selects stored samples; with --json the imported run is used")
    run_ids, given_db = ([run_id] if run_id else []), db
    if json_path:
        _check_model(model_id, device)  # in seconds, before importing a benchmark no model could answer
        db, imported = _import(json_path, images_dir, db)
        run_ids, split = [imported.run_id], "bench"
        if imported.pairs_dropped:
            click.echo(f"{imported.pairs_dropped} of {imported.entries} entries could not be loaded"
                       + (f" (see 'pairsmith stats --run {imported.run_id} --db {db}')" if given_db else
                          " (import with --db DB to keep the database and see why)"))
    from pairsmith.storage.store import sql_literal

    db = db or DEFAULT_DB
    store = open_store_or_fail(db)
    where = f"task = 'med-mcq' AND split = {sql_literal(split)}"
    if store.count("samples", where) == 0:
        raise CliError(f"--db {store.uri!r}: no med-mcq samples in split {split!r}; import a benchmark with --json")
    from pairsmith.flows.evaluate_config import EvaluateConfig

    config = validate_config(EvaluateConfig, {
        "db": db, "model_id": model_id, "adapter": adapter, "runtime": {"device": device},
        "max_new_tokens": max_new_tokens, "show_progress": True,
        "data": {"tasks": ["med-mcq"], "splits": [split], "run_ids": run_ids, "limit": limit},
    }, "options")
    from pairsmith.flows.cli.run import execute
    from pairsmith.flows.registry import FLOWS

    execute(FLOWS["evaluate"], config, "options", verbose,
            report=lambda summary, *_: click.echo(format_mcq_report(summary.metrics, summary.model_id)))


def _check_model(model_id: str | None, device: str) -> None:
    """Exit 1 with one line if the model cannot be loaded from here (the evaluation would fail the same way)."""
    from pairsmith.flows.evaluate_config import DEFAULT_MODEL
    from pairsmith.models.failures import ModelUnavailable
    from pairsmith.models.runtime import ModelRuntime

    model = model_id or DEFAULT_MODEL
    try:
        ModelRuntime(device=device).check_model_source(model)
    except ModelUnavailable as err:
        click.echo(f"pairsmith: error: evaluation failed: {describe_failure(err)}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from None


def _import(json_path: str, images_dir: str | None, db: str | None):
    from pairsmith.flows.import_dataset import run_import
    from pairsmith.tasks.imports.med_bench import MedBenchConfig, MedBenchImporter

    config = validate_config(MedBenchConfig, {"json_path": json_path, "images_dir": images_dir,
                                              **({"db": db} if db else {})}, "options")
    try:
        MedBenchImporter().check(config)  # a broken file is one line, before anything is created
    except ValueError as err:
        raise CliError(str(err)) from None
    if not db:
        temporary = tempfile.mkdtemp(prefix="pairsmith-bench-")
        click.get_current_context().call_on_close(lambda: shutil.rmtree(temporary, ignore_errors=True))  # never left behind
        config = config.model_copy(update={"db": str(Path(temporary) / "bench.lance")})
    return config.db, run_import(config)


def format_mcq_report(metrics: list[dict], model_id: str) -> str:
    """category  n  correct  unparseable  accuracy; 'all' first. Correct + wrong + unparseable = n."""
    rows: dict[str, dict[str, float]] = {}
    for m in metrics:
        if m["task"] == "med-mcq":
            rows.setdefault(m["group"], {"n": m["n"]})[m["metric"]] = m["value"]
    if not rows:
        return "(no med-mcq results)"
    lines = [f"MED multiple choice, {model_id}: unparseable answers count as wrong",
             f"{'category':<18} {'n':>4} {'correct':>8} {'unparseable':>12} {'accuracy':>9}"]
    for group, r in rows.items():
        n = int(r["n"])
        correct = round(r.get("accuracy", 0.0) * n)
        lines.append(f"{group:<18} {n:>4} {correct:>8} {int(r.get('unparseable', 0)):>12} {r.get('accuracy', 0.0):>9.3f}")
    return "\n".join(lines)
