"""Write faults in the middle of a run (nas.run.folder's writers): a full disk, a read-only file
system, an I/O error, a file where the weights folder belongs. Each raises an OSError named by the
path that failed, with a note saying that nothing recorded is lost and how to continue; an append
is all or nothing; a fault in keeping weights is said and recorded.

How each fault is made, and where: a real full disk (a 64 KiB tmpfs mounted in a mount namespace
of a child process, skipped where mounts are not allowed); a real short write (RLIMIT_FSIZE in a
child process, so the kernel writes part of the line and refuses the rest); a real read-only file
system (a read-only bind mount in a mount namespace) or, without root, permissions taken away; a
real file where weights/ belongs; EIO, which no test can make a disk give, injected in process at
os.fsync and os.ftruncate."""

from __future__ import annotations

import errno
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nas.run.folder import RunFolder
from runs import record_of

ROOT = Path(__file__).resolve().parents[1]
RESUME = "python -m nas.search --resume 'results/my run'"
KEPT = "nothing recorded is lost (every whole record stays in the run folder)"

# A child that holds the run's lock (its resume command: argv[2]), lets `setup` (argv[3], a shell
# command) make the fault, appends records until one fails, and prints what it saw as JSON.
APPEND_UNTIL_A_FAULT = """
import json, os, subprocess, sys
sys.path.insert(0, 'tests')
from nas.run.folder import RunFolder
from nas.run.lock import RunLock
from runs import record_of
run = RunFolder(sys.argv[1])
with RunLock(run.path, resume=sys.argv[2]):
    subprocess.run(sys.argv[3], shell=True, check=True)
    done = 0
    try:
        for i in range(10_000):
            run.append(record_of(i, error='x' * 2000))  # about 3 KB a line
            done += 1
        print(json.dumps({'done': done}))
    except OSError as e:
        print(json.dumps({'done': done, 'errno': e.errno, 'filename': e.filename, 'notes': e.__notes__}))
"""


def _no_mounts(stderr: str) -> bool:
    """What unshare(1) or mount(8) say where this machine allows no mount namespace or tmpfs."""
    return any(line.startswith(("unshare:", "mount:")) for line in stderr.splitlines())


