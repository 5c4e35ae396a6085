"""``FLOWS`` declares each flow once: every entry has a config class, its flow, an example config,
a deployment in prefect.yaml (or a reason why not) and a command whose options come from its config."""

from __future__ import annotations

import typing
from pathlib import Path

import click
import pytest
import yaml
from pydantic import BaseModel, RootModel

from pairsmith.flows.cli.main import main
from pairsmith.flows.cli.options import config_options
from pairsmith.flows.cli.run import flow_command, run as run_group
from pairsmith.flows.registry import FLOWS, flow_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(FLOWS))
def test_every_flow_has_a_config_class_and_a_prefect_flow_named_after_it(name):
    spec = FLOWS[name]
    config_class = spec.config_class()
    assert isinstance(config_class, type) and issubclass(config_class, (BaseModel, RootModel))
    module = spec.config.split(":")[0]
    assert module.endswith("_config") or name == "import", f"{name}: its config lives in {module}, not <flow>_config.py"
    flow = spec.flow_function()
    assert callable(flow)
    if name != "import":  # run_import names its flow run import-<importer>
        assert flow.name == name


def test_prefect_yaml_deploys_every_flow_that_has_no_reason_not_to_and_only_registered_flows():
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    entrypoints = {d["entrypoint"] for d in deployments}
    registered = {s.entrypoint: n for n, s in FLOWS.items()}
    assert entrypoints <= set(registered), f"deployed but not registered: {entrypoints - set(registered)}"
    undeployed = {n for n, s in FLOWS.items() if s.deployment is None and s.entrypoint not in entrypoints}
    assert not undeployed, f"registered flows without a deployment or a reason: {undeployed}"
    for d in deployments:  # each deployment's parameters are its flow's config
        spec = FLOWS[registered[d["entrypoint"]]]
        config = spec.config_class().model_validate(d["parameters"]["config"])
        assert config is not None


def test_the_run_command_lists_every_runnable_flow_and_builds_its_options_from_the_config(capsys):
    runnable = sorted(n for n, s in FLOWS.items() if s.run_command)
    assert run_group.list_commands(click.Context(run_group)) == runnable
    assert main(["run", "--help"]) == 0
    listing = capsys.readouterr().out
    assert all(n in listing for n in runnable)
    for name in runnable:
        spec = FLOWS[name]
        command = flow_command(name)
        flags = {opt for p in command.params for opt in p.opts}
        for field_name, field in spec.config_class().model_fields.items():
            nested = any(isinstance(t, type) and issubclass(t, BaseModel)
                         for t in (field.annotation, *typing.get_args(field.annotation)))
            if nested or field_name == "show_progress":
                continue  # nested settings come from --config (or the options their field lists)
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            flag = "--" + (extra.get("option") or field_name.replace("_", "-"))
            assert flag in flags, (name, field_name)  # every top-level setting is an option
        assert {"--db", "--config", "--verbose"} <= flags


def test_render_is_run_dig_render_under_another_name(capsys):
    assert main(["render", "--help"]) == 0
    render = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip().startswith("--")}
    assert main(["run", "dig-render", "--help"]) == 0
    run = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip().startswith("--")}
    assert render == run
    # every option render had before the registry (README), still there
    assert {"--pairs", "--db", "--seed", "--batch-size", "--scenes", "--min-objects", "--max-objects",
            "--min-changes", "--max-changes", "--kind", "--captions", "--distractors", "--samples", "--width",
            "--height", "--denoise", "--device", "--gpu-backend", "--runner", "--ray-address", "--ray-cpus",
            "--config", "--verbose"} <= render


def test_a_nested_option_lands_in_its_nested_field_and_a_ray_option_means_ray():
    from pairsmith.flows.cli.options import apply_options

    options = config_options(FLOWS["dig-render"].config_class())
    by_flag = {o.flag: o for o in options}
    data = apply_options({"render": {"samples": 2}}, options, {
        by_flag["--width"].param: 64, by_flag["--kind"].param: ("move", "add"), by_flag["--ray-cpus"].param: 2})
    assert data == {"render": {"samples": 2, "width": 64}, "sampling": {"change_kinds": ["move", "add"]},
                    "runner": {"ray_num_cpus": 2}}
    config = FLOWS["dig-render"].config_class().model_validate(data)
    assert config.runner.kind == "ray" and config.render.width == 64 and config.sampling.change_kinds == ("move", "add")


def test_an_unknown_flow_is_one_line_naming_the_choices(capsys):
    assert main(["run", "no-such-flow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-flow" in err
    with pytest.raises(ValueError, match="flows are dig-render"):
        flow_spec("no-such-flow")
