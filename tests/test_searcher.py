"""The searcher in process, driven as Ray Tune drives it (`suggest`, `on_trial_complete`), with
stand-in results: no Ray cluster, no training."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from pathlib import Path

import optuna
import pytest
from ray import cloudpickle

from nas.net.model import create_model
from nas.run.folder import STUDY_NAME, RunConfig, RunFolder, TrialRecord
from nas.search.options import SAMPLERS, SearchOptions
from nas.search.searcher import ArchSearcher
from nas.search.state import RunState
from nas.search.study import open_study
from nas.space import load_space

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "search_spaces" / "digits.yaml"
OBJ = ["accuracy", "macs"]


def stand_in_result(config: dict, accuracy: float) -> dict:
    """What the trainable's last report carries: the whole record, `final`."""
    from nas.net.arch import Arch

    params = sum(p.numel() for p in create_model(Arch.from_dict(config["arch"])).parameters())
    record = TrialRecord(
        number=-1,
        arch_id=config["arch_id"],
        arch=config["arch"],
        status="complete",
        accuracy=accuracy,
        params=params,
        macs=100 * params,
        epochs=1,
        seed=config["seed"],
    )
    return {"accuracy": accuracy, "final": True, "status": "complete", "record": asdict(record)}


def new_searcher(tmp_path: Path, sampler: str, budget: int = 6, **kwargs) -> ArchSearcher:
    """A searcher over a new run's study, as `nas.search` sets it up (reference points queued)."""
    space = load_space(DIGITS)
    run = RunFolder(tmp_path / "run")
    run.path.mkdir(parents=True)
    opts = SearchOptions(space=DIGITS, sampler=sampler, budget=budget, objectives=OBJ).checked()
    study, _, queue, _ = open_study(run, opts, space, [])
    return ArchSearcher(study, space, RunState(OBJ), {}, seed=0, budget=budget, queue=queue, **kwargs)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_searcher_survives_tunes_pickling_with_every_sampler(tmp_path, sampler):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = new_searcher(tmp_path, sampler)
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    searcher.on_trial_complete("t0", stand_in_result(first, 0.5))

    blob = cloudpickle.dumps(searcher)  # what Tune does with its search algorithm (tuner.pkl)
    assert b"_thread.lock" not in blob and type(searcher.study.sampler).__name__.encode() not in blob
    assert len(blob) < 100_000  # the source of the study, not the study
    restored = cloudpickle.loads(blob)

    # the restored searcher reopens the study from the run's journal and carries on: the trial in
    # flight is told to the same Optuna trial, and new proposals are unseen architectures
    assert type(restored.study.sampler) is type(searcher.study.sampler)
    restored.on_trial_complete("t1", stand_in_result(second, 0.6))
    third = restored.suggest("t2")
    assert len({first["arch_id"], second["arch_id"], third["arch_id"]}) == 3
    study = optuna.load_study(study_name=STUDY_NAME, storage=RunFolder(tmp_path / "run").storage())
    assert [t.number for t in study.trials] == [t.number for t in restored.study.work.trials]
    told = {t.number: t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    assert told[first["optuna_number"]].values[0] == 0.5 and told[second["optuna_number"]].values[0] == 0.6
    assert told[second["optuna_number"]].user_attrs["arch_id"] == second["arch_id"]


def test_the_live_status_line_counts_architectures_against_the_budget(tmp_path, capsys):
    from nas.search.recorder import Recorder

    run = RunFolder(tmp_path / "run")
    run.write_config(RunConfig(objectives=OBJ))
    space = load_space(DIGITS)
    a, b = list(space.reference_points().values())[:2]
    for n, (arch, seed) in enumerate([(a, 0), (a, 1), (a, 2), (b, 0)]):  # 4 evaluations of 2 architectures
        run.append(
            TrialRecord(number=n, arch_id=arch.arch_id, arch=arch.to_dict(), status="complete", accuracy=0.5, seed=seed)
        )
    recorder = Recorder(run, RunState(OBJ, run.trials()), budget=10, epochs=5)
    progress = recorder.progress
    progress.tty = False
    progress.on_trial_result(
        0,
        [],
        type("T", (), {"trial_id": "t9", "config": {"arch_id": "c" * 12}})(),
        {"epoch": 2, "accuracy": 0.4, "record": {"train_seconds": 4.0}},
    )
    progress._show(0.0)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("[   2/10] running 1: cccccccccccc epoch 2/5"), line


def _stand_in(config: dict, space) -> dict:
    """A stand-in result: accuracy grows with the network's MACs-free size proxy (its params) plus
    a per-architecture offset, so a front forms and racing has seeds to ask for."""
    import hashlib

    result = stand_in_result(config, 0.0)
    rec = result["record"]
    offset = int(hashlib.sha256(config["arch_id"].encode()).hexdigest()[:6], 16) / 2**24
    acc = round(min(0.99, 0.3 + rec["params"] / 1e6 + 0.1 * offset + 0.002 * config["seed"]), 4)
    rec["accuracy"] = result["accuracy"] = acc
    return result


@pytest.mark.parametrize("sampler", ["evolution", "tpe"])
def test_eight_trials_in_flight_never_share_an_architecture_and_stay_diverse(tmp_path, sampler):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(ROOT / "search_spaces" / "symmetry.yaml")
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    opts = SearchOptions(
        space=ROOT / "search_spaces" / "symmetry.yaml", sampler=sampler, budget=60, objectives=OBJ, race=1
    ).checked()
    study, _, queue, _ = open_study(run, opts, space, [])
    searcher = ArchSearcher(study, space, RunState(OBJ), {}, seed=0, budget=60, queue=queue)
    in_flight: dict[str, dict] = {}
    seen: set[str] = set()
    distances = []
    n = 0
    while True:
        while len(in_flight) < 8:
            config = searcher.suggest(f"t{n}")
            if not isinstance(config, dict):
                break
            assert config["arch_id"] not in seen  # never an architecture evaluated or in flight
            seen.add(config["arch_id"])
            in_flight[f"t{n}"] = config
            n += 1
        if not in_flight:
            break
        params = [dict(c["optuna_params"]) for c in in_flight.values()]
        distances += [
            sum(a.get(k) != b.get(k) for k in space.encoding) for i, a in enumerate(params) for b in params[i + 1 :]
        ]
        trial_id = next(iter(in_flight))  # the oldest finishes first
        searcher.on_trial_complete(trial_id, _stand_in(in_flight.pop(trial_id), space))
    assert len(seen) == 60 and len(searcher.archive) == 60
    # diverse: trials in flight together differ in several decisions on average, not one
    assert statistics.mean(distances) >= 3, statistics.mean(distances)
    # no study bloat: one trial per architecture, none a failed duplicate
    trials = study.journal.get_trials(deepcopy=False)
    assert len(trials) == 60 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sum(searcher.proposals.values()) == 60 and searcher.proposals.get("fill-in", 0) <= 3


def test_a_batched_journal_writes_a_trials_end_in_one_append(tmp_path):
    from nas.search.study import journal_storage

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    storage, backend = journal_storage(run)
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, directions=["maximize", "minimize"])
    appends = []
    inner_append = backend.inner.append_logs
    backend.inner.append_logs = lambda logs: appends.append(len(logs)) or inner_append(logs)
    trial = study.ask()
    trial.suggest_int("x", 0, 9)
    with backend.batch():
        trial.set_user_attr("status", "complete")
        trial.set_constraint("macs", -1.0)
        study.tell(trial, [0.5, 3.0])
        assert study.trials[0].state == optuna.trial.TrialState.COMPLETE  # read back at once
        assert len(appends) == 2  # the ask and the suggest went straight through
    assert appends == [1, 1, 3]  # the trial's end: one append of three logs
    again = optuna.load_study(study_name=STUDY_NAME, storage=run.storage())  # as a reader sees the file
    assert again.trials[0].values == [0.5, 3.0] and again.trials[0].user_attrs == {"status": "complete"}
    with pytest.raises(RuntimeError), backend.batch():
        study.set_user_attr("kept", True)
        raise RuntimeError("what the storage applied before the error is written: the file never falls behind")
    assert optuna.load_study(study_name=STUDY_NAME, storage=run.storage()).user_attrs == {"kept": True}
    study.set_user_attr("after", 1)  # and the storage goes on reading and writing in step with the file
    assert optuna.load_study(study_name=STUDY_NAME, storage=run.storage()).user_attrs == {"kept": True, "after": 1}
    assert study.user_attrs == {"kept": True, "after": 1}


