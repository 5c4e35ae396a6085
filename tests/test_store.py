"""The LanceDB store: schemas, idempotent upserts, reads, URI checks, and an S3 database."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest

from pairsmith.storage.db_uri import check_db_uri
from pairsmith.storage.schemas import KEYS, TABLES, PairRow, utc_now
from pairsmith.storage.store import PairStore, sql_literal


def pair(pair_id: str, run_id: str = "run-a", status: str = "kept") -> PairRow:
    return PairRow(pair_id=pair_id, run_id=run_id, method="dig-render", image_before=b"\x89PNG-before",
                   width=320, height=240, status=status, created_at=utc_now())


def test_schemas_keep_the_design_names():
    names = {t: set(m.to_arrow_schema().names) for t, m in TABLES.items()}
    assert {"pair_id", "run_id", "method", "image_before", "image_after", "width", "height", "status",
            "drop_stage", "drop_reason"} <= names["pairs"]
    assert {"region_id", "pair_id", "box", "proposer", "change_type", "status", "reason"} <= names["regions"]
    assert {"sample_id", "pair_id", "task", "conversation", "answer", "boxes", "split"} <= names["samples"]
    assert {"run_id", "flow", "stage", "n_in", "n_kept", "n_dropped", "drop_reasons", "seconds"} <= names["stage_stats"]
    assert TABLES["pairs"].to_arrow_schema().field("image_before").type == pa.binary()
    assert all(KEYS[t] in names[t] for t in TABLES)


def test_upsert_is_idempotent_and_updates_in_place(tmp_path):
    store = PairStore(str(tmp_path / "db"))
    assert store.upsert("pairs", [pair("a"), pair("b")]) == 2
    assert store.upsert("pairs", [pair("a"), pair("b")]) == 0
    assert store.upsert("pairs", [pair("b", status="dropped"), pair("c")]) == 1
    rows = {r["pair_id"]: r for r in store.read("pairs").to_pylist()}
    assert sorted(rows) == ["a", "b", "c"]
    assert rows["b"]["status"] == "dropped" and rows["a"]["image_before"] == b"\x89PNG-before"
    assert store.count("pairs", "status = 'kept'") == 2


def test_upsert_refuses_rows_of_another_table(tmp_path):
    store = PairStore(str(tmp_path / "db"))
    with pytest.raises(TypeError, match="table 'regions' takes RegionRow rows, got PairRow"):
        store.upsert("regions", [pair("a")])


def test_reads_of_missing_tables_are_empty_and_filters_quote_values(tmp_path):
    store = PairStore(str(tmp_path / "db"))
    assert store.read("samples").num_rows == 0
    assert store.read("pairs", columns=["pair_id"]).schema.names == ["pair_id"]
    store.upsert("pairs", [pair("a", run_id="it's"), pair("b")])
    assert store.count("pairs", "run_id = " + sql_literal("it's")) == 1
    assert store.read("pairs", limit=1).num_rows == 1


def test_tables_of_an_older_schema_gain_the_new_columns(tmp_path):
    import lancedb

    old = pa.schema([f for f in PairRow.to_arrow_schema() if f.name not in {"origin", "difference", "drop_detail"}])
    db = lancedb.connect(str(tmp_path / "db"))
    db.create_table("pairs", schema=old).add(pa.Table.from_pylist(
        [{k: v for k, v in pair("old").model_dump().items() if k in old.names}], schema=old))
    store = PairStore(str(tmp_path / "db"))
    store.upsert("pairs", [pair("new").model_copy(update={"origin": "file:x.jpg"})])
    rows = {r["pair_id"]: r for r in store.read("pairs").to_pylist()}
    assert rows["old"]["origin"] is None and rows["new"]["origin"] == "file:x.jpg"


def test_a_second_connection_sees_new_commits(tmp_path):
    first, second = PairStore(str(tmp_path / "db")), PairStore(str(tmp_path / "db"))
    first.upsert("pairs", [pair("a")])
    assert second.count("pairs") == 1
    first.upsert("pairs", [pair("b")])
    assert second.count("pairs") == 2


@pytest.mark.parametrize(
    "uri, message",
    [
        ("", "--db is empty"),
        ("foo://bucket/db", "unsupported URI scheme 'foo'"),
        ("s3://", "missing bucket"),
    ],
)
def test_bad_uris_are_rejected(uri, message):
    with pytest.raises(ValueError, match=message):
        check_db_uri(uri)


def test_local_paths_that_cannot_hold_a_database(tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_db_uri(str(file))
    with pytest.raises(ValueError, match="which is a file"):
        check_db_uri(str(file / "db"))
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="not writable"):
            check_db_uri(str(locked / "db"))
    assert check_db_uri(str(tmp_path / "new" / "db")) == str(tmp_path / "new" / "db")
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert check_db_uri("s3://bucket/db") == "s3://bucket/db"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def local_s3(monkeypatch):
    """A moto S3 server on 127.0.0.1, with credentials in the environment as users set them."""
    server = shutil.which("moto_server")
    if server is None:
        pytest.skip("moto[server] is not installed: pip install -e '.[dev]'")
    port = _free_port()
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint, timeout=0.5)
                break
            except OSError:
                time.sleep(0.1)
        req = urllib.request.Request(f"{endpoint}/pairsmith", method="PUT")
        urllib.request.urlopen(req, timeout=5)
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true",
        }.items():
            monkeypatch.setenv(key, value)
        yield "s3://pairsmith/db"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_object_store_database_with_credentials_from_env(local_s3):
    store = PairStore(local_s3)
    store.check_reachable()
    assert store.upsert("pairs", [pair("a"), pair("b")]) == 2
    assert store.upsert("pairs", [pair("a")]) == 0
    assert sorted(PairStore(local_s3).read("pairs", columns=["pair_id"]).column("pair_id").to_pylist()) == ["a", "b"]


def test_unreachable_bucket_fails_before_any_work(local_s3):
    store = PairStore("s3://no-such-bucket/db")
    with pytest.raises(ValueError) as err:
        store.check_reachable()
    assert str(err.value) == "--db 's3://no-such-bucket/db': cannot open the database (The specified bucket does not exist)"
