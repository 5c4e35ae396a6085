"""Training commands: ``pairsmith finetune`` (LoRA SFT / GRPO) and ``pairsmith evaluate`` (metrics)."""

from __future__ import annotations

from typing import Any

import click

from pairsmith.flows.cli.common import DEFAULT_DB, EXIT_FAILED, CliError, describe_failure, load_yaml, open_store_or_fail
from pairsmith.flows.cli.common import quiet_prefect, set_option, validate_config


def _check_samples(db: str, where: str, hint: str) -> None:
    """Fail in one line before Prefect or a model starts when no stored sample matches."""
    store = open_store_or_fail(db)
    if "samples" not in store.table_names():
        raise CliError(f"--db {store.uri!r}: no samples yet; run 'pairsmith render' first")
    if store.count("samples", where) == 0:
        raise CliError(f"--db {store.uri!r}: no samples match {where}; {hint}")


@click.command()
@click.option("--config", "config_path", required=True, type=str,
              help="YAML file with the fields of flows/finetune_config.py; 'method: sft' or 'method: grpo'.")
@click.option("--db", default=None, help=f"LanceDB URI (default: the config's, else {DEFAULT_DB}).")
@click.option("--model", "model_id", default=None, help="Base model: hub id or local folder (overrides the config).")
@click.option("--output-dir", default=None, help="Runs folder (default ./runs); the run goes to a sub-folder.")
@click.option("--overwrite", is_flag=True, help="Train again even if this run already finished.")
@click.option("--verbose", is_flag=True, help="Show Prefect's task-run logs and the trainer's progress.")
@click.option("--print-args", is_flag=True, help="Print, as JSON, the trainer arguments that would be passed "
              "(TRL's config per stage, LoRA, reward) and exit: no database, model or GPU is touched.")
def finetune(config_path: str, verbose: bool, print_args: bool, **opts: Any) -> None:
    """Train LoRA adapters on stored samples (SFT or GRPO) and save them with a run card."""
    from pairsmith.flows.finetune_config import FinetuneConfig

    data = load_yaml(config_path)
    for key in ("db", "model_id", "output_dir"):
        set_option(data, key, opts[key])
    set_option(data, "overwrite", opts["overwrite"] or None)  # absent flag: the config decides
    data.setdefault("show_progress", verbose)
    config = validate_config(FinetuneConfig, data, config_path).root
    if print_args:
        import json

        click.echo(json.dumps(trainer_arguments(config), indent=2, default=str))
        return
    quiet_prefect(verbose)  # before anything imports prefect: it reads its settings once
    _check_samples(config.db, config.data.where(training=True), "check data.tasks / splits / methods in the config")
    from pairsmith.flows.finetune import finetune as finetune_flow

    try:
        summary = finetune_flow(config)
    except Exception as err:  # the flow failed; the data is untouched and no run card claims a finished run
        click.echo(f"pairsmith: error: {config.method} run {config.run_name()} failed: {describe_failure(err)}",
                   err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from None
    verb = "Already trained" if summary.resumed else "Trained"
    click.echo(f"{verb} {summary.method} run {summary.run_name} on {summary.n_samples} samples "
               f"(samples table version {summary.samples_version})")
    click.echo(f"adapter   {summary.adapter_dir}\nrun card  {summary.run_card}")
    for s in summary.stages:
        reward = f", final reward {s['final_reward']:.4f}" if s["final_reward"] is not None else ""
        loss = f"{s['final_loss']:.4f}" if s["final_loss"] is not None else "-"
        click.echo(f"stage {s['name']}: {s['n_samples']} samples, {s['steps']} steps, final loss {loss}{reward}")


def trainer_arguments(config) -> dict[str, Any]:
    """What ``finetune`` would hand the trainers: per stage TRL's config arguments, plus LoRA and
    (GRPO) the reward; built from the config alone (``--print-args``)."""
    work_dir = str(config.run_dir())
    out: dict[str, Any] = {"method": config.method, "model_id": config.model_id, "run_name": config.run_name(),
                           "lora": config.lora.model_dump(mode="json")}
    if config.method == "grpo":
        from pairsmith.models.vlm_grpo import grpo_args

        out["reward"] = config.reward.model_dump(mode="json")
        out["online_filter"] = list(config.grpo.filter_range) if config.grpo.filter_range else None
        validation = config.grpo.validation
        out["validation"] = validation.model_dump(mode="json") if validation is not None else None
        out["stages"] = [{"name": s.name, "subsets": s.subsets,
                          "trl_grpo_config": grpo_args(config.grpo, s.steps, config.runtime, work_dir)}
                         for s in config.stages]
    else:
        from pairsmith.models.vlm_sft import sft_config_args

        t = config.train
        out["objective"] = {
            "name": t.objective,
            "loss": "l_cap(Z[I(x) - I(x_hat)], answer): the language model fed the difference of the two images' "
                    "visual features (MED Eq. 7)" if t.objective == "feature-difference"
                    else "l_cap(Z[I(x), I(x_hat)], answer): the caption loss on both images as given",
        }
        out["data"] = {"tasks": config.data.tasks, "splits": config.data.splits, "layout": config.data.layout}
        out["learning_rates"] = {"vision_tower": (t.vision_learning_rate or t.learning_rate)
                                 if config.lora.vision_tower else "frozen", "rest": t.learning_rate}
        out["batch_size"] = {"per_device": t.per_device_batch_size, "gradient_accumulation_steps":
                             t.gradient_accumulation_steps, "per_optimizer_step_on_one_process": t.batch_size}
        out["trl_sft_config"] = sft_config_args(t, config.runtime, work_dir)
    return out


def format_metrics(rows: list[dict]) -> str:
    header = ("task", "group", "metric", "value", "n")
    lines = [(r["task"], r["group"], r["metric"], f"{r['value']:.4f}", str(r["n"])) for r in rows]
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(x, widths)))
                     for x in [header, *lines])