def _child(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if proc.returncode != 0 and _no_mounts(proc.stderr):
        pytest.skip(f"no mount namespace here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _in_a_mount_namespace(script: str, *args: str) -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("a mount namespace needs root")
    return ["unshare", "-m", sys.executable, "-c", script, *args]


def _all_kept(run: RunFolder, done: int) -> None:
    """Every record that was appended reads back, whole, and nothing else is there."""
    assert [r.number for r in run.trials()] == list(range(done))
    assert run.trials_path.read_bytes().endswith(b"\n")
    assert len(run.trials_path.read_bytes().splitlines()) == done


CHECK_AFTER = """
import sys
sys.path.insert(0, 'tests')
from nas.run.folder import RunFolder
records = RunFolder(sys.argv[1]).trials()
raw = (RunFolder(sys.argv[1]).trials_path).read_bytes()
print('{"numbers": %s, "whole": %s}' % ([r.number for r in records], str(raw.endswith(b'\\n')).lower()))
"""


def test_a_disk_that_fills_mid_run_keeps_every_record_and_names_the_file(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    run = folder / "run"
    q = shlex.quote
    script = (  # in a mount namespace: a 64 KiB tmpfs, a writer that fills it, a reader after it
        "import subprocess, sys\n"
        f"subprocess.run('mount -t tmpfs -o size=64k tmpfs {q(str(folder))}', shell=True, check=True)\n"
        f"w = subprocess.run([sys.executable, '-c', {APPEND_UNTIL_A_FAULT!r}, {str(run)!r}, {RESUME!r}, 'true'],"
        " capture_output=True, text=True)\n"
        "print(w.stderr, file=sys.stderr)\n"
        f"r = subprocess.run([sys.executable, '-c', {CHECK_AFTER!r}, {str(run)!r}], capture_output=True, text=True)\n"
        "print(r.stderr, file=sys.stderr)\n"
        "print(w.stdout.strip()); print(r.stdout.strip())\n"
    )
    proc = subprocess.run(_in_a_mount_namespace(script), capture_output=True, text=True, timeout=120, cwd=ROOT)
    if proc.returncode != 0 and _no_mounts(proc.stderr):
        pytest.skip(f"no tmpfs here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen, after = (json.loads(line) for line in proc.stdout.split("\n") if line.strip())
    assert seen["errno"] == errno.ENOSPC and seen["filename"] == str(run / "trials.jsonl"), seen
    assert 5 < seen["done"] < 30 and seen["notes"] == [f"{KEPT}; continue with: {RESUME}"], seen
    assert after == {"numbers": list(range(seen["done"])), "whole": True}  # each append: all or nothing


FILE_SIZE_LIMIT = """
import json, resource, signal, sys
sys.path.insert(0, 'tests')
from nas.run.folder import RunFolder
from runs import record_of
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit write(2) writes what fits and then fails
run = RunFolder(sys.argv[1])
size = run.trials_path.stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
try:
    run.append(record_of(9, error='x' * 500))
except OSError as e:
    print(json.dumps({'errno': e.errno, 'filename': e.filename, 'notes': e.__notes__}))
"""


def test_a_write_cut_short_leaves_no_partial_line(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    for i in range(3):
        run.append(record_of(i))
    before = run.trials_path.read_bytes()
    seen = _child([sys.executable, "-c", FILE_SIZE_LIMIT, str(run.path)])
    assert seen["filename"] == str(run.trials_path) and seen["notes"] == [KEPT]  # no lock held: no resume command
    assert run.trials_path.read_bytes() == before  # the 100 bytes that fitted were cut off again
    _all_kept(run, 3)


READ_ONLY = """
import json, subprocess, sys
sys.path.insert(0, 'tests')
from nas.run.folder import RunFolder
from nas.run.lock import RunLock
from runs import record_of
run = RunFolder(sys.argv[1])
with RunLock(run.path, resume=sys.argv[2]):
    run.append(record_of(0))
    subprocess.run(sys.argv[3], shell=True, check=True)  # the folder goes read-only under the writer
    out = {}
    for what, write in (('append', lambda: run.append(record_of(1))),
                        ('weights', lambda: run.save_weights(record_of(1).arch_id, sys.argv[4]))):
        try:
            write()
        except OSError as e:
            out[what] = {'errno': e.errno, 'filename': e.filename, 'notes': e.__notes__}
    print(json.dumps(out))
"""


def test_a_folder_gone_read_only_under_the_writer(tmp_path):
    run = RunFolder(tmp_path / "run")
    src = tmp_path / "model.safetensors"
    src.write_bytes(b"weights")
    (run.path / "weights").mkdir(parents=True)
    if os.geteuid() == 0:  # permissions do not stop root: a read-only bind mount in a namespace of its own
        q = shlex.quote(str(run.path))
        cmd = _in_a_mount_namespace(READ_ONLY, str(run.path), RESUME, f"mount --bind -o ro {q} {q}", str(src))
        codes = {errno.EROFS}
    else:
        cmd = [sys.executable, "-c", READ_ONLY, str(run.path), RESUME, f"chmod -R a-w {run.path}", str(src)]
        codes = {errno.EACCES, errno.EPERM}
    try:
        seen = _child(cmd)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(run.path)])
    assert seen["append"]["errno"] in codes and seen["append"]["filename"] == str(run.trials_path)
    assert seen["append"]["notes"] == [f"{KEPT}; continue with: {RESUME}"]
    assert seen["weights"]["errno"] in codes
    assert seen["weights"]["filename"].startswith(str(run.path / "weights"))
    _all_kept(run, 1)
    assert not list(run.path.rglob("*.tmp"))


def test_an_io_error_at_fsync_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.append(record_of(0))
    before = run.trials_path.read_bytes()

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(OSError) as e:
        run.append(record_of(1))
    assert e.value.errno == errno.EIO and e.value.filename == str(run.trials_path) and e.value.__notes__ == [KEPT]
    monkeypatch.undo()
    assert run.trials_path.read_bytes() == before


def test_a_torn_line_that_cannot_be_cut_off_is_set_aside_before_the_next_append(tmp_path, monkeypatch):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.append(record_of(0))
    real_write = os.write

    def half(fd, data):
        return real_write(fd, data[: len(data) // 2])  # the disk took half the line

    def eio(fd, size):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", half)
    monkeypatch.setattr(os, "ftruncate", eio)
    with pytest.raises(OSError):
        run.append(record_of(1))
    monkeypatch.undo()
    assert not run.trials_path.read_bytes().endswith(b"\n")  # torn: a reader skips it without a word
    assert [r.number for r in run.trials()] == [0]
    run.append(record_of(2))  # sets the torn tail aside first: the new line starts a line of its own
    assert [r.number for r in run.trials()] == [0, 2] and len(list(run.path.glob("trials.jsonl.torn-*"))) == 1


# --------------------------------------------------------------------------- weights


def test_a_file_where_weights_belong_is_said_once_and_recorded(tmp_path, capsys):
    from test_search import _recorder, _Trial

    run, rec, recorder = _recorder(tmp_path)
    (run.path / "weights").write_text("not a folder")
    src = tmp_path / "ckpt"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"weights")

    with pytest.raises(OSError) as e:
        run.save_weights(rec(0).arch_id, src / "model.safetensors")
    assert e.value.errno == errno.ENOTDIR and e.value.filename == str(run.path / "weights")
    assert e.value.strerror == "not a folder" and e.value.__notes__ == [KEPT]
    capsys.readouterr()

    class Checkpoint:
        path = str(src)

    for i in range(2):  # two complete trials: one warning, two records that say why
        trial = _Trial(f"t{i}", rec(i))
        recorder.on_checkpoint(0, [], trial, Checkpoint())
        recorder.on_trial_complete(0, [], trial)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {run.path / 'weights'}: not a folder; trained weights")
    records = run.trials()
    assert [r.status for r in records] == ["complete", "complete"] and not recorder.halted
    assert all(
        r.weights is None and r.error == f"weights not kept: {run.path / 'weights'}: not a folder" for r in records
    )

    (run.path / "weights").unlink()  # fixed: the next trial's weights are kept, its record clean
    trial = _Trial("t2", rec(2))
    recorder.on_checkpoint(0, [], trial, Checkpoint())
    recorder.on_trial_complete(0, [], trial)
    last = run.trials()[-1]
    assert last.weights == f"weights/{rec(2).arch_id}.safetensors" and last.error is None


def test_an_io_error_on_trials_jsonl_halts_the_search_with_the_trial_unrecorded(tmp_path, monkeypatch):
    from test_search import _recorder, _Trial

    run, rec, recorder = _recorder(tmp_path)
    recorder.on_trial_complete(0, [], _Trial("t0", rec(0)))

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    recorder.on_trial_complete(0, [], _Trial("t1", rec(1)))  # no traceback out of Tune: the search halts
    monkeypatch.undo()
    assert recorder.halted and recorder.disk_error.errno == errno.EIO
    assert recorder.disk_error.filename == str(run.trials_path) and recorder.unrecorded == rec(1).arch_id
    assert [r.number for r in run.trials()] == [0]


# --------------------------------------------------------------------------- a real search, in a process of its own

EIO_ON_TRIALS = """
import errno, sys
from nas.run.folder import RunFolder
def eio(self, path, line):  # the disk's answer to the write of trials.jsonl: an I/O error
    raise OSError(errno.EIO, 'Input/output error')
RunFolder._append_line = eio
from nas.search import main
sys.exit(main(sys.argv[1:]))
"""


def _one_more(small_run: Path, dst: Path) -> RunFolder:
    """A copy of the session's run whose budget is one architecture more than it holds."""
    from nas.run.folder import aggregate
    from test_faults import resumable

    return resumable(small_run, dst, budget=len(aggregate(RunFolder(small_run).trials())) + 1)


@pytest.mark.slow
def test_a_search_with_a_file_where_weights_belong_says_so_and_records_why(small_run, tmp_path):
    run = _one_more(small_run, tmp_path / "run")
    before = len(run.trials())
    import shutil

    shutil.rmtree(run.path / "weights")
    (run.path / "weights").write_text("a file where the weights folder belongs")
    proc = subprocess.run(
        [sys.executable, "-m", "nas.search", "--resume", str(run.path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {run.path / 'weights'}: not a folder"), proc.stderr
    new = run.trials()[before:]
    assert new and all(r.weights is None for r in new if r.status == "complete")
    assert any(r.error == f"weights not kept: {run.path / 'weights'}: not a folder" for r in new)


@pytest.mark.slow
def test_an_io_error_on_trials_jsonl_mid_run_is_one_line_with_the_resume_command(small_run, tmp_path):
    run = _one_more(small_run, tmp_path / "run")
    before = run.trials_path.read_bytes()
    proc = subprocess.run(
        [sys.executable, "-c", EIO_ON_TRIALS, "--resume", str(run.path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: {run.trials_path}: Input/output error; the search stopped"), lines
    assert lines[0].endswith(f"continue with: python -m nas.search --resume {run.path}"), lines
    assert run.trials_path.read_bytes() == before  # nothing recorded is lost, nothing half written
