"""The calibration's plan and the job runner's progress: the time left weighted by each evaluation's
cost, the schedule on a number of slots, settings proposed to fit a budget, a panel timed with the
real loop, the job recorder's lines on a real evaluation's reports, and through `python -m nas.calibrate` with a redirected log: the plan printed before
anything trains, a plan over its budget refused, progress lines during evaluations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nas.calibrate.panel import Candidate
from nas.calibrate.plan import CalibrationPlan, Fit, propose, time_panel
from nas.errors import UsageError
from nas.run.folder import RunFolder
from nas.space import load_space
from nas.train.estimate import StepTimes, time_steps, work
from nas.trial import TrialSettings, evaluate
from nas.tune.jobs import Job, JobRecorder
from nas.tune.progress import ProgressLines, finish_times, makespan, time_left
from nas.tune.result import trial_result

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "search_spaces" / "digits.yaml"


# --------------------------------------------------------------------------- the time left


def test_the_time_left_is_weighted_by_cost_not_by_count():
    # one dear evaluation done in 100 s, three cheap ones left: 3 s left, not 3 x 100 s
    assert time_left([1.0, 1.0, 1.0], done=100.0, elapsed=100.0, slots=1, seconds=True) == pytest.approx(3.0)
    # the estimates were half the truth: the measured rate corrects them
    assert time_left([1.0, 1.0, 1.0], done=100.0, elapsed=200.0, slots=1, seconds=True) == pytest.approx(6.0)
    # before any work is done: the plan's rate (one estimated second per slot per second), or unknown
    assert time_left([30.0, 10.0], done=0.0, elapsed=5.0, slots=2, seconds=True) == pytest.approx(30.0)
    assert time_left([30.0, 10.0], done=0.0, elapsed=5.0, slots=2, seconds=False) is None
    # the tail: one long evaluation left on two slots runs at one slot's share of the throughput
    assert time_left([50.0], done=100.0, elapsed=50.0, slots=2, seconds=True) == pytest.approx(50.0)
    assert time_left([], done=10.0, elapsed=5.0, slots=2, seconds=True) == 0.0


def test_progress_counts_the_epochs_of_running_evaluations_and_stays_stable():
    costs = [100.0, 100.0, 1.0, 1.0, 1.0, 1.0]  # two dear (deployment), four cheap (proxies)
    p = ProgressLines(costs, slots=2, seconds=True, every=0.0)
    p.start(0, now=0.0)
    p.start(1, now=0.0)
    lefts = []
    for t in range(10, 101, 10):  # both dear ones run at the planned speed, an epoch per 10 s
        for k in (0, 1):
            line = p.epoch_line(k, f"deployment a{k} seed 0", t // 10, 10, now=float(t))
            assert line is not None and f"epoch {t // 10}/10" in line and f"(evaluation {k + 1} of 6)" in line
        lefts.append(p.left(now=float(t)))
    # at the plan's speed the time left falls by the 10 s that passed, from 92 s to 2 s
    assert lefts == pytest.approx([92.0 - 10 * i for i in range(10)])
    p.advance(0, 1.0)
    p.advance(1, 1.0)
    assert p.left(now=100.0) == pytest.approx(2.0)  # four 1-s evaluations on two slots


def test_progress_lines_come_at_most_every_so_often_per_evaluation():
    p = ProgressLines([10.0, 10.0], slots=1, seconds=True, every=30.0)
    p.start(0, now=0.0)
    assert p.epoch_line(0, "x", 1, 5, now=10.0) is None  # 10 s after its start
    assert "epoch 2/5, 0:00:31 elapsed" in p.epoch_line(0, "x", 2, 5, now=31.0)
    assert p.epoch_line(0, "x", 3, 5, now=50.0) is None
    assert p.share[0] == pytest.approx(0.6)  # counted even when no line is printed


def test_the_schedule_runs_evaluations_in_order_on_the_first_free_slot():
    assert finish_times([4.0, 1.0, 1.0, 1.0], slots=2) == [4.0, 1.0, 2.0, 3.0]
    assert makespan([4.0, 1.0, 1.0, 1.0], slots=2) == 4.0
    assert makespan([1.0] * 6, slots=4) == 2.0 and makespan([], slots=3) == 0.0


# --------------------------------------------------------------------------- estimates and proposals


def test_an_evaluation_is_estimated_from_its_steps_and_validation_batches():
    t = StepTimes(setup=2.0, step=0.1, eval_batch=0.5, batch_size=128, eval_batch_size=512)
    # 1000 images: 7 steps an epoch (the partial batch dropped); 600 validation images: 2 batches
    assert t.seconds(1000, 600, 3) == pytest.approx(2.0 + 3 * (7 * 0.1 + 2 * 0.5))
    assert t.seconds(100, 0, 1) == pytest.approx(2.0 + 0.1)  # fewer images than a batch: one step
    assert work(1000, 3, 16) == 3 * 1000 * 3 * 256 and work(None, 3, 16) == 0.0  # a training image: 3 passes
    assert work(1000, 3, 16, val_images=500) == (3 * 1000 + 500) * 3 * 256  # a validation image: 1


def _times(n: int, step: float = 0.01) -> list[StepTimes]:
    return [StepTimes(0.0, step * (1 + i), 0.0, 100, 512) for i in range(n)]


def test_a_budget_too_small_gets_a_smaller_deployment_then_a_smaller_panel():
    times, cands = _times(12), [1.0] * 12  # deployment: 0.01-0.12 s a step of 100 images
    full = propose(times, cands, 2, 0, (54000, 20), (8000, 8, 8), slots=2, budget=1e9)
    assert full == Fit(54000, 20, 12, full.wall)  # fits as asked
    whole = makespan([t.seconds(54000, 0, 20) for t in times for _ in range(2)] + [1.0] * 24, 2)
    assert full.wall == pytest.approx(whole)
    fit = propose(times, cands, 2, 0, (54000, 20), (8000, 8, 8), slots=2, budget=whole / 10)
    assert fit.wall <= whole / 10 and fit.archs == 12
    assert 8000 <= fit.deploy_subset < 54000 and 8 <= fit.deploy_epochs <= 20
    assert len(str(fit.deploy_subset).rstrip("0")) <= 2  # rounded down to two significant digits
    assert "--deploy-subset" in fit.options() and "--archs 12" in fit.options()
    floor = makespan([t.seconds(8000, 0, 8) for t in times for _ in range(2)] + [1.0] * 24, 2)
    small = propose(times, cands, 2, 0, (54000, 20), (8000, 8, 8), slots=2, budget=floor * 0.8)
    assert small is not None and (small.deploy_subset, small.deploy_epochs) == (8000, 8) and 8 <= small.archs < 12
    assert propose(times, cands, 2, 0, (54000, 20), (8000, 8, 8), slots=2, budget=1.0) is None


def _plan(budget_jobs: list[float]) -> CalibrationPlan:
    deploy, cand = Candidate(None, 4, 16), Candidate(200, 1, 16)
    jobs = [
        Job(f"a{i}", {}, s, deploy.data_key, 4, deploy.file, "deployment", seconds=c)
        for i, c in enumerate(budget_jobs)
        for s in (0, 1)
    ]
    return CalibrationPlan(jobs, deploy, 800, 100, [deploy, cand], _times(len(budget_jobs)), [0.1] * 3, 2, (400, 1, 3))


def test_a_plan_over_its_budget_is_refused_in_one_line_unless_partial():
    plan = _plan([10.0, 20.0, 30.0])
    lines = plan.lines(2, budget=45.0)
    assert lines[1].startswith("  deployment nall-e4-16px: 6 evaluations, ~20.0 s each, ~0:02:00")
    assert "total: 6 evaluations, ~0:02:00 of trial time, ~0:01:00 wall" in lines[-2]
    assert "--time-budget 0:00:45: 4 of the 6 evaluations fit" in lines[-1]
    with pytest.raises(UsageError) as refused:
        plan.check(2, budget=45.0, partial=False)
    text = str(refused.value)
    assert "\n" not in text and "over --time-budget 0:00:45" in text and "--partial" in text
    assert "--deploy-subset" in text  # settings that fit, as options
    plan.continued = True  # some evaluations recorded: the settings that fit define another calibration
    with pytest.raises(UsageError, match=r"settings that fit \(under a new --name\): --deploy-subset"):
        plan.check(2, budget=45.0, partial=False)
    plan.check(2, budget=45.0, partial=True)  # asked for: what fits trains
    plan.check(2, budget=60.0, partial=False)  # fits
    plan.check(2, budget=None, partial=False)  # no budget: printed and run


def test_the_panel_is_timed_with_the_real_loop_at_each_size():
    space = load_space(DIGITS)
    data = space.proxy.load_data(seed=0)
    panel = [
        {"arch_id": a.arch_id, "arch": a.to_dict(), "macs": i} for i, a in enumerate(space.reference_points().values())
    ]
    times = time_panel(panel, [16, 12], data, space.proxy, "cpu", threads=1)
    assert set(times) == {(p["arch_id"], s) for p in panel for s in (16, 12)}
    assert all(t.step > 0 and t.eval_batch > 0 and t.setup > 0 for t in times.values())
    one = time_steps(lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10)), data, space.proxy)
    assert one.batch_size == space.proxy.batch_size and one.step > 0


# --------------------------------------------------------------------------- through the command


@pytest.mark.slow
def test_the_command_prints_its_plan_refuses_an_over_budget_one_and_logs_epochs(tmp_path):
    args = [
        *("--space", str(DIGITS), "--dataset", "symmetry", "--archs", "3", "--subsets", "200", "--epochs", "2"),
        *("--image-sizes", "16", "--deploy-epochs", "3", "--deploy-subset", "800", "--max-concurrent", "1"),
        *("--results-dir", str(tmp_path), "--name", "cal", "--progress-every", "0"),
    ]
    cmd = [sys.executable, "-m", "nas.calibrate", *args]
    refused = subprocess.run([*cmd, "--time-budget", "0.5"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert refused.returncode == 2, refused.stderr[-2000:]
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("error: the calibration needs ~") and "over --time-budget" in error
    assert "--partial" in error and "plan (1 trial(s) at a time" in refused.stdout
    assert "  total: 12 evaluations" in refused.stdout
    assert not list((tmp_path / "cal").glob("evaluations/*.jsonl"))  # nothing trained

    log = tmp_path / "log.txt"
    with log.open("w") as out:  # a redirected log, not a terminal
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=600, cwd=ROOT)
    text = log.read_text()
    assert done.returncode == 0, text[-3000:]
    lines = text.splitlines()
    plan_at = next(i for i, ln in enumerate(lines) if ln.startswith("plan ("))
    epoch_at = next(i for i, ln in enumerate(lines) if "epoch 1/3" in ln and "deployment n800-e3-16px" in ln)
    first_done = next(i for i, ln in enumerate(lines) if ln.startswith("[  1/12]"))
    assert plan_at < epoch_at < first_done  # the plan before training, an epoch before the first end
    assert sum("epoch 2/3" in ln for ln in lines) == 6 and sum("epoch 1/2" in ln for ln in lines) == 6
    assert all(" left" in ln for ln in lines if "epoch " in ln and "elapsed" in ln)


def test_the_job_recorder_says_epochs_and_records_the_end(tmp_path, capsys):
    space = load_space(DIGITS)
    data = space.proxy.load_data(seed=0)
    arch = space.reference_points()["all_conv"]
    settings = TrialSettings(proxy=space.proxy, num_classes=data.num_classes, measure=())
    reports = []
    outcome = evaluate(arch, data, settings, seed=0, report=lambda r: reports.append(trial_result(r, final=False)))
    jobs = [
        Job(arch.arch_id, arch.to_dict(), 0, "d", space.proxy.epochs, "jobs.jsonl", "dear", seconds=9.0),
        Job(arch.arch_id, arch.to_dict(), 1, "d", space.proxy.epochs, "jobs.jsonl", "cheap", seconds=1.0),
    ]
    recorder = JobRecorder(RunFolder(tmp_path), jobs, start=0.0, slots=1, every=0.0)
    trial = SimpleNamespace(
        trial_id="t0", config={"job": jobs[0].config()}, last_result=trial_result(outcome.record, final=True)
    )
    recorder.on_trial_start(0, [], trial)
    for r in reports:
        recorder.on_trial_result(0, [], trial, r)
    recorder.on_trial_complete(0, [], trial)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == space.proxy.epochs and all("dear" in ln and "(evaluation 1 of 2)" in ln for ln in out[:-1])
    assert [f"epoch {e}/{space.proxy.epochs}" in ln for e, ln in zip(range(1, 99), out[:-1])] == [True] * len(reports)
    assert out[-1].startswith("[  1/2]") and " left" in out[-1]
    (record,) = RunFolder(tmp_path).trials("jobs.jsonl")
    assert record.accuracy == outcome.record.accuracy and record.seed == 0 and record.number == 0
    # the dear one done: its 9 estimated seconds took the time that passed; the cheap one is a ninth of it
    assert recorder.progress.left(now=recorder.progress.first_start + 18.0) == pytest.approx(2.0)
