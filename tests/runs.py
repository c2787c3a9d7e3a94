"""A small real run folder for the dashboard and export tests, written without Ray.

It does what `python -m nas.search` does, on a tiny budget: sample distinct architectures of
search_spaces/digits.yaml (the reference points first) through an Optuna study in the run's
journal, measure their cost, train each proxy for 2 epochs on a subset of digits, save the
weights and append TrialRecords, then write run.yaml and pareto.json. Besides the complete
trials there is a 'stopped' one (ended after 1 of 2 epochs), a 'failed' one (a real NaN loss from
an absurd learning rate) and an 'infeasible' one (over a MACs limit, not trained).

    >>> path = build_run(tmp / 'run')      # about 5 s on 2 CPU cores
"""

from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import optuna
import pytest
import torch
from safetensors.torch import save_file

import nas
from nas.cost import measure_cost
from nas.data import load_dataset
from nas.export import rates_of
from nas.model import create_model
from nas.results import OBJECTIVES, STUDY_NAME, RunFolder, TrialRecord
from nas.space import load_space
from nas.train import TrainConfig, train

SPACE_FILE = Path(__file__).resolve().parents[1] / 'search_spaces' / 'digits.yaml'
OBJ = ['accuracy', 'macs']
N_COMPLETE = 5  # complete trials; then one stopped, one failed, one infeasible
PROXY = dict(dataset='digits', image_size=16, val_fraction=0.2, subset=400, epochs=2, batch_size=16,
             optimizer='adamw', lr=0.01, weight_decay=0.01, warmup_epochs=0.25, label_smoothing=0.0)


def build_run(path: Path, n_complete: int = N_COMPLETE) -> Path:
    """Write a run folder at `path` (see the module docstring) and return it."""
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(SPACE_FILE)
    data = load_dataset('digits', val_fraction=PROXY['val_fraction'], subset=PROXY['subset'], seed=0)
    run = RunFolder(path)
    run.path.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=STUDY_NAME, storage=run.storage(),
                                directions=[OBJECTIVES[o][1] for o in OBJ],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    refs = space.reference_points()
    for arch in refs.values():
        study.enqueue_trial(space.params_of(arch))
    ref_of = {a.arch_id: k for k, a in refs.items()}

    # the trials: n_complete complete, then stopped, failed, infeasible
    plan = ['complete'] * n_complete + ['stopped', 'failed', 'infeasible']
    seen: set[str] = set()
    records: list[TrialRecord] = []
    ref_macs = {}
    for status in plan:
        while True:  # distinct architectures only
            trial = study.ask()
            arch = space.sample(trial)
            if arch.arch_id not in seen:
                break
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        seen.add(arch.arch_id)
        t0 = time.perf_counter()
        model = create_model(arch, num_classes=data.num_classes)
        cost = measure_cost(model, latency=False, memory=False)
        if arch.arch_id in ref_of:
            ref_macs[arch.arch_id] = (cost.macs, cost.params)
        rec = TrialRecord(number=len(records), arch_id=arch.arch_id, arch=arch.to_dict(), status=status,
                          params=cost.params, macs=cost.macs, reference=ref_of.get(arch.arch_id),
                          optuna_number=trial.number, optuna_params=dict(trial.params),
                          constraints=[1.0 if status == 'infeasible' else -1.0])
        if status != 'infeasible':
            cfg = TrainConfig.from_dict({**PROXY, 'epochs': 1 if status == 'stopped' else PROXY['epochs'],
                                         'lr': 1e9 if status == 'failed' else PROXY['lr']})
            t1 = time.perf_counter()
            for r in train(model, data, cfg):
                if r.status == 'failed':
                    rec.error = r.reason
                    break
                rec.acc_per_epoch.append(r.val_acc)
                rec.loss_per_epoch.append(r.train_loss)
                rec.epochs = r.epoch
            rec.train_seconds = time.perf_counter() - t1
            assert (rec.error is not None) == (status == 'failed'), rec.error
            if status != 'failed':
                rec.accuracy = rec.acc_per_epoch[-1]
        if status == 'complete':
            rec.rates = rates_of(model)
            rec.weights = f"weights/{arch.arch_id}.safetensors"
            run.weights_path(arch.arch_id).parent.mkdir(exist_ok=True)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run.path / rec.weights))
        rec.seconds = time.perf_counter() - t0
        rec.finished_at = datetime.now(timezone.utc).isoformat(timespec='seconds')
        run.append(rec)
        records.append(rec)
        state = {'complete': optuna.trial.TrialState.COMPLETE, 'stopped': optuna.trial.TrialState.PRUNED,
                 'failed': optuna.trial.TrialState.FAIL, 'infeasible': optuna.trial.TrialState.FAIL}[status]
        if state == optuna.trial.TrialState.COMPLETE:
            study.tell(trial, [float(rec.value(o)) for o in OBJ])
        else:
            study.tell(trial, state=state)

    macs, params = (max(v[i] for v in ref_macs.values()) for i in (0, 1))
    run.write_config(dict(
        name=path.name, objectives=OBJ, sampler='random', seed=0, space_file='search_spaces/digits.yaml',
        space=space.to_dict(), proxy=PROXY,
        data=dict(dataset='digits', num_classes=data.num_classes, in_chans=data.in_chans, image_size=data.image_size,
                  mean=list(data.mean), std=list(data.std), train_images=len(data.train_y),
                  val_images=len(data.val_y)),
        hypervolume_scale=dict(macs=2.0 * macs, params=2.0 * params),
        versions=dict(python=platform.python_version(), torch=str(torch.__version__), optuna=optuna.__version__,
                      **{'acmix-nas': getattr(nas, '__version__', '0.1.0')}),
        device='cpu'))
    run.write_pareto()
    return path


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope='session')
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run folder per test session, shared by every module that imports this fixture."""
    if 'run' not in _BUILT:
        _BUILT['run'] = build_run(tmp_path_factory.mktemp('results') / 'digits-small')
    return _BUILT['run']


def copy_run(src: Path, dst: Path, n_lines: int | None = None) -> Path:
    """A copy of run.yaml and the first `n_lines` trial lines of `src` (a run still in progress)."""
    import shutil

    dst.mkdir(parents=True)
    shutil.copy(src / 'run.yaml', dst / 'run.yaml')
    lines = (src / 'trials.jsonl').read_text().splitlines(keepends=True)
    (dst / 'trials.jsonl').write_text(''.join(lines[:n_lines]))
    if (src / 'weights').is_dir():
        shutil.copytree(src / 'weights', dst / 'weights')
    return dst

