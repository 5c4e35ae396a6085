"""Shared fixtures: one temporary Prefect backend and one 20-pair render for the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network on CI machines
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.testing.utilities import prefect_test_harness

from pairsmith.flows.dig_render import RenderRunSummary, dig_render
from pairsmith.flows.dig_render_config import DigRenderConfig
from pairsmith.storage.store import PairStore

# Real data the repository does not ship (docs/shared-data.md): $PAIRSMITH_SHARED_DATA, else ../shared/data
# beside the checkout. Tests that need it skip with SHARED_DATA_HELP, which says where to get it.
SHARED_DATA = Path(os.environ.get("PAIRSMITH_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
SHARED_DATA_HELP = ("set PAIRSMITH_SHARED_DATA to a folder holding med_bench_sample/ and spot_the_diff/; "
                    "docs/shared-data.md says where each comes from")

# The papers' full texts (text extractions, one .txt per paper) beside the checkout, for the tests
# that compare pairsmith's prompts and parameters with the printed ones.
PAPERS_TEXTS = Path(__file__).resolve().parents[1].parent / "shared" / "papers"


def paper_text(marker: str) -> str:
    """The text of the paper that contains ``marker``; skips the test (saying why) where it is absent."""
    if not PAPERS_TEXTS.is_dir():
        pytest.skip(f"the papers' texts are not at {PAPERS_TEXTS} (../shared/papers); comparison skipped")
    for path in sorted(PAPERS_TEXTS.glob("*.txt")):
        text = path.read_text()
        if marker in text:
            return text
    pytest.skip(f"no paper text in {PAPERS_TEXTS} holds {marker!r}; comparison skipped")


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules running tiny torch models: they gain nothing from threads, and on a busy 2-core
    machine two spinning OpenMP threads made such tests 4x slower (6 min vs 1.5 min measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def prefect_backend():
    """Flows run against a throw-away local Prefect server and database, as in ephemeral mode."""
    with prefect_test_harness(server_startup_timeout=180):
        yield


def _duplicate_keys(uris) -> dict[str, dict[str, list[str]]]:
    from pairsmith.storage import store as store_module

    found = {}
    for uri in uris:
        dupes = store_module._STORES[uri].duplicate_keys()
        if dupes:
            found[uri] = dupes
    return found


@pytest.fixture(autouse=True)
def unique_keys_after_every_flow():
    """Each database a flow opened during the test holds every key once (issue 11: no write may store a
    key twice). Databases opened by session fixtures are checked once, at the end of the session."""
    from pairsmith.storage import store as store_module

    before = set(store_module._STORES)
    yield
    found = _duplicate_keys(set(store_module._STORES) - before)
    assert not found, f"keys stored twice: {found}"


@pytest.fixture(scope="session", autouse=True)
def unique_keys_at_the_end():
    from pairsmith.storage import store as store_module

    yield
    found = _duplicate_keys(list(store_module._STORES))
    assert not found, f"keys stored twice: {found}"


@dataclass
class RenderedRun:
    config: DigRenderConfig
    summary: RenderRunSummary
    flow_run_id: UUID
    store: PairStore


def render_run(db: Path, **overrides) -> RenderedRun:
    config = DigRenderConfig(db=str(db), **overrides)
    state = dig_render(config, return_state=True)
    return RenderedRun(config, state.result(), state.state_details.flow_run_id, PairStore(str(db)))


@pytest.fixture(scope="session")
def rendered_run(tmp_path_factory) -> RenderedRun:
    """What ``pairsmith render --pairs 20`` makes, with every default."""
    return render_run(tmp_path_factory.mktemp("render20") / "pairsmith.lance", pairs=20)
