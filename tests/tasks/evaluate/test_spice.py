"""SPICE: scored by pycocoevalcap's jar where Java and the Stanford CoreNLP 3.6.0 jars are there,
else reported as unavailable in one line that says which jars are missing and where they were looked
for. A stand-in ``java`` (a script on the PATH) checks the command pairsmith runs and how it reads
the jar's output; the real jar runs only where the CoreNLP jars are present (skipped elsewhere)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from pairsmith.tasks.evaluate import caption_metrics as cm

GTS = {"a": ["the red cube turned blue"], "b": ["a small green sphere was added", "a sphere appeared"]}
RES = {"a": ["the red cube turned blue"], "b": ["nothing changed"]}

FAKE_JAVA = r'''#!{python}
"""Stands in for java running SpiceScorer: records its arguments, scores 1.0 for a caption equal to
its first reference and 0.25 otherwise, or fails as $FAKE_SPICE asks."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_SPICE_LOG"], "w") as log:
    json.dump({{"args": args, "cwd": os.getcwd()}}, log)
mode = os.environ.get("FAKE_SPICE", "ok")
if mode == "fail":
    sys.stderr.write("Exception in thread main java.lang.OutOfMemoryError: Java heap space\n\tat edu.anu.spice.X\n")
    sys.exit(1)
items = json.load(open(args[args.index("edu.anu.spice.SpiceScorer") + 1]))
scores = [{{"image_id": i["image_id"], "scores": {{"All": {{"f": 1.0 if i["test"] == i["refs"][0] else 0.25,
           "pr": 0.5, "re": 0.5}}}}}} for i in items if mode != "short" or i["image_id"] != "b"]
json.dump(scores, open(args[args.index("-out") + 1], "w"))
'''


@pytest.fixture
def fake_java(tmp_path, monkeypatch) -> Path:
    """A ``java`` first on the PATH and a CoreNLP folder with the two (empty) jars named by $PAIRSMITH_CORENLP_DIR."""
    bin_dir, jars = tmp_path / "bin", tmp_path / "corenlp"
    bin_dir.mkdir()
    jars.mkdir()
    java = bin_dir / "java"
    java.write_text(FAKE_JAVA.format(python=sys.executable))
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    for name in cm.CORENLP_JARS:
        (jars / name).write_bytes(b"")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(cm.CORENLP_ENV, str(jars))
    monkeypatch.setenv("FAKE_SPICE_LOG", str(tmp_path / "log.json"))
    return tmp_path


def test_without_the_corenlp_jars_spice_is_unavailable_in_one_line_naming_them(tmp_path, monkeypatch):
    monkeypatch.setattr(cm, "spice_dir", lambda: tmp_path / "spice")
    (tmp_path / "spice" / "lib").mkdir(parents=True)
    (tmp_path / "spice" / "spice-1.0.jar").write_bytes(b"")
    monkeypatch.delenv(cm.CORENLP_ENV, raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/java")
    why = cm.spice_unavailable()
    assert why is not None and "\n" not in why
    assert "stanford-corenlp-3.6.0.jar, stanford-corenlp-3.6.0-models.jar" in why and str(tmp_path / "spice" / "lib") in why
    assert "downloads them at first use" in why and cm.CORENLP_ENV in why
    scores = cm.caption_metrics({k: v[0] for k, v in RES.items()}, GTS)
    assert "spice" not in scores.values and scores.unavailable["spice"] == why
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cm.spice_unavailable() == cm.NO_JAVA


def test_with_java_and_the_jars_spice_runs_the_jar_and_reports_its_mean_f_score(fake_java, monkeypatch):
    assert cm.spice_unavailable() is None
    value, why = cm.spice_score(GTS, RES)
    assert (value, why) == (pytest.approx((1.0 + 0.25) / 2), None)
    log = json.loads((fake_java / "log.json").read_text())
    args = log["args"]
    assert args[0] == cm.SPICE_MEMORY and args[args.index("-cp") + 2] == cm.SPICE_MAIN
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in args[:args.index("-cp")]  # FST on Java 16+
    classpath = args[args.index("-cp") + 1].split(os.pathsep)
    assert classpath[0].endswith("spice-1.0.jar") and classpath[1].endswith(f"spice{os.sep}lib{os.sep}*")
    assert classpath[2:] == [str(fake_java / "corenlp" / n) for n in cm.CORENLP_JARS]
    assert args[-2:] == ["-subset", "-silent"] and "-out" in args
    assert "-cache" not in args  # nothing written into the installed package
    assert not log["cwd"].startswith(str(cm.spice_dir())) and not Path(log["cwd"]).exists()  # a temp folder, removed

    scores = cm.caption_metrics({k: v[0] for k, v in RES.items()}, GTS)
    assert scores.values["spice"] == pytest.approx(0.625) and "spice" not in scores.unavailable


@pytest.mark.parametrize("mode, says", [("fail", "exit 1): Exception in thread main java.lang.OutOfMemoryError"),
                                        ("short", "scored 1 of 2 captions (none for 'b')")])
def test_a_failing_spice_jar_is_reported_not_scored(fake_java, monkeypatch, mode, says):
    monkeypatch.setenv("FAKE_SPICE", mode)
    value, why = cm.spice_score(GTS, RES)
    assert value is None and says in why and "\n" not in why


def test_the_real_spice_jar_where_the_corenlp_jars_are_present():
    why = cm.spice_unavailable()
    if why is not None:
        pytest.skip(f"SPICE unavailable: {why}")
    value, why = cm.spice_score({"a": ["a red cube turned blue"]}, {"a": ["a red cube turned blue"]})
    assert why is None and value == pytest.approx(1.0)