@pytest.mark.parametrize("rank_by", ["accuracy", "train_loss", "mean_acc"])
def test_the_sampler_is_told_the_proxys_rank_signal_and_the_front_stays_on_accuracy(tmp_path, rank_by):
    from nas.proxy import score

    searcher = new_searcher(tmp_path, "random", budget=4, rank_by=rank_by)
    expected = {}
    for k in range(4):
        config = searcher.suggest(f"t{k}")
        result = stand_in_result(config, accuracy=0.5 + 0.1 * k)
        accs, losses = [0.2, 0.3 + 0.05 * k, 0.5 + 0.1 * k], [2.0 - 0.2 * k, 1.5 - 0.3 * k, 1.2 - 0.35 * k]
        result["record"].update(acc_per_epoch=accs, loss_per_epoch=losses, epochs=3)
        expected[config["arch_id"]] = score(accs, losses, rank_by)
        searcher.on_trial_complete(f"t{k}", result)
    told = {t.user_attrs["arch_id"]: t.values[0] for t in searcher.study.journal.get_trials(deepcopy=False)}
    assert told == pytest.approx(expected)  # the signal of each, not its accuracy unless the signal is accuracy
    assert (told == pytest.approx({a.arch_id: a.accuracy for a in searcher.archive.architectures})) == (
        rank_by == "accuracy"
    )
    assert {a.accuracy for a in searcher.archive.front()} <= {0.5, 0.6, 0.7, 0.8}  # the front reports accuracy


