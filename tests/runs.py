"""A small real run folder for the dashboard and export tests, written without Ray.

It does what `python -m nas.search` does, on a tiny budget: sample distinct architectures of
search_spaces/digits.yaml (the reference points first) through an Optuna study in the run's
journal, evaluate each with `nas.trial.evaluate` (cost, a 2-epoch proxy on a subset of digits),
save the weights and append TrialRecords, then write run.yaml and pareto.json. Besides the complete
trials there is a 'stopped' one (ended after 1 of 2 epochs), a 'failed' one (a real NaN loss from
an absurd learning rate) and an 'infeasible' one (over a MACs limit, not trained).

    >>> path = build_run(tmp / 'run')      # about 5 s on 2 CPU cores
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
from safetensors.torch import save_file

from nas.net.arch import Arch
from nas.net.cost import measure_cost
from nas.proxy import ProxyConfig
from nas.run import pareto
from nas.run.folder import STUDY_NAME, DataInfo, RunConfig, RunFolder, TrialRecord, package_versions
from nas.space import load_space
from nas.trial import TrialSettings, evaluate

SPACE_FILE = Path(__file__).resolve().parents[1] / "search_spaces" / "digits.yaml"
OBJ = ["accuracy", "macs"]
N_COMPLETE = 5  # complete trials; then one stopped, one failed, one infeasible
PROXY = ProxyConfig(
    dataset="digits",
    image_size=16,
    val_fraction=0.2,
    subset=400,
    epochs=2,
    batch_size=16,
    optimizer="adamw",
    lr=0.01,
    weight_decay=0.01,
    warmup_epochs=0,
    label_smoothing=0.0,
)


def build_run(path: Path, n_complete: int = N_COMPLETE) -> Path:
    """Write a run folder at `path` (see the module docstring) and return it."""
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(SPACE_FILE)
    data = PROXY.load_data(seed=0)
    run = RunFolder(path)
    run.path.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=run.storage(),
        directions=pareto.directions(OBJ),
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    refs = space.reference_points()
    for arch in refs.values():
        study.enqueue_trial(space.params_of(arch))
    ref_of = {a.arch_id: k for k, a in refs.items()}
    settings = TrialSettings(proxy=PROXY, num_classes=data.num_classes, measure=())
    # how each planned status comes about: a shorter proxy (stopped after 1 of 2 epochs), an absurd
    # learning rate (a real NaN loss), a MACs limit no network meets (infeasible, not trained)
    how = {
        "complete": settings,
        "stopped": replace(settings, proxy=replace(PROXY, epochs=1)),
        "failed": replace(settings, proxy=replace(PROXY, lr=1e9)),
        "infeasible": replace(settings, limits={"macs": 1}),
    }

    plan = ["complete"] * n_complete + ["stopped", "failed", "infeasible"]
    seen: set[str] = set()
    records: list[TrialRecord] = []
    for status in plan:
        while True:  # distinct architectures only
            trial = study.ask()
            arch = space.sample(trial)
            if arch.arch_id not in seen:
                break
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        seen.add(arch.arch_id)
        result = evaluate(arch, data, how[status], seed=0)
        rec = result.record
        if status == "stopped":
            assert rec.status == "complete" and rec.epochs == 1
            rec.status, rec.rates = "stopped", []
        assert rec.status == status, (status, rec.status, rec.error)
        rec.number, rec.reference = len(records), ref_of.get(arch.arch_id)
        rec.optuna_number, rec.optuna_params = trial.number, dict(trial.params)
        if status == "complete":
            rec.weights = f"weights/{arch.arch_id}.safetensors"
            run.weights_path(arch.arch_id).parent.mkdir(exist_ok=True)
            save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(run.path / rec.weights))
        run.append(rec)
        records.append(rec)
        if status == "complete":
            study.tell(trial, [float(rec.value(o)) for o in OBJ])
        else:
            study.tell(
                trial, state=optuna.trial.TrialState.PRUNED if status == "stopped" else optuna.trial.TrialState.FAIL
            )

    ref_costs = [measure_cost(a, num_classes=data.num_classes, latency=False, memory=False) for a in refs.values()]
    run.write_config(
        RunConfig(
            name=path.name,
            objectives=OBJ,
            sampler="random",
            seed=0,
            space_file="search_spaces/digits.yaml",
            space=space.to_dict(),
            proxy=PROXY,
            data=DataInfo.of(data),
            references={k: a.arch_id for k, a in refs.items()},
            hypervolume_scale=dict(
                macs=2.0 * max(c.macs for c in ref_costs), params=2.0 * max(c.params for c in ref_costs)
            ),
            versions=package_versions(),
            device="cpu",
        )
    )
    run.write_pareto()
    return path


def tiny_arch(i: int) -> Arch:
    """A distinct small architecture for each i (its stem width), for records written by hand:
    every record a run folder reads back must describe a network (results.check_record)."""
    stage = {"block": "basic", "channels": 8, "stride": 1, "bottle_ratio": 1.0, "blocks": [{"op": "conv"}]}
    return Arch.from_dict(
        {"input_size": [8, 8], "in_chans": 1, "stem": {"type": "3x3", "channels": 4 + i}, "stages": [stage, stage]}
    )


def record_of(i: int, **fields) -> TrialRecord:
    """Trial i as a search records it: a complete evaluation of `tiny_arch(i)`, `fields` changed."""
    arch = tiny_arch(i)
    return TrialRecord(
        **{
            "number": i,
            "arch_id": arch.arch_id,
            "arch": arch.to_dict(),
            "status": "complete",
            "accuracy": 0.5,
            "macs": 1000 + i,
            **fields,
        }
    )


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run folder per test session, shared by every test that asks for it (tests/conftest.py)."""
    if "run" not in _BUILT:
        _BUILT["run"] = build_run(tmp_path_factory.mktemp("results") / "digits-small")
    return _BUILT["run"]


