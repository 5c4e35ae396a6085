"""Issue 22, kinds 1, 7 and 8 for the store and its exports: a flag that destroys data, read-only
stores, and what a killed command leaves behind.

* ``--overwrite`` replaces only a folder pairsmith itself exported to (``.pairsmith-export``), never
  the database, a folder holding it or inside it, nor a folder with anything else in it;
* a database on a read-only mount (a real one: a read-only bind mount in a private mount namespace,
  ``unshare -rm``, which stops root too) can be inspected and exported; writes are refused;
* a ``kill -9`` during an export leaves a ``.partial`` folder and a running tag that the next export
  and ``maintain`` sweep, never those of a command still running; ``versions --delete`` deletes a tag.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from pairsmith.flows.cli.main import main
from pairsmith.storage.exports.base import MARKER
from pairsmith.storage.process_owner import host_name
from pairsmith.storage.store import PairStore
from pairsmith.storage.versions import RUNNING, current_versions, list_tags, tag_versions
from tests.synthetic_db import SyntheticRun, build

PAIRSMITH = str(Path(sys.executable).with_name("pairsmith"))


def _db(path: Path, pairs: int = 20, unique_bytes: int = 100) -> PairStore:
    store = PairStore(str(path))
    build(store, SyntheticRun(unique_bytes=unique_bytes), pairs, batch_pairs=10)
    return store


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder with the default database, ./data/pairsmith.lance, as the README sets it up."""
    monkeypatch.chdir(tmp_path)
    _db(tmp_path / "data" / "pairsmith.lance")
    return tmp_path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- kind 1: --overwrite replaces only pairsmith's own exports ---------------------------------------