# --------------------------------------------------------------------------- the search's logic in process
# The slow tests of tests/test_search.py run these through `python -m nas.search` on Ray; here the
# searcher (and, where it counts, the Recorder) is driven as Tune drives it, with costs measured on
# the real networks and a stand-in accuracy, so the sampler, racing and limit logic runs in seconds.


_COSTS: dict[str, tuple[int, int]] = {}  # arch id -> (params, MACs): measured once per test session


def measured_cost(arch: dict, arch_id: str) -> tuple[int, int]:
    """The network's parameters and MACs per image, measured (`nas.net.cost.measure_cost`) once."""
    from nas.net.arch import Arch
    from nas.net.cost import measure_cost

    if arch_id not in _COSTS:
        cost = measure_cost(Arch.from_dict(arch), num_classes=10, latency=False, memory=False)
        _COSTS[arch_id] = (cost.params, cost.macs)
    return _COSTS[arch_id]


def measured_result(config: dict, limits: dict | None = None, accuracy=None) -> dict:
    """The trainable's last report for `config`: params and MACs measured on the real network, the
    constraint values as `nas.trial.evaluate` computes them (over a limit: 'infeasible', untrained),
    and an accuracy that grows with the network's size, differs per architecture and per seed."""
    import hashlib

    from nas.trial import constraint_values

    params, macs = measured_cost(config["arch"], config["arch_id"])
    record = TrialRecord(
        number=-1,
        arch_id=config["arch_id"],
        arch=config["arch"],
        status="complete",
        params=params,
        macs=macs,
        seed=config["seed"],
    )
    record.constraints = constraint_values(record, limits or {})
    if any(c > 0 for c in record.constraints):
        record.status = "infeasible"
    else:
        offset = int(hashlib.sha256(config["arch_id"].encode()).hexdigest()[:6], 16) / 2**24
        record.accuracy = (
            accuracy
            if accuracy is not None
            else round(min(0.99, 0.3 + record.params / 2e5 + 0.1 * offset + 0.004 * (config["seed"] % 3)), 4)
        )
        record.epochs, record.acc_per_epoch = 1, [record.accuracy]
    return {"accuracy": record.accuracy or 0.0, "final": True, "status": record.status, "record": asdict(record)}


def drive(searcher: ArchSearcher, result_of, recorder=None, at_once: int = 3, until=None) -> list[dict]:
    """Run the searcher as Tune does: up to `at_once` trials in flight, the oldest finishing first,
    each told to the searcher (its result flattened, as Tune hands it) and then to `recorder`'s
    callbacks. Stops when the searcher is finished or `until(searcher)` is true; returns every
    config it suggested, in order."""
    from types import SimpleNamespace

    from ray.tune.utils import flatten_dict

    in_flight: dict[str, dict] = {}
    suggested: list[dict] = []
    while until is None or not until(searcher):
        while len(in_flight) < at_once:
            config = searcher.suggest(f"t{len(suggested)}")
            if not isinstance(config, dict):
                break
            in_flight[f"t{len(suggested)}"] = config
            suggested.append(config)
        if not in_flight:
            break
        trial_id = next(iter(in_flight))
        config = in_flight.pop(trial_id)
        result = result_of(config)
        searcher.on_trial_complete(trial_id, flatten_dict(result))
        if recorder is not None:
            trial = SimpleNamespace(trial_id=trial_id, config=config, last_result=result)
            recorder.on_trial_complete(0, [], trial)
    return suggested