@click.command()
@click.option("--config", "config_path", default=None, type=str, help="YAML with flows/evaluate_config.py fields.")
@click.option("--db", default=None, help=f"LanceDB URI (default {DEFAULT_DB}).")
@click.option("--model", "model_id", default=None, help="Base model: hub id or local folder.")
@click.option("--adapter", default=None, help="LoRA adapter folder written by 'pairsmith finetune'.")
@click.option("--run-card", default=None, help="A finetune run card or its folder: its base model and adapter.")
@click.option("--task", "tasks", multiple=True, help="Only these tasks (repeat): grounding, med-mcq, diff-caption, ...")
@click.option("--split", "splits", multiple=True, help="Held-out splits (repeat; default test).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many samples.")
@click.option("--max-new-tokens", type=click.IntRange(1, 8192), default=None, help="Answer length (default 256).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None, help="Where to run.")
@click.option("--layout", type=click.Choice(["multi", "side-by-side"]), default=None,
              help="Two images, or one side-by-side picture for single-image models.")
@click.option("--dataset", "datasets", multiple=True,
              help="Only these data sources (repeat): an imported set (spot-the-diff, clevr-change, ...) or a "
                   "pipeline (dig-render, ...).")
@click.option("--judge-model", default=None,
              help="Score captions with this LLM judge too (0-100): a chat model id or folder, or a Gemini model.")
@click.option("--judge-backend", type=click.Choice(["transformers", "gemini"]), default=None,
              help="Where the judge runs (default transformers; gemini reads GEMINI_API_KEY).")
@click.option("--verbose", is_flag=True, help="Show Prefect's task-run logs.")
def evaluate(config_path: str | None, verbose: bool, **opts: Any) -> None:
    """Score a model on held-out samples: grounding F1 / IoU / AP@0.5, MCQ accuracy, caption BLEU-4 /
    METEOR / ROUGE-L / CIDEr and an optional LLM judge, per data source."""
    quiet_prefect(verbose)  # before anything imports prefect: it reads its settings once
    from pairsmith.flows.evaluate_config import EvaluateConfig

    data = load_yaml(config_path)
    for key, dotted in {"db": "db", "model_id": "model_id", "adapter": "adapter", "run_card": "run_card",
                        "tasks": "data.tasks", "splits": "data.splits", "limit": "data.limit",
                        "max_new_tokens": "max_new_tokens", "device": "runtime.device",
                        "layout": "data.layout", "datasets": "data.datasets", "judge_model": "judge.model_id",
                        "judge_backend": "judge.backend"}.items():
        value = opts[key]
        set_option(data, dotted, (list(value) or None) if isinstance(value, tuple) else value)
    data.setdefault("show_progress", True)
    config = validate_config(EvaluateConfig, data, config_path or "options")
    _check_samples(config.db, config.data.where(), "pick held-out samples with --split / --task")
    from pairsmith.flows.evaluate import evaluate as evaluate_flow

    try:
        summary = evaluate_flow(config)
    except Exception as err:  # answers already committed stay; re-running resumes
        click.echo(f"pairsmith: error: evaluation failed: {describe_failure(err)}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from None
    model = summary.model_id + (f" + {summary.adapter}" if summary.adapter else "")
    click.echo(f"Evaluated {model} on {summary.n_samples} samples (samples table version {summary.samples_version});"
               f" results stored as eval_id {summary.eval_id}")
    click.echo(format_metrics(summary.metrics))
    for metric, why in summary.unavailable.items():
        click.echo(f"{metric}: unavailable ({why})")
    from pairsmith.flows.engine.run_outcome import exit_on_item_errors

    exit_on_item_errors(open_store_or_fail(config.db), summary.eval_id)
