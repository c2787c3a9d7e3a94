"""The searcher in process, driven as Ray Tune drives it (`suggest`, `on_trial_complete`), with
stand-in results: no Ray cluster, no training."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import optuna
import pytest
from ray import cloudpickle

from nas import pareto
from nas.model import create_model
from nas.options import SAMPLERS
from nas.raytune import ArchSearcher
from nas.results import STUDY_NAME, RunFolder, TrialRecord
from nas.space import load_space
from nas.study import StudySource, make_sampler

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "search_spaces" / "digits.yaml"
OBJ = ["accuracy", "macs"]


def stand_in_result(config: dict, accuracy: float) -> dict:
    """What the trainable's last report carries: the whole record, `final`."""
    from nas.arch import Arch

    params = sum(p.numel() for p in create_model(Arch.from_dict(config["arch"])).parameters())
    record = TrialRecord(number=-1, arch_id=config["arch_id"], arch=config["arch"], status="complete",
                         accuracy=accuracy, params=params, macs=100 * params, epochs=1, seed=config["seed"])
    return {"accuracy": accuracy, "final": True, "status": "complete", "record": asdict(record)}


def new_searcher(tmp_path: Path, sampler: str, budget: int = 6) -> ArchSearcher:
    space = load_space(DIGITS)
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    source = StudySource(run.study_path.resolve(), sampler, seed=0, budget=budget)
    study = optuna.create_study(study_name=STUDY_NAME, storage=run.storage(), directions=pareto.directions(OBJ),
                                sampler=make_sampler(sampler, 0, budget))
    return ArchSearcher(study, space, OBJ, {}, [], seed=0, budget=budget, source=source)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_searcher_survives_tunes_pickling_with_every_sampler(tmp_path, sampler):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = new_searcher(tmp_path, sampler)
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    searcher.on_trial_complete("t0", stand_in_result(first, 0.5))

    blob = cloudpickle.dumps(searcher)  # what Tune does with its search algorithm (tuner.pkl)
    assert b"_thread.lock" not in blob and type(searcher.study.sampler).__name__.encode() not in blob
    restored = cloudpickle.loads(blob)

    # the restored searcher reopens the study from the run's journal and carries on: the trial in
    # flight is told to the same Optuna trial, and new proposals are unseen architectures
    assert type(restored.study.sampler) is type(searcher.study.sampler)
    restored.on_trial_complete("t1", stand_in_result(second, 0.6))
    third = restored.suggest("t2")
    assert len({first["arch_id"], second["arch_id"], third["arch_id"]}) == 3
    study = optuna.load_study(study_name=STUDY_NAME, storage=RunFolder(tmp_path / "run").storage())
    told = {t.number: t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    assert told[first["optuna_number"]].values[0] == 0.5 and told[second["optuna_number"]].values[0] == 0.6
    assert told[second["optuna_number"]].user_attrs["arch_id"] == second["arch_id"]


def test_the_live_status_line_counts_architectures_against_the_budget(tmp_path, capsys):
    from nas.raytune import Recorder

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    space = load_space(DIGITS)
    a, b = list(space.reference_points().values())[:2]
    for n, (arch, seed) in enumerate([(a, 0), (a, 1), (a, 2), (b, 0)]):  # 4 evaluations of 2 architectures
        run.append(TrialRecord(number=n, arch_id=arch.arch_id, arch=arch.to_dict(), status="complete",
                               accuracy=0.5, seed=seed))
    recorder = Recorder(run, {}, OBJ, budget=10, epochs=5)
    recorder.tty = False
    recorder.on_trial_result(0, [], type("T", (), {"trial_id": "t9", "config": {"arch_id": "c" * 12}})(),
                             {"epoch": 2, "accuracy": 0.4, "record": {"train_seconds": 4.0}})
    recorder._show(0.0)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("[   2/10] running 1: cccccccccccc epoch 2/5"), line