def copy_run(src: Path, dst: Path, n_lines: int | None = None) -> Path:
    """A copy of run.yaml and the first `n_lines` trial lines of `src` (a run still in progress)."""
    import shutil

    dst.mkdir(parents=True)
    shutil.copy(src / "run.yaml", dst / "run.yaml")
    lines = (src / "trials.jsonl").read_text().splitlines(keepends=True)
    (dst / "trials.jsonl").write_text("".join(lines[:n_lines]))
    if (src / "weights").is_dir():
        shutil.copytree(src / "weights", dst / "weights")
    return dst


SYMMETRY_FILE = Path(__file__).resolve().parents[1] / "search_spaces" / "symmetry.yaml"


def synthetic_run(path: Path, n_records: int, seed: int = 0) -> Path:
    """A run folder of `n_records` evaluations written without training (a big run for the
    dashboard): architectures drawn at random from search_spaces/symmetry.yaml, about a third of
    the evaluations more seeds of architectures on or near the front, a few failed and infeasible;
    costs from a cheap formula of the architecture, accuracies a function of it plus seed noise,
    learned alpha/beta per ACmix block as a search records them. No weights, no Optuna study."""
    import random

    rng = random.Random(seed)
    space = load_space(SYMMETRY_FILE)
    run = RunFolder(path)
    run.path.mkdir(parents=True, exist_ok=True)
    archs: list = []
    seeds: dict[str, int] = {}  # evaluations so far per architecture
    lines = []
    for n in range(n_records):
        again = archs and rng.random() < 0.3
        if again:
            arch, params, macs, quality, status = rng.choice(archs[-200:])
        else:
            params = {name: rng.choice(d.values()) for name, d in space.encoding.items()}
            arch = space.point(params)
            blocks = [b for *_, b in arch.blocks()]
            macs = sum(st.channels**2 * len(st.blocks) for st in arch.stages) * 9 + 1000 * len(blocks)
            quality = 0.55 + 0.05 * math.log10(macs / 1e4) + rng.gauss(0, 0.03)
            status = rng.choices(["complete", "failed", "infeasible"], [0.95, 0.03, 0.02])[0]
            archs.append((arch, params, macs, quality, status))
        seeds[arch.arch_id] = seeds.get(arch.arch_id, 0) + 1
        blocks = [b for *_, b in arch.blocks()]
        acmix = [(si, bi) for si, st in enumerate(arch.stages) for bi, b in enumerate(st.blocks) if b.op == "acmix"]
        accuracy = round(min(0.99, quality + rng.gauss(0, 0.01)), 4) if status == "complete" else None
        lines.append(
            TrialRecord(
                number=n,
                arch_id=arch.arch_id,
                arch=arch.to_dict(),
                status=status,
                accuracy=accuracy,
                params=macs // 20,
                macs=macs,
                latency_ms=round(0.02 * len(blocks) + macs / 5e7, 3),
                acc_per_epoch=[accuracy] * 5 if accuracy is not None else [],
                epochs=5 if accuracy is not None else 0,
                seconds=round(rng.uniform(2, 9), 2),
                train_seconds=2.0,
                optuna_number=None if again else n,
                optuna_params=params,
                constraints=[1.0] if status == "infeasible" else [],
                error="RuntimeError: the loss is NaN" if status == "failed" else None,
                rates=[
                    {
                        "stage": si,
                        "index": bi,
                        "alpha": round(rng.uniform(0.2, 0.8), 3),
                        "beta": round(rng.uniform(0.2, 0.8), 3),
                    }
                    for si, bi in acmix
                ],
                seed=seeds[arch.arch_id] - 1,
                device="cpu",
            ).to_json()
        )
    (run.path / "trials.jsonl").write_text("\n".join(lines) + "\n")
    run.write_config(
        RunConfig(
            name=path.name,
            objectives=OBJ,
            sampler="evolution",
            seed=seed,
            space_file="search_spaces/symmetry.yaml",
            space=space.to_dict(),
            proxy=space.proxy,
            hypervolume_scale={"macs": 2.0e6},
            device="cpu",
        )
    )
    return path