def latest_told(study) -> dict[str, optuna.trial.FrozenTrial]:
    """Each architecture's last COMPLETE trial in the study: Optuna's latest word on it."""
    return {
        t.user_attrs["arch_id"]: t
        for t in study.journal.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    }


def test_racing_in_process_gives_front_points_three_seeds_and_tells_optuna_their_means(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = new_searcher(tmp_path, "evolution", budget=8, race=3, race_share=0.3)
    searcher.seed = 5
    suggested = drive(searcher, measured_result)

    archs = {c["arch_id"] for c in suggested}
    assert len(archs) == 8 and len(suggested) > 8  # the budget counts architectures; re-evaluations on top
    assert searcher.reevaluations == len(suggested) - 8
    for arch_id in archs:  # evaluation k of an architecture has seed 5 + k: no seed twice
        seeds = [c["seed"] for c in suggested if c["arch_id"] == arch_id]
        assert seeds == list(range(5, 5 + len(seeds)))
    front = searcher.archive.front()
    assert front and all(a.seeds >= 3 for a in front)
    told = latest_told(searcher.study)
    for a in front:  # Optuna was told each front point's mean over its seeds, with their number
        assert told[a.arch_id].values[0] == pytest.approx(statistics.mean(a.accuracies))
        assert told[a.arch_id].user_attrs["seeds"] == a.seeds
    # nothing left open: every trial the searcher started is finished in the journal
    assert not searcher.study.journal.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


def test_hard_limits_in_process_are_constraints_and_keep_the_front_feasible(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    limit = 420_000.0  # between the cheapest and the dearest architectures of the digits space
    limits = {"macs": limit}
    searcher = new_searcher(tmp_path, "evolution", budget=10, race=1)
    searcher.limits = limits
    drive(searcher, lambda c: measured_result(c, limits))

    records = searcher.archive.records
    over = [r for r in records if r.macs > limit]
    assert over and all(r.status == "infeasible" and r.accuracy is None for r in over)
    assert all(r.constraints == [r.macs - limit] for r in records)
    assert all(a.macs <= limit for a in searcher.archive.front())
    journal = searcher.study.journal
    for t in journal.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        assert list(t.constraints.values()) == t.user_attrs["constraints"] and len(t.constraints) == 1
    assert all(t.user_attrs["constraints"][0] <= 0 for t in journal.best_trials)
    assert {t.user_attrs["arch_id"] for t in journal.best_trials} == {a.arch_id for a in searcher.archive.front()}


def test_a_small_space_is_exhausted_in_process_without_a_duplicate(tmp_path):
    import yaml

    from nas.space import SearchSpace

    raw = yaml.safe_load(DIGITS.read_text())  # one decision with two values: two architectures
    raw["blocks"].update(op="conv", heads=2, k_att=3)
    raw["stages"][1].update(depth=1, channels=32)
    raw["stages"][0]["blocks"] = {"op": {"choices": ["conv", "acmix"]}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    space = load_space(path)
    assert isinstance(space, SearchSpace) and space.size == 2
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    opts = SearchOptions(space=path, sampler="random", budget=6, objectives=OBJ, race=1).checked()
    study, _, queue, _ = open_study(run, opts, space, [])
    searcher = ArchSearcher(study, space, RunState(OBJ), {}, seed=0, budget=6, queue=queue)

    suggested = drive(searcher, measured_result)
    assert len(suggested) == 2 and len({c["arch_id"] for c in suggested}) == 2
    assert searcher.exhausted and searcher.suggest("t-last") is ArchSearcher.FINISHED
    states = [t.state for t in study.journal.get_trials(deepcopy=False)]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2  # the sampler's repeat was failed, not trained
    assert all("duplicate_of" in t.user_attrs for t in study.journal.get_trials(deepcopy=False)[2:])


def test_after_the_deadline_nothing_starts_and_what_runs_is_told(tmp_path):
    import time

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = new_searcher(tmp_path, "evolution", budget=100, race=1)
    first = [searcher.suggest(f"t{k}") for k in range(3)]
    searcher.deadline = time.monotonic() - 1  # --time-budget ran out while three trials run
    assert searcher.suggest("t3") is None  # not finished: what runs is still to be told
    for k, config in enumerate(first):
        searcher.on_trial_complete(f"t{k}", measured_result(config))
        assert searcher.suggest(f"u{k}") is (ArchSearcher.FINISHED if k == 2 else None)
    started = [t for t in searcher.study.journal.get_trials(deepcopy=False) if t.user_attrs.get("arch_id")]
    assert [t.user_attrs["arch_id"] for t in started] == [c["arch_id"] for c in first]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in started)


@pytest.mark.parametrize(
    "sampler", [pytest.param(s, marks=pytest.mark.slow) if s == "gp" else s for s in SAMPLERS]
)  # GP's own fitting takes ~40 s of the 14 trials: the slow tier
def test_every_named_sampler_in_process_runs_past_its_random_start_up(tmp_path, sampler):
    # 14 architectures: past GP's 10 random start-up trials, and several NSGA generations (population 4)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = new_searcher(tmp_path, sampler, budget=14, race=1)
    suggested = drive(searcher, measured_result, at_once=2)
    assert len(suggested) == 14 and len({c["arch_id"] for c in suggested}) == 14
    space = load_space(DIGITS)
    assert [c["arch_id"] for c in suggested[:3]] == [a.arch_id for a in space.reference_points().values()]
    assert searcher.proposals["queued"] == 3 and sum(searcher.proposals.values()) == 14
    told = searcher.study.journal.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(t.user_attrs["arch_id"] for t in told) == sorted(c["arch_id"] for c in suggested)


def test_failures_in_process_are_recorded_told_fail_and_stop_the_search_past_max_failures(tmp_path):
    from nas.search.recorder import FailureStopper, Recorder

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = new_searcher(tmp_path, "random", budget=8, race=1)
    run = RunFolder(tmp_path / "run")
    run.write_config(RunConfig(objectives=OBJ))
    recorder = Recorder(run, searcher.state, budget=8, quiet=True)
    stopper = FailureStopper(recorder, max_failures=1)

    def failing(config: dict) -> dict:
        result = measured_result(config)
        result["record"].update(status="failed", accuracy=None, error="non-finite training loss at epoch 1")
        result.update(status="failed", accuracy=0.0)
        return result

    drive(searcher, failing, recorder=recorder, at_once=1, until=lambda _: stopper.stop_all())
    records = run.trials()
    assert len(records) == 2 and recorder.failures == 2  # stopped after the second failure, not at the budget
    assert all(r.status == "failed" and "non-finite training loss" in r.error for r in records)
    trials = searcher.study.journal.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2
    assert all(t.user_attrs["status"] == "failed" for t in trials)
    assert searcher.archive.front() == []


def test_a_finished_trial_is_parsed_numbered_and_archived_once_for_the_searcher_and_the_recorder(tmp_path, monkeypatch):
    import nas.search.state
    from nas.search.recorder import Recorder

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parses = []
    parse = nas.search.state.record_from_result
    monkeypatch.setattr(nas.search.state, "record_from_result", lambda *a, **k: parses.append(a[0]) or parse(*a, **k))
    searcher = new_searcher(tmp_path, "evolution", budget=5, race=1)
    run = RunFolder(tmp_path / "run")
    recorder = Recorder(run, searcher.state, budget=5, quiet=True)
    suggested = drive(searcher, measured_result, recorder=recorder)

    assert len(parses) == len(suggested) == 5  # once per trial, not once by each
    assert recorder.archive is searcher.archive and len(searcher.archive.records) == 5  # one archive, each added once
    recorded = run.trials()
    assert [r.number for r in recorded] == [r.number for r in searcher.archive.records] == [0, 1, 2, 3, 4]
    for mine, theirs in zip(recorded, searcher.archive.records):  # the record that was written is the archive's
        assert mine.arch_id == theirs.arch_id and mine.accuracy == theirs.accuracy
        assert mine.finished_at == theirs.finished_at and mine.optuna_number == theirs.optuna_number is not None
    assert not searcher.state._taken  # each taken by the other: nothing kept


def test_the_run_state_hands_the_first_parse_to_the_second_whether_flattened_or_not():
    from ray.tune.utils import flatten_dict

    from nas.search.state import RunState

    config = {"arch_id": "a" * 12, "arch": {"in_chans": 1}, "seed": 0, "optuna_number": 3, "optuna_params": {"x": 1}}
    rec = TrialRecord(number=-1, arch_id="a" * 12, arch={"in_chans": 1}, status="complete", accuracy=0.5, epochs=2)
    result = {"accuracy": 0.5, "final": True, "record": asdict(rec)}
    state = RunState(OBJ)
    first, moved = state.finished("t0", flatten_dict(result), config)  # the searcher's: Tune flattens it
    second, moved_too = state.finished("t0", {}, config)  # the recorder's: given nothing, it still gets the parse
    assert first is second and moved == moved_too and state.archive.records == [first] and first.number == 0
    assert first.optuna_number == 3 and first.optuna_params == {"x": 1} and first.accuracy == 0.5
    third, _ = state.finished("t0", result, config)  # asked a third time (a new trial of that id): a new evaluation
    third.finished_at = first.finished_at
    assert third is not first and third.number == 1 and asdict(third) == {**asdict(first), "number": 1}
    stopped, _ = state.finished("t1", {**result, "final": False}, config)
    assert stopped.status == "stopped" and stopped.number == 2


def test_a_trial_that_raised_is_recorded_with_what_the_recorder_knows_of_it():
    from nas.search.state import RunState

    config = {"arch_id": "a" * 12, "arch": {"in_chans": 1}, "seed": 0, "optuna_number": 3}
    state = RunState(OBJ)
    bare, _ = state.finished("t0", {}, config, error=True)  # the searcher's: Tune hands it no result
    assert bare.status == "failed" and bare.error == "the trial ended without a result" and bare.number == 0
    last = TrialRecord(number=-1, arch_id="a" * 12, arch={"in_chans": 1}, status="complete", accuracy=0.4, epochs=1)
    recorded, _ = state.finished("t0", {"record": asdict(last)}, config, error=True, message="RuntimeError: boom")
    assert recorded is bare and recorded.number == 0 and state.archive.records == [recorded]
    assert recorded.error == "RuntimeError: boom" and recorded.epochs == 1 and recorded.accuracy is None


def test_optuna_is_told_an_architecture_alike_by_the_searcher_and_a_rebuilt_journal():
    from optuna.trial import TrialState

    from nas.run.archive import ArchResult
    from nas.search.study import optuna_result

    base = dict(number=0, arch_id="b" * 12, arch={}, macs=500, params=10, epochs=2, constraints=[100.0])
    seeds = [TrialRecord(**base, status="complete", accuracy=acc, seed=s) for s, acc in enumerate([0.5, 0.7])]
    a = ArchResult(list(seeds))
    told = optuna_result(a, ["accuracy", "macs"], {"macs": 400}, seeds=a.seeds)
    assert told.state == TrialState.COMPLETE and told.values == pytest.approx([0.6, 500.0])  # the mean
    assert told.constraints == {"macs": 100.0}
    assert list(told.attrs.items()) == [("status", "complete"), ("epochs", 2), ("seeds", 2), ("constraints", [100.0])]
    ranked = optuna_result(a, ["accuracy", "macs"], {}, score=-1.25)  # the proxy's rank signal for accuracy
    assert ranked.values == [-1.25, 500.0] and ranked.constraints == {} and "seeds" not in ranked.attrs
    # a single evaluation, as a rebuilt journal tells it: the same values for the same result
    one = optuna_result(seeds[0], ["accuracy", "macs"], {"macs": 400})
    assert one.values == [0.5, 500.0] and one.constraints == told.constraints
    for status, state in (
        ("stopped", TrialState.PRUNED),
        ("failed", TrialState.FAIL),
        ("infeasible", TrialState.COMPLETE),
    ):
        r = TrialRecord(**base, status=status, accuracy=None)
        told = optuna_result(r, ["accuracy", "macs"], {"macs": 400})
        assert told.state == state and told.attrs["status"] == status
        assert (told.values, told.constraints) == (
            ([0.0, 500.0], {"macs": 100.0}) if state == TrialState.COMPLETE else (None, {})
        )
