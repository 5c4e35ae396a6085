"""A database made by an earlier pairsmith resumes under this code: same run ids, no new rows (issue 25).

``tests/fixtures/legacy_db`` holds one tiny run of every flow that stores runs, made by the commit
named in ``tests/fixtures/README.md`` (``tests/fixtures/build_legacy_db.py`` rebuilds it and records
every config in ``runs.json``). Here a copy is resumed: each run's recorded config goes through
today's config class and flow, in the order the runs were made. Each must come back under its
recorded run id, add no row to any table, send no request to Gemini (an edit is paid for once), and
say in its summary that it made nothing new.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import pytest

from tests.fixtures.build_legacy_db import (
    DB, FIXTURE, Run, build_models, fake_gemini, row_counts, run_id_of, with_gemini,
)

pytestmark = pytest.mark.slow

# Summary fields that count work an invocation did (not what the run holds): a resume does none.
NEW_WORK = ("pairs_rendered", "n_generated", "entries_retried", "requests_sent", "pairs_changed",
            "regions_changed")


def flow_and_config(flow: str) -> tuple[Callable, type]:
    """Today's flow function and config class for a recorded flow name, from the registry
    (``import <importer>``: the import flow with that importer's config)."""
    from pairsmith.flows.registry import FLOWS

    if flow.startswith("import "):
        from pairsmith.tasks.imports import load_importer

        return FLOWS["import"].flow_function(), load_importer(flow.removeprefix("import ")).config_class
    return FLOWS[flow].flow_function(), FLOWS[flow].config_class()


def nothing_new(flow: str, summary) -> list[str]:
    """What ``summary`` says was made or redone (empty: nothing)."""
    said = summary.model_dump()
    problems = [f"{k} = {said[k]}" for k in NEW_WORK if said.get(k)]
    if "batches" in said and "batches_resumed" in said and said["batches_resumed"] != said["batches"]:
        problems.append(f"{said['batches_resumed']} of {said['batches']} batches resumed")
    return problems


@pytest.fixture
def legacy(tmp_path, monkeypatch) -> dict:
    """A copy of the fixture as the working folder (its configs' paths are relative to it), with the tiny models."""
    if not (FIXTURE / "runs.json").exists():
        pytest.fail(f"{FIXTURE} is missing: rebuild it with .venv/bin/python -m tests.fixtures.build_legacy_db")
    work = tmp_path / "legacy"
    shutil.copytree(FIXTURE, work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    build_models()
    return json.loads((work / "runs.json").read_text())


def test_every_flow_resumes_a_database_made_by_an_earlier_pairsmith_with_no_new_rows(legacy, one_torch_thread):
    recorded = legacy
    before = row_counts(DB)
    assert before == recorded["row_counts"], "the fixture copy differs from what the builder recorded"
    flows = [r["flow"] for r in recorded["runs"]]
    assert {"dig-render", "med-edit", "propose-regions", "imgdiff-replace", "imgdiff-remove", "refilter",
            "evaluate"} <= set(flows) and sum(f.startswith("import ") for f in flows) == 5
    with fake_gemini() as server:
        for entry in recorded["runs"]:
            flow_fn, config_class = flow_and_config(entry["flow"])
            run = with_gemini(Run(entry["flow"], entry["config_class"], entry["config"]), server)
            summary = flow_fn(config_class.model_validate(run.config))
            where = f"{entry['flow']} ({entry['run_id']})"
            assert run_id_of(summary) == entry["run_id"], f"{where}: resumed under another run id"
            assert row_counts(DB) == before, f"{where}: rows added"
            assert nothing_new(entry["flow"], summary) == [], f"{where}: the summary says it made something"
        assert server.log == [], "a resumed med-edit paid Gemini again"
