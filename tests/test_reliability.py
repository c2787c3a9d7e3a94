"""Every command that writes is guarded as the search is, and a write fault in the middle of a run
is one line: nas.calibrate's up-front checks (a --results-dir that is a file or read-only, a name
no file system takes, a Ray cluster that does not answer) refuse in one line before any folder is
made; a search on a calibration's folder says what the folder is; a disk that another process
fills while a search runs (a real, size-limited tmpfs in a mount namespace of the test's own)
ends it with one line naming the place and the command that continues, and the run continues
from there once space is freed. Real processes, real files, real training."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nas.run.folder import RunFolder
from test_faults import nas, read_only
from test_faults import one_line as faults_one_line

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "search_spaces" / "digits.yaml"


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stdout, proc.stdout[-3000:]
    return faults_one_line(proc.stderr)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the block ends: nothing listens there


CALIBRATE = ["--space", DIGITS, "--dataset", "symmetry", "--archs", "3", "--subsets", "200", "--epochs", "1"]


def test_calibrate_refuses_what_the_search_refuses_in_one_line_before_any_folder(tmp_path):
    (tmp_path / "file").write_text("")
    proc = nas("calibrate", *CALIBRATE, "--results-dir", tmp_path / "file")
    assert proc.returncode == 2
    assert one_line(proc) == f"error: --results-dir {tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a folder"

    results = tmp_path / "results"
    for verb in ("calibrate", "search"):  # one guard, one line
        proc = nas(verb, "--space", DIGITS, "--results-dir", results, "--name", "x" * 300)
        assert proc.returncode == 2
        assert one_line(proc) == "error: --name is 300 bytes long; a folder name takes at most 255 (give a shorter one)"
    assert not results.exists()

    port = _closed_port()
    proc = nas("calibrate", *CALIBRATE, "--results-dir", results, "--name", "cal", "--address", f"127.0.0.1:{port}")
    assert proc.returncode == 2 and "no Ray cluster answers there" in one_line(proc)
    assert not (results / "cal").exists()  # refused before the calibration's folder was made


@pytest.mark.slow
def test_calibrate_refuses_a_read_only_results_folder_in_one_line(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    proc = read_only(results, [sys.executable, "-m", "nas.calibrate", *CALIBRATE, "--results-dir", results])
    line = one_line(proc)
    assert proc.returncode == 2 and line.startswith(f"error: --results-dir {results}: cannot write in {results}")
    assert "Read-only file system" in line or "Permission denied" in line
    assert not any(results.iterdir())


def test_a_search_on_a_calibration_folder_says_what_it_is(tmp_path):
    cal = tmp_path / "cal"
    cal.mkdir()
    (cal / "calibration.yaml").write_text("space: digits\n")
    (cal / "proxy.yaml").write_text("proxy: {}\n")
    proc = nas("search", "--space", DIGITS, "--results-dir", tmp_path, "--name", "cal")
    line = one_line(proc)
    assert proc.returncode == 2 and "--resume" not in line, line
    assert line == (
        f"error: {cal}: holds a calibration (nas.calibrate), not a search's run; search with its proxy: "
        f"python -m nas.search --proxy {shlex.quote(str(cal / 'proxy.yaml'))}, pick another --name"
    )
    proc = nas("search", "--resume", cal)
    assert proc.returncode == 2 and "--resume" not in one_line(proc).split(";", 1)[-1]


# A size-limited tmpfs holds the results; the search runs, and once it has recorded a trial another
# process fills the disk; then space is freed and the run resumed. Inside one mount namespace, so
# nothing is mounted outside the test. argv: the mount point, the folder to copy the run out to.
FILLED_MID_RUN = """
set -u
D=$1; OUT=$2; shift 2
mount -t tmpfs -o size=30m tmpfs "$D" || { echo "mount: cannot mount a tmpfs here" >&2; exit 97; }
python -m nas.search "$@" --results-dir "$D" --name run > "$OUT.out" 2> "$OUT.err" &
P=$!
while [ ! -s "$D/run/trials.jsonl" ] && kill -0 $P 2>/dev/null; do sleep 0.2; done
cp "$D/run/trials.jsonl" "$OUT.before"
dd if=/dev/zero of="$D/fill" bs=64k 2>/dev/null
wait $P; echo $? > "$OUT.status"
cp "$D/run/trials.jsonl" "$OUT.after"
rm "$D/fill"
python -m nas.search --resume "$D/run" > "$OUT.resumed.out" 2> "$OUT.resumed.err"; echo $? > "$OUT.resumed.status"
cp -r "$D/run" "$OUT"
"""


@pytest.mark.slow
def test_a_disk_another_process_fills_mid_run_is_one_line_and_the_run_goes_on(tmp_path):
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    args = ["--space", DIGITS, "--budget", "4", "--epochs", "3", "--subset", "300", "--race", "1"]
    proc = subprocess.run(
        ["unshare", "-m", "bash", "-c", FILLED_MID_RUN, "bash", mnt, out, *map(str, args), "--max-concurrent", "1"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    if proc.returncode != 0 and proc.stderr.startswith(("unshare:", "mount:")):
        pytest.skip(f"no mount namespace or tmpfs here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = Path(f"{out}.err").read_text()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]  # not Tune's EOFError
    assert Path(f"{out}.status").read_text().strip() == "1"
    assert lines[0] == (
        f"error: {mnt / 'run'}: No space left on device; the search stopped; free some space, then continue "
        f"with: python -m nas.search --resume {mnt / 'run'}"
    )
    before, after = Path(f"{out}.before").read_bytes(), Path(f"{out}.after").read_bytes()
    assert before and after.startswith(before)  # nothing recorded is lost

    resumed = Path(f"{out}.resumed.err").read_text()
    assert Path(f"{out}.resumed.status").read_text().strip() == "0", resumed[-3000:]
    records = RunFolder(out).trials()
    assert (out / "trials.jsonl").read_bytes().startswith(after)
    assert len({r.arch_id for r in records}) == 4 and len(records) == 4  # none lost, none trained twice
