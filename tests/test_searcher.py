"""The searcher in process, driven as Ray Tune drives it (`suggest`, `on_trial_complete`), with
stand-in results: no Ray cluster, no training."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from pathlib import Path

import optuna
import pytest
from ray import cloudpickle

from nas.model import create_model
from nas.options import SAMPLERS, SearchOptions
from nas.raytune import ArchSearcher
from nas.results import STUDY_NAME, RunConfig, RunFolder, TrialRecord
from nas.space import load_space
from nas.study import open_study

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "search_spaces" / "digits.yaml"
OBJ = ["accuracy", "macs"]


def stand_in_result(config: dict, accuracy: float) -> dict:
    """What the trainable's last report carries: the whole record, `final`."""
    from nas.arch import Arch

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
    return ArchSearcher(study, space, OBJ, {}, [], seed=0, budget=budget, queue=queue, **kwargs)


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
    from nas.raytune import Recorder

    run = RunFolder(tmp_path / "run")
    run.write_config(RunConfig(objectives=OBJ))
    space = load_space(DIGITS)
    a, b = list(space.reference_points().values())[:2]
    for n, (arch, seed) in enumerate([(a, 0), (a, 1), (a, 2), (b, 0)]):  # 4 evaluations of 2 architectures
        run.append(
            TrialRecord(number=n, arch_id=arch.arch_id, arch=arch.to_dict(), status="complete", accuracy=0.5, seed=seed)
        )
    recorder = Recorder(run, {}, OBJ, budget=10, epochs=5)
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
    searcher = ArchSearcher(study, space, OBJ, {}, [], seed=0, budget=60, queue=queue)
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
    from nas.study import journal_storage

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
    from nas.signals import score

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
