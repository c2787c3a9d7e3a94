"""The run folder survives crashes: torn tails, a full disk, replaced files. No Ray, no training."""

import errno
import json
import os

import optuna
import pytest

from nas.run import folder as results
from nas.run.files import folder_written_whole, write_atomic
from nas.run.folder import STUDY_NAME, RunConfig, RunFolder, TrialRecord
from runs import record_of


def _record(i: int) -> TrialRecord:
    return record_of(i)


def _run(tmp_path, n: int = 3) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    run.write_config(RunConfig(objectives=["accuracy", "macs"]))
    for i in range(n):
        run.append(_record(i))
    return run


def test_a_line_cut_in_half_is_set_aside_and_the_next_append_starts_clean(tmp_path):
    run = _run(tmp_path)
    torn = _record(3).to_json()[:57].encode()
    with open(run.trials_path, "ab") as f:
        f.write(torn)  # a crash mid-write
    assert [r.number for r in RunFolder(run.path).trials()] == [0, 1, 2]  # a reader skips it, moves nothing
    assert not list(run.path.glob("trials.jsonl.torn-*"))

    writer = RunFolder(run.path)
    writer.append(_record(3))  # the first append of a process repairs first
    assert [r.number for r in writer.trials()] == [0, 1, 2, 3]  # nothing lost, nothing glued
    side = list(run.path.glob("trials.jsonl.torn-*"))
    assert len(side) == 1 and side[0].read_bytes() == torn  # kept, not deleted
    assert run.trials_path.read_bytes().endswith(b"\n") and run.trials_path.read_bytes().count(b"\n") == 4


def test_a_whole_last_line_without_its_line_end_is_kept(tmp_path):
    run = _run(tmp_path)
    with open(run.trials_path, "ab") as f:
        f.write(_record(3).to_json().encode())  # whole, but the crash took the newline
    writer = RunFolder(run.path)
    reports = writer.repair()
    assert len(reports) == 1 and "no line end" in reports[0] and "\n" not in reports[0]
    writer.append(_record(4))
    assert [r.number for r in writer.trials()] == [0, 1, 2, 3, 4]
    assert not list(run.path.glob("trials.jsonl.torn-*"))


def test_repair_reports_one_line_and_removes_temp_files_of_a_crash(tmp_path):
    run = _run(tmp_path)
    with open(run.trials_path, "ab") as f:
        f.write(b'{"number": 3, "arch')
    (run.path / "pareto.json.tmp").write_text("")
    (run.path / "weights").mkdir()
    (run.path / "weights" / "abc.safetensors.tmp").write_bytes(b"half")
    reports = RunFolder(run.path).repair()
    assert len(reports) == 2 and all("\n" not in r for r in reports)
    assert "set aside a torn last line" in reports[0] and "trials.jsonl.torn-" in reports[0]
    assert "2 unfinished temp file(s)" in reports[1]
    assert not list(run.path.rglob("*.tmp"))
    assert RunFolder(run.path).repair() == []  # consistent now


def test_the_optuna_journal_tail_is_repaired_the_same_way(tmp_path):
    run = _run(tmp_path, 0)
    study = optuna.create_study(study_name=STUDY_NAME, storage=run.storage(), directions=["maximize", "minimize"])
    for i in range(3):
        t = study.ask()
        t.suggest_int("x", 0, 10)
        study.tell(t, [0.5, float(i)])
    with open(run.study_path, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "a')  # torn
    reports = RunFolder(run.path).repair()
    assert len(reports) == 1 and "study.journal" in reports[0]
    study = optuna.load_study(study_name=STUDY_NAME, storage=run.storage())
    study.tell(study.ask(), [0.1, 1.0])  # appends start on a fresh line
    assert len(optuna.load_study(study_name=STUDY_NAME, storage=run.storage()).trials) == 4


def test_a_full_disk_leaves_no_partial_line(tmp_path, monkeypatch):
    run = _run(tmp_path)
    before = run.trials_path.read_bytes()

    def full(fd, data):
        os.ftruncate(fd, os.fstat(fd).st_size)  # nothing fits
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "write", full)
    with pytest.raises(OSError) as e:
        run.append(_record(3))
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()

    real_write = os.write
    monkeypatch.setattr(results.os, "write", lambda fd, data: real_write(fd, data[:20]))  # a short write
    with pytest.raises(OSError) as e:
        run.append(_record(3))
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert run.trials_path.read_bytes() == before  # the file ends where it did
    run.append(_record(3))
    assert [r.number for r in run.trials()] == [0, 1, 2, 3]


def test_replaced_files_are_whole_or_untouched(tmp_path, monkeypatch):
    run = _run(tmp_path)
    run.write_pareto()
    old = (run.path / "pareto.json").read_text()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "fsync", no_space)
    with pytest.raises(OSError):
        run.write_pareto()
    with pytest.raises(OSError):
        write_atomic(run.path / "run.yaml", "x: 1\n")
    src = tmp_path / "w.safetensors"
    src.write_bytes(b"weights")
    with pytest.raises(OSError):
        run.save_weights("abc", src)
    monkeypatch.undo()
    assert (run.path / "pareto.json").read_text() == old and json.loads(old)["trials"] == 3
    assert run.config().objectives == ["accuracy", "macs"]
    assert not list(run.path.rglob("*.tmp")) and not run.weights_path("abc").exists()  # no empty temp file left
    assert (
        run.save_weights("abc", src) == "weights/abc.safetensors" and run.weights_path("abc").read_bytes() == b"weights"
    )


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with folder_written_whole(out) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("the export failed half-way")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == ["old.txt"]
    with folder_written_whole(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == ["new.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # as mkdir makes it, not a private temp folder


def test_a_binary_run_yaml_or_trials_file_is_one_line(tmp_path, capsys):
    run = _run(tmp_path)
    (run.path / "run.yaml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(results.RunError, match="not a text file"):
        run.config()
    run.trials_path.write_bytes(b"\xff\xfe\x00\x01\n" + _record(0).to_json().encode() + b"\n")
    assert [r.number for r in run.trials()] == [0]  # the broken line is skipped, like any bad record
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trials.jsonl:1: not a JSON record" in err and "record skipped" in err
