"""The LanceDB store: schemas, idempotent upserts, reads, URI checks, and an S3 database."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pyarrow as pa
import pytest

from pairsmith.storage.db_uri import check_db_uri
from pairsmith.storage.schemas import KEYS, TABLES, PairRow, utc_now
from pairsmith.storage.store import DuplicateKey, PairStore, sql_literal


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


def test_duplicate_keys_in_one_write_collapse_and_the_later_conflicting_row_wins(tmp_path, caplog):
    store = PairStore(str(tmp_path / "db"))
    assert store.upsert("pairs", [pair("a"), pair("a"), pair("b")]) == 2  # identical rows collapse silently
    assert store.duplicates == []
    changed = pair("b", status="dropped").model_copy(update={"drop_reason": "visibility_too_small"})
    assert store.upsert("pairs", [pair("b"), changed, pair("c")]) == 1  # LanceDB would call this ambiguous
    assert store.duplicates == [DuplicateKey("pairs", "b", ("status", "drop_reason"))]
    assert "share pair_id b and differ in status, drop_reason; the later one is kept" in caplog.text
    rows = {r["pair_id"]: r for r in store.read("pairs").to_pylist()}
    assert sorted(rows) == ["a", "b", "c"] and rows["b"]["drop_reason"] == "visibility_too_small"
    assert store.duplicate_keys() == {}


def test_duplicate_keys_finds_keys_stored_twice(tmp_path):
    store = PairStore(str(tmp_path / "db"))
    store.upsert("pairs", [pair("a"), pair("b")])
    store.table("pairs").add(pa.Table.from_pylist([pair("a").model_dump()], schema=PairRow.to_arrow_schema()))
    assert store.duplicate_keys() == {"pairs": ["a"]}


def test_two_writers_that_stored_the_same_keys_at_once_leave_one_copy_of_each(tmp_path):
    """Two imports of the same file at once (other batch sizes) both appended the same pairs: each
    writer, seeing the other's copies, keeps the first stored of each key; doing so at the same
    time they agree, so one copy of each key stays and no other row goes (the old repair, delete
    and re-add one's own rows, left both copies when both writers repaired at once)."""
    import threading

    db = str(tmp_path / "db")
    PairStore(db).upsert("pairs", [pair(f"p{i}") for i in range(6)])
    again = pa.Table.from_pylist([pair(f"p{i}", run_id="run-b").model_dump() for i in range(2, 5)],
                                 schema=PairRow.to_arrow_schema())
    PairStore(db).table("pairs").add(again)  # the other writer's append of p2..p4 landed beside ours
    writers, start = [PairStore(db), PairStore(db)], threading.Barrier(2)
    errors = []

    def repair(store):
        start.wait()
        try:
            store._replace_concurrent_duplicates("pairs", again)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=repair, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = PairStore(db).read("pairs", columns=["pair_id", "run_id"]).to_pylist()
    assert sorted(r["pair_id"] for r in rows) == [f"p{i}" for i in range(6)]
    assert all(r["run_id"] == "run-a" for r in rows)  # the first stored copy of each key stays


def test_new_keys_append_existing_keys_merge_and_another_writer_is_noticed(tmp_path):
    first, second = PairStore(str(tmp_path / "db")), PairStore(str(tmp_path / "db"))
    assert first.upsert("pairs", [pair(f"p{i}") for i in range(5)]) == 5
    assert second.upsert("pairs", [pair("p1", status="dropped"), pair("p9")]) == 1  # another writer
    assert first.upsert("pairs", [pair("p1"), pair("p9", status="dropped"), pair("p7")]) == 1
    assert first.upsert("pairs", [pair("p8")]) == 1  # an append again, after the re-read
    rows = {r["pair_id"]: r["status"] for r in PairStore(str(tmp_path / "db")).read("pairs").to_pylist()}
    assert rows == {**{f"p{i}": "kept" for i in (0, 1, 2, 3, 4, 7, 8)}, "p9": "dropped"}
    assert first.duplicate_keys() == {}
    assert first.table("pairs").version == 5  # one commit per upsert, no extra work


def test_a_long_run_merges_its_small_fragments_as_it_writes(tmp_path, monkeypatch):
    monkeypatch.setattr("pairsmith.storage.store.COMPACT_EVERY", 8)
    store = PairStore(str(tmp_path / "db"))
    for i in range(20):
        store.upsert("pairs", [pair(f"p{i:02d}")])
    assert len(store.dataset("pairs").get_fragments()) == 1 + 20 - 16  # merged after commits 8 and 16
    assert store.upsert("pairs", [pair("p03", status="dropped"), pair("p20")]) == 1  # keys known across it
    assert store.count("pairs") == 21 and store.count("pairs", "status = 'dropped'") == 1
    assert store.duplicate_keys() == {}


def test_a_long_run_removes_the_versions_its_appends_superseded_and_no_file_a_reader_needs(tmp_path, monkeypatch):
    monkeypatch.setattr("pairsmith.storage.store.COMPACT_EVERY", 8)
    monkeypatch.setattr("pairsmith.storage.store.RETAIN_VERSIONS", 4)
    store = PairStore(str(tmp_path / "db"))
    for i in range(6):
        store.upsert("pairs", [pair(f"p{i:02d}")])
    early = store.dataset("pairs")  # version 7: a reader opened it and reads on later
    assert early.version == 7
    store.table("pairs").tags.create("kept-by-tag", 5)
    store.upsert("pairs", [pair("p01", status="dropped")])  # a merge: the version before it stays
    for i in range(6, 60):
        store.upsert("pairs", [pair(f"p{i:02d}")])
    versions = [v["version"] for v in store.dataset("pairs").versions()]
    latest = store.table("pairs").version
    assert latest > 1 + 61 and len(versions) < latest / 2  # 61 commits and 7 compactions made them
    assert 5 in versions and 7 in versions and 6 not in versions  # tagged; before the merge; superseded
    assert versions[-4:] == list(range(latest - 3, latest + 1))  # the newest are all there
    assert sorted(early.to_table(columns=["pair_id"]).column("pair_id").to_pylist()) == [f"p{i:02d}" for i in range(6)]
    assert store.table("pairs").checkout(5) is None and store.count("pairs") == 4  # the tagged one reads as it was
    store.table("pairs").checkout_latest()
    assert store.count("pairs") == 60 and store.count("pairs", "status = 'dropped'") == 1
    assert store.duplicate_keys() == {}


def test_update_sets_columns_by_key_and_leaves_images_alone(tmp_path):
    store = PairStore(str(tmp_path / "db"))
    store.upsert("pairs", [pair("a"), pair("b")])
    changed = store.update("pairs", [{"pair_id": "b", "status": "dropped", "drop_reason": "r"},
                                     {"pair_id": "zz", "status": "dropped", "drop_reason": "r"}])
    assert changed == 1
    rows = {r["pair_id"]: r for r in store.read("pairs").to_pylist()}
    assert (rows["b"]["status"], rows["b"]["drop_reason"], rows["b"]["image_before"]) == ("dropped", "r", b"\x89PNG-before")
    assert rows["a"]["status"] == "kept" and "zz" not in rows
    with pytest.raises(ValueError, match="every row needs 'pair_id'"):
        store.update("pairs", [{"status": "kept"}])


def _image_pairs(n: int, kb: int) -> list[PairRow]:
    return [PairRow(pair_id=f"p{i:03d}", run_id="r", method="dig-render", image_before=os.urandom(kb << 10),
                    image_after=os.urandom(kb << 10), width=8, height=8, status="kept" if i % 2 else "dropped",
                    created_at=utc_now()) for i in range(n)]


def test_scan_streams_batches_bounded_in_bytes_and_skips_image_bytes_it_was_not_asked_for(tmp_path):
    store = PairStore(str(tmp_path / "db"))
    for lo in range(0, 40, 10):
        store.upsert("pairs", _image_pairs(40, 256)[lo:lo + 10])
    batches = list(store.scan("pairs", "status = 'kept'", ["pair_id", "image_before", "image_after"],
                              batch_bytes=2 << 20))
    assert sorted(r["pair_id"] for b in batches for r in b) == [f"p{i:03d}" for i in range(1, 40, 2)]
    assert len(batches) >= 5 and max(len(b) for b in batches) <= 5  # 512 KiB a row, 2 MiB a batch
    ds = store.dataset("pairs")
    ds.io_stats_incremental()
    listing = ds.to_table(columns=["pair_id"], filter="status = 'kept'")  # what the readers do
    assert listing.num_rows == 20 and ds.io_stats_incremental().read_bytes < 1 << 20  # 20 MiB of images unread


def test_take_fetches_rows_by_key_in_bounded_batches_after_updates(tmp_path):
    store = PairStore(str(tmp_path / "db"))
    store.upsert("pairs", _image_pairs(30, 128))
    store.upsert("pairs", [_image_pairs(30, 1)[4]])  # a merge: the old row is deleted, offsets shift
    wanted = ["missing", "p004", *(f"p{i:03d}" for i in range(29, 9, -1))]
    chunks = list(store.take("pairs", wanted, ["image_before", "status"], batch_bytes=300 << 10))
    rows = {r["pair_id"]: r for c in chunks for r in c}
    assert sorted(rows) == sorted(wanted[1:]) and len(rows["p004"]["image_before"]) == 1 << 10
    assert max(len(c) for c in chunks[1:]) <= 2  # 128 KiB a row, 300 KiB a batch after the first


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
    taken = [r for chunk in PairStore(local_s3).take("pairs", ["b"], ["image_before"]) for r in chunk]
    assert taken == [{"pair_id": "b", "image_before": b"\x89PNG-before"}]  # pylance reads the same bucket


def test_unreachable_bucket_fails_before_any_work(local_s3):
    store = PairStore("s3://no-such-bucket/db")
    with pytest.raises(ValueError) as err:
        store.check_reachable()
    assert str(err.value) == "--db 's3://no-such-bucket/db': cannot open the database (The specified bucket does not exist)"


def test_an_append_streams_its_rows_in_byte_bounded_batches_and_keeps_every_image(tmp_path, monkeypatch):
    """Appends go to LanceDB as a stream of record batches of about WRITE_BATCH_BYTES (memory: one
    batch's Arrow copy at a time); every row and every image byte arrives, in one commit."""
    import pairsmith.storage.store as store_module

    monkeypatch.setattr(store_module, "WRITE_BATCH_BYTES", 2500)  # 1 KiB images: two rows a batch
    images = [os.urandom(1024) for _ in range(7)]
    rows = [PairRow(pair_id=f"p{i}", run_id="r", method="dig-render", image_before=img, image_after=img[::-1],
                    width=4, height=4, status="kept", created_at=utc_now()) for i, img in enumerate(images)]
    schema = PairRow.to_arrow_schema()
    assert [b.num_rows for b in store_module._record_batches([r.model_dump() for r in rows], schema)] == [2, 2, 2, 1]
    store = PairStore(str(tmp_path / "db"))
    assert store.upsert("pairs", rows) == 7
    assert store.table("pairs").version == 2  # created, then one append
    stored = store.read("pairs", columns=["pair_id", "image_before", "image_after"]).to_pylist()
    assert {r["pair_id"]: (r["image_before"], r["image_after"]) for r in stored} == {
        f"p{i}": (img, img[::-1]) for i, img in enumerate(images)}