def test_overwrite_never_replaces_the_folder_holding_the_default_database(project, capsys):
    before = _tree(project / "data")
    code = main(["export", "--format", "hf", "--out", "data", "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "holds the database" in err and "pairsmith.lance" in err
    assert _tree(project / "data") == before  # the database is intact, nothing added beside it
    assert list_tags(PairStore("data/pairsmith.lance")) == {}  # and no tag claims an export that never was
    assert main(["stats"]) == 0


@pytest.mark.parametrize("out", ["data/pairsmith.lance", "data/pairsmith.lance/samples.lance", "data/pairsmith.lance/new",
                                 ".", ".."])
def test_overwrite_refuses_the_database_itself_inside_it_and_above_it(project, capsys, out):
    before = _tree(project)
    siblings = sorted(p.name for p in project.parent.iterdir())
    assert main(["export", "--format", "llava", "--out", out, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "database" in err, err
    assert _tree(project) == before
    assert sorted(p.name for p in project.parent.iterdir()) == siblings  # `..` left no hidden folder


def test_overwrite_refuses_a_folder_of_user_files_and_a_file(project, capsys):
    user = project / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    assert main(["export", "--format", "llava", "--out", "mine", "--overwrite"]) == 2
    assert "not a pairsmith export" in capsys.readouterr().err
    assert (user / "notes.txt").read_text() == "keep me" and len(list(user.iterdir())) == 1
    (project / "afile").write_text("x")
    assert main(["export", "--format", "llava", "--out", "afile", "--overwrite"]) == 2
    assert "is a file" in capsys.readouterr().err and (project / "afile").read_text() == "x"
    assert not [p for p in project.iterdir() if p.name.startswith(".")]  # no hidden folder left


def test_overwrite_replaces_an_earlier_export_but_not_one_with_files_added(project, capsys):
    assert main(["export", "--format", "llava", "--out", "exp"]) == 0
    marker = json.loads((project / "exp" / MARKER).read_text())
    assert marker["format"] == "llava" and marker["tag"].startswith("export-") and "llava.json" in marker["entries"]
    assert main(["export", "--format", "llava", "--out", "exp"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["export", "--format", "sharegpt", "--out", "exp", "--overwrite"]) == 0
    assert (project / "exp" / "sharegpt.json").exists() and not (project / "exp" / "llava.json").exists()
    (project / "exp" / "my-notes.md").write_text("mine")
    capsys.readouterr()
    assert main(["export", "--format", "llava", "--out", "exp", "--overwrite"]) == 2
    assert "other files added (my-notes.md)" in capsys.readouterr().err
    assert (project / "exp" / "my-notes.md").read_text() == "mine"
    assert not [p for p in project.iterdir() if p.name.startswith(".")]


def test_an_export_folder_holding_another_database_is_not_replaced(project, capsys):
    assert main(["export", "--format", "llava", "--out", "exp"]) == 0
    other = project / "exp" / "other.lance"
    _db(other, pairs=10)
    before = _tree(other)
    assert main(["export", "--format", "llava", "--out", "exp", "--overwrite"]) == 2
    assert "other files added (other.lance)" in capsys.readouterr().err and _tree(other) == before


def test_contact_sheet_replaces_only_its_own_sheet_and_never_writes_in_the_database(project, capsys):
    assert main(["contact-sheet", "--out", "sheet.png", "--n", "2"]) == 0
    assert main(["contact-sheet", "--out", "sheet.png", "--n", "2"]) == 0  # its own sheet: replaced
    photo = project / "photo.png"
    Image.new("RGB", (4, 4)).save(photo)
    data = photo.read_bytes()
    capsys.readouterr()
    assert main(["contact-sheet", "--out", "photo.png"]) == 2
    assert "not a contact sheet pairsmith drew" in capsys.readouterr().err and photo.read_bytes() == data
    assert main(["contact-sheet", "--out", "data/pairsmith.lance/sheet.png"]) == 2
    assert "inside the database" in capsys.readouterr().err
    assert not (project / "data" / "pairsmith.lance" / "sheet.png").exists()


# -- kind 8: leftovers of a killed export --------------------------------------------------------------


def _leftovers(project: Path, pid: int, made_at: float) -> tuple[Path, str]:
    partial = project / f".exp.partial-{host_name()}.{pid}.{int(made_at)}.abc_12"  # as the export names it
    partial.mkdir()
    (partial / "llava.json").write_text("[")
    store = PairStore("data/pairsmith.lance")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(made_at))
    tag = f"export-{stamp}{RUNNING}{host_name()}.{pid}"
    tag_versions(store, tag, current_versions(store))
    return partial, tag


def test_the_next_export_sweeps_a_dead_exports_partial_folder_and_tag_but_not_a_live_ones(project, capsys):
    dead, dead_tag = _leftovers(project, _dead_pid(), time.time() - 5)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        live, live_tag = _leftovers(project, sleeper.pid, time.time() + 1)
        assert main(["versions"]) == 0
        out = capsys.readouterr().out
        assert "left by a command that died" in out and "an export still running" in out
        assert main(["export", "--format", "llava", "--out", "exp"]) == 0
        assert not dead.exists() and live.exists()
        tags = set(list_tags(PairStore("data/pairsmith.lance")))
        assert dead_tag not in tags and live_tag in tags
        assert not [t for t in tags if RUNNING in t and t != live_tag]  # the export's own running tag was renamed
    finally:
        sleeper.kill()
        sleeper.wait()


def test_maintain_sweeps_dead_running_tags_and_versions_delete_deletes_a_tag(project, capsys):
    _, dead_tag = _leftovers(project, _dead_pid(), time.time() - 5)
    assert main(["maintain", "--keep-days", "0"]) == 0
    assert "left by exports that died" in capsys.readouterr().out
    assert dead_tag not in list_tags(PairStore("data/pairsmith.lance"))
    assert main(["export", "--format", "llava", "--out", "exp"]) == 0
    tag = next(iter(list_tags(PairStore("data/pairsmith.lance"))))
    assert main(["versions", "--delete", "export-nope"]) == 2
    assert "no such tag" in capsys.readouterr().err
    assert main(["versions", "--delete", tag]) == 0
    assert list_tags(PairStore("data/pairsmith.lance")) == {}


def test_kill_9_during_an_export_leaves_what_the_next_export_sweeps(project):
    big = project / "big.lance"
    _db(big, pairs=300, unique_bytes=60_000)
    cli = subprocess.Popen([PAIRSMITH, "export", "--db", str(big), "--format", "llava", "--out", "exp"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(project.glob(".exp.partial-*")) and cli.poll() is None:
        time.sleep(0.01)
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    partials = list(project.glob(".exp.partial-*"))
    if not partials:
        pytest.skip("the export finished before it could be killed")
    running = [t for t in list_tags(PairStore(str(big))) if RUNNING in t]
    assert running and not (project / "exp").exists()
    assert main(["export", "--db", str(big), "--format", "llava", "--out", "exp"]) == 0
    assert not list(project.glob(".exp.partial-*")) and (project / "exp" / "llava.json").exists()
    assert not [t for t in list_tags(PairStore(str(big))) if RUNNING in t]


# -- kind 7: a read-only database ------------------------------------------------------------------------


def _can_mount_read_only(tmp: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = tmp / "probe"
    probe.mkdir()
    done = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind -o ro {probe} {probe} && ! touch {probe}/x"],
                          capture_output=True)
    return done.returncode == 0


def test_a_database_on_a_read_only_mount_is_inspected_and_exported_but_not_written(project, tmp_path_factory):
    if not _can_mount_read_only(tmp_path_factory.mktemp("probe")):
        pytest.skip("no unshare / read-only bind mounts here")
    assert main(["export", "--format", "llava", "--out", "first"]) == 0
    tag = next(iter(list_tags(PairStore("data/pairsmith.lance"))))
    data = project / "data"
    outside = tmp_path_factory.mktemp("outside")
    commands = {"stats": ["stats"], "versions": ["versions"],
                "sheet": ["contact-sheet", "--out", f"{outside}/sheet.png", "--n", "2"],
                "now": ["export", "--format", "llava", "--out", f"{outside}/now"],
                "at": ["export", "--format", "llava", "--out", f"{outside}/at", "--at", tag],
                "maintain": ["maintain"], "delete": ["versions", "--delete", tag]}
    # one Python process runs every command (main() in-process) inside a private mount namespace
    # where the database folder is a read-only bind mount: writes fail with EROFS, for root too
    program = (f"import contextlib, io, json, os; os.chdir({str(project)!r})\n"
               "from pairsmith.flows.cli.main import main\nresults = {}\n"
               f"for name, argv in {commands!r}.items():\n"
               "    out, err = io.StringIO(), io.StringIO()\n"
               "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
               "        code = main(argv)\n"
               "    results[name] = [code, out.getvalue() + err.getvalue()]\n"
               "print('RESULTS' + json.dumps(results))\n")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", f'mount --bind -o ro {data} {data} && exec "$0" -c "$1"',
                           sys.executable, program], capture_output=True, text=True, timeout=300)
    assert "RESULTS" in done.stdout, done.stdout + done.stderr
    results = json.loads(done.stdout.split("RESULTS", 1)[1])
    assert results["stats"][0] == results["versions"][0] == 0, results
    assert results["sheet"][0] == 0 and (outside / "sheet.png").exists()
    assert results["now"][0] == 0 and "Could not tag" in results["now"][1] and "not writable" in results["now"][1]
    assert results["at"][0] == 0
    assert json.loads((outside / "at" / "llava.json").read_text()) == json.loads((project / "first" / "llava.json").read_text())
    for write in ("maintain", "delete"):
        assert results[write][0] == 2 and "not writable" in results[write][1], results[write]
    assert list(list_tags(PairStore("data/pairsmith.lance"))) == [tag]  # nothing was written


def test_benchmarks_work_only_in_folders_they_made(tmp_path, capsys):
    from pairsmith.storage.work_folder import claim_work_folder

    script = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_smoke.py"

    user = tmp_path / "mine"
    (user / "models").mkdir(parents=True)  # a name gpu_smoke deletes and rewrites
    (user / "models" / "weights.bin").write_bytes(b"precious")
    done = subprocess.run([sys.executable, str(script), "--out", str(user), "--cpu", "--only", "clip"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not empty and was not made by this command" in done.stderr, done.stderr
    assert (user / "models" / "weights.bin").read_bytes() == b"precious"
    with pytest.raises(ValueError, match="inside a LanceDB database"):
        claim_work_folder(tmp_path / "db.lance" / "work", ".m", "--workdir")
    made = claim_work_folder(tmp_path / "new", ".m", "--workdir")
    (made / "db-10.lance").mkdir()
    assert claim_work_folder(made, ".m", "--workdir") == made  # its own folder, again


def test_a_contact_sheet_killed_mid_write_leaves_a_file_the_next_sheet_sweeps(project):
    left = project / f".sheet.png.partial-{host_name()}.{_dead_pid()}.{int(time.time())}.png"
    left.write_bytes(b"\x89PNG half")
    assert main(["contact-sheet", "--out", "sheet.png", "--n", "2"]) == 0
    assert not left.exists() and (project / "sheet.png").exists()
    assert not [p for p in project.iterdir() if p.name.startswith(".")]
