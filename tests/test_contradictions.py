"""Records that parse but contradict (nas.run.consistency): written by hand into a copy of a real
run, then read as every reader reads them: what counts, what is left out, and the one warning
naming file:line for each record left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nas.run.folder import RunFolder, TrialRecord
from runs import copy_run, tiny_arch
from test_faults import cli, files_of, resumable  # noqa: F401  (cli: a fixture)

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = "record skipped"


def _append(run: RunFolder, *records: TrialRecord) -> list[int]:
    """`records` appended by hand (not through RunFolder.append); returns their line numbers."""
    first = len(run.trials_path.read_text().splitlines()) + 1 if run.trials_path.exists() else 1
    with open(run.trials_path, "a") as f:
        for record in records:
            f.write(record.to_json() + "\n")
    return list(range(first, first + len(records)))


def _contradictions(run: RunFolder) -> tuple[TrialRecord, TrialRecord, dict[str, int]]:
    """Four records by hand after the run's own: the best complete record again with other MACs
    and a far better accuracy (the same seed), the same with the same costs (a second complete
    result of one evaluation), a failed record of that evaluation (a retry: it counts), and an
    architecture the space cannot produce that would top the front. Returns the best record, the
    intruder and the line of each case."""
    best = max((r for r in run.trials() if r.status == "complete"), key=lambda r: r.accuracy)
    other_costs = TrialRecord(**{**best.__dict__, "number": 90, "macs": best.macs * 3, "accuracy": 0.01})
    again = TrialRecord(**{**best.__dict__, "number": 91, "accuracy": 0.02})
    retry = TrialRecord(**{**best.__dict__, "number": 92, "status": "failed", "accuracy": None, "error": "OOM"})
    arch = tiny_arch(0)  # 8x8 input, two 8-channel stages: no point of digits.yaml
    intruder = TrialRecord(
        number=93, arch_id=arch.arch_id, arch=arch.to_dict(), status="complete", accuracy=0.999, macs=1, seed=0
    )
    lines = _append(run, other_costs, again, retry, intruder)
    return best, intruder, dict(zip(("other costs", "again", "retry", "intruder"), lines))


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_the_first_record_of_an_evaluation_wins_and_an_arch_outside_the_space_is_left_out(small_run, tmp_path, capsys):
    run = RunFolder(copy_run(small_run, tmp_path / "run"))
    own = run.trials()
    best, intruder, line = _contradictions(run)
    capsys.readouterr()

    records = run.trials()
    assert [r.number for r in records] == [r.number for r in own] + [92]  # the run's own, and the retry
    warnings = _warnings(capsys.readouterr().err)
    at = f"warning: {run.trials_path}"
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith(f"{at}:{line['other costs']}: contradicts an earlier record of architecture ")
    assert f"macs {best.macs * 3} here, {best.macs} in line {best.number + 1}" in warnings[0]
    assert warnings[1].startswith(f"{at}:{line['again']}: a second complete record of architecture {best.arch_id}")
    assert f"(line {best.number + 1} is the first)" in warnings[1]
    assert warnings[2].startswith(f"{at}:{line['intruder']}: architecture {intruder.arch_id} is not one this run's")
    assert all(SKIPPED in w for w in warnings)

    front = run.front()
    point = next(a for a in run.archs() if a.arch_id == best.arch_id)
    assert point.seeds == 1 and point.accuracy == best.accuracy and point.macs == best.macs  # not 3 seeds
    assert intruder.arch_id not in {a.arch_id for a in front}
    summary = run.write_pareto()
    assert intruder.arch_id not in json.dumps(summary)
    assert _warnings(capsys.readouterr().err) == []  # each said once per process, however often it is read


def test_other_seeds_and_other_fidelities_are_evaluations_of_their_own(tmp_path, capsys):
    # fidelity.jsonl holds one (architecture, seed) at the proxy's epochs and at the long ones
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    arch = tiny_arch(1)
    base = dict(arch_id=arch.arch_id, arch=arch.to_dict(), status="complete", accuracy=0.5, macs=100, params=10)
    _append(
        run,
        TrialRecord(number=0, seed=0, epochs=2, **base),
        TrialRecord(number=1, seed=1, epochs=2, **base),
        TrialRecord(number=2, seed=0, epochs=8, **base),
        TrialRecord(number=3, seed=0, epochs=8, **{**base, "params": None}),  # a cost not measured: no contradiction
    )
    records = run.trials()
    assert [r.number for r in records] == [0, 1, 2]  # the last: a second complete (arch, seed 0, 8 epochs)
    assert _warnings(capsys.readouterr().err)[0].startswith(f"warning: {run.trials_path}:4: a second complete")
    assert run.archs()[0].seeds == 3  # no run.yaml: no space to check against


def test_every_reader_and_a_resumed_search_use_the_records_that_count(small_run, tmp_path, cli):  # noqa: F811
    run = resumable(small_run, tmp_path / "run")  # its budget: the architectures it holds
    best, intruder, line = _contradictions(run)
    before = files_of(run.path)

    code, out, err = cli("search", "--resume", run.path)
    assert code == 0 and "reached" in out, err  # not one more architecture (the intruder) counted
    expected = [f"warning: {run.trials_path}:{n}:" for n in (line["other costs"], line["again"], line["intruder"])]
    assert [w.split(" ", 2)[:2] for w in _warnings(err)] == [e.split(" ", 2)[:2] for e in expected], err
    pareto = json.loads((run.path / "pareto.json").read_text())
    assert intruder.arch_id not in json.dumps(pareto) and intruder.arch_id not in out
    assert files_of(run.path)["trials.jsonl"] == before["trials.jsonl"]  # the file is never changed

    code, out, err = cli("dashboard", run.path, "--no-png")
    assert code == 0 and [w.split(" ", 2)[:2] for w in _warnings(err)] == [e.split(" ", 2)[:2] for e in expected]
    assert intruder.arch_id not in (run.path / "dashboard.html").read_text()
    code, out, err = cli("export", run.path, "--out", tmp_path / "export")
    assert code == 0 and len(_warnings(err)) == 3 and intruder.arch_id not in out, err
    shutil.rmtree(tmp_path / "export", ignore_errors=True)
