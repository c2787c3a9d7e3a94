"""The run folder, results/<run>/: what a search writes and what dashboards and exports read.

    results/<run>/
      run.yaml          resolved search space, options, seeds, package versions, device
      trials.jsonl      one JSON line per finished trial, appended atomically, never rewritten
      study.journal     the Optuna study (JournalStorage): `optuna-dashboard results/<run>/study.journal`
      pareto.json       the current Pareto front (complete, feasible trials only) and hypervolume
      weights/<arch id>.safetensors   trained proxy weights of every completed trial
      ray/              Ray Tune's own experiment folders
      dashboard.html, pareto.png      written by `python -m nas.dashboard`
      exports/<arch id>/              written by `python -m nas.export`

A trial's status is one of: complete (trained to the full proxy budget), stopped (ended early by
--early-stop; its accuracy is at a lower fidelity, so it never enters the front), failed (NaN loss,
out of memory, an exception; `error` says why), infeasible (over a hard limit such as --max-macs;
not trained). trials.jsonl is the record of what is done: resuming a run trusts it, not Ray.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

RUN_YAML = "run.yaml"
TRIALS = "trials.jsonl"
STUDY = "study.journal"
STUDY_NAME = "acmix-nas"
PARETO = "pareto.json"
WEIGHTS = "weights"

STATUSES = ("complete", "stopped", "failed", "infeasible")

# Objective name -> (record field, Optuna direction).
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "maximize"),
    "macs": ("macs", "minimize"),
    "params": ("params", "minimize"),
    "latency": ("latency_ms", "minimize"),
    "memory": ("memory_mb", "minimize"),
}


class RunError(ValueError):
    """A run folder that is missing, incomplete or does not match what is asked of it."""


@dataclass
class TrialRecord:
    """One line of trials.jsonl."""

    number: int  # position in the run, from 0
    arch_id: str
    arch: dict[str, Any]
    status: str  # see STATUSES
    accuracy: float | None = None  # final validation accuracy (fraction)
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None
    memory_mb: float | None = None
    acc_per_epoch: list[float] = field(default_factory=list)
    loss_per_epoch: list[float] = field(default_factory=list)
    epochs: int = 0  # epochs trained: the fidelity reached
    seconds: float = 0.0  # wall time of the trial (cost measurement + training + evaluation)
    train_seconds: float = 0.0  # of which training and evaluation
    error: str | None = None
    reference: str | None = None  # 'all_conv' | 'all_acmix' | 'paper' for the reference points
    optuna_number: int | None = None
    optuna_params: dict[str, Any] = field(default_factory=dict)
    constraints: list[float] = field(default_factory=list)  # <= 0 where a hard limit holds
    rates: list[dict[str, Any]] = field(default_factory=list)  # learned alpha/beta per ACmix block
    weights: str | None = None  # path of the weights file, relative to the run folder
    node: str | None = None  # the Ray node that ran the trial
    started_at: str = ""
    finished_at: str = ""

    @property
    def feasible(self) -> bool:
        return all(c <= 0 for c in self.constraints)

    def value(self, objective: str) -> float | None:
        return getattr(self, OBJECTIVES[objective][0])

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class RunFolder:
    """Reads and writes one run folder. Only the search driver writes trials.jsonl."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- files
    @property
    def trials_path(self) -> Path:
        return self.path / TRIALS

    @property
    def study_path(self) -> Path:
        return self.path / STUDY

    def weights_path(self, arch_id: str) -> Path:
        return self.path / WEIGHTS / f"{arch_id}.safetensors"

    def exists(self) -> bool:
        return (self.path / RUN_YAML).is_file()

    def require(self) -> RunFolder:
        """Fail with one line unless this is a run folder."""
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run folder")
        if not self.exists():
            raise RunError(f"{self.path}: not a run folder (no {RUN_YAML}); runs are written by python -m nas.search")
        return self

    # -- run.yaml
    def write_config(self, config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / (RUN_YAML + ".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, self.path / RUN_YAML)

    def config(self) -> dict[str, Any]:
        self.require()
        try:
            return yaml.safe_load((self.path / RUN_YAML).read_text()) or {}
        except yaml.YAMLError as e:
            raise RunError(f"{self.path / RUN_YAML}: not valid YAML ({str(e).splitlines()[0]})") from None

    # -- trials.jsonl
    def append(self, record: TrialRecord) -> None:
        """Append one line with a single write(2) on an O_APPEND file, then fsync: a reader or a
        kill -9 sees either the whole line or none of it."""
        line = (record.to_json() + "\n").encode()
        fd = os.open(self.trials_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def trials(self) -> list[TrialRecord]:
        """All records, in the order they finished. A torn last line (a crash mid-write on a
        filesystem without atomic appends) is skipped; a broken line elsewhere is an error."""
        if not self.trials_path.is_file():
            return []
        lines = self.trials_path.read_text().splitlines()
        records = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(TrialRecord.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as e:
                if i == len(lines) - 1:
                    break
                raise RunError(f"{self.trials_path}:{i + 1}: corrupt trial record ({e})") from None
        return records

    # -- the Optuna study
    def storage(self) -> optuna.storages.BaseStorage:
        """The run's Optuna storage: a journal file that optuna-dashboard opens as it is."""
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(self.study_path)))

    def load_study(self) -> optuna.Study:
        self.require()
        if not self.study_path.is_file():
            raise RunError(f"{self.path}: no Optuna study ({STUDY})")
        return optuna.load_study(study_name=STUDY_NAME, storage=self.storage())

    # -- the front
    def objectives(self) -> list[str]:
        return list(self.config().get("objectives", ["accuracy", "macs"]))

    def front(self, objectives: Sequence[str] | None = None) -> list[TrialRecord]:
        return pareto_front(self.trials(), objectives or self.objectives())

    def write_pareto(self, objectives: Sequence[str] | None = None) -> dict[str, Any]:
        objectives = list(objectives or self.objectives())
        records = self.trials()
        front = pareto_front(records, objectives)
        scales = self.config().get("hypervolume_scale", {})
        summary = {
            "objectives": objectives,
            "directions": [OBJECTIVES[o][1] for o in objectives],
            "hypervolume": hypervolume(records, objectives, scales) if scales else None,
            "hypervolume_scale": scales,
            "trials": len(records),
            "front": [{"number": r.number, "arch_id": r.arch_id, "reference": r.reference,
                       **{o: r.value(o) for o in objectives}, "weights": r.weights} for r in front],
        }
        tmp = self.path / (PARETO + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, self.path / PARETO)
        return summary


def records_of(records: Sequence[TrialRecord], arch_id: str) -> list[TrialRecord]:
    """The records of one architecture, named by its id or a unique prefix of it.

    Raises:
        RunError: no architecture, or several, match.
    """
    ids = sorted({r.arch_id for r in records if r.arch_id.startswith(arch_id)})
    if not ids:
        raise RunError(f"no trial with arch id {arch_id!r} in this run ({len(records)} trials)")
    if len(ids) > 1:
        raise RunError(f"arch id prefix {arch_id!r} is ambiguous: {', '.join(ids[:5])}")
    return [r for r in records if r.arch_id == ids[0]]


def ranked(records: Iterable[TrialRecord], objectives: Sequence[str]) -> list[TrialRecord]:
    """The records that can be on a front: complete, feasible, with every objective measured."""
    return [r for r in records if r.status == "complete" and r.feasible
            and all(r.value(o) is not None for o in objectives)]


def pareto_front(records: Iterable[TrialRecord], objectives: Sequence[str]) -> list[TrialRecord]:
    """Non-dominated complete, feasible records (Optuna's Pareto set), sorted by the first cost."""
    candidates = ranked(records, objectives)
    if not candidates:
        return []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a scratch study: no "created" line per call
    try:
        study = optuna.create_study(directions=[OBJECTIVES[o][1] for o in objectives])
    finally:
        optuna.logging.set_verbosity(verbosity)
    for i, r in enumerate(candidates):
        study.add_trial(optuna.trial.create_trial(values=[float(r.value(o)) for o in objectives],
                                                  user_attrs={"i": i}))
    front = [candidates[t.user_attrs["i"]] for t in study.best_trials]
    key = objectives[1] if len(objectives) > 1 else objectives[0]
    return sorted(front, key=lambda r: (r.value(key), r.number))


def normalised_losses(records: Sequence[TrialRecord], objectives: Sequence[str],
                      scales: dict[str, float]) -> np.ndarray:
    """Objectives as losses in [0, ~1]: 1 - accuracy, and each cost divided by its scale."""
    rows = []
    for r in records:
        row = []
        for o in objectives:
            v = float(r.value(o))
            row.append(1.0 - v if OBJECTIVES[o][1] == "maximize" else v / float(scales[o]))
        rows.append(row)
    return np.asarray(rows, dtype=float).reshape(len(rows), len(objectives))


def hypervolume(records: Iterable[TrialRecord], objectives: Sequence[str], scales: dict[str, float]) -> float:
    """Hypervolume of the front in normalised losses against the reference point (1, …, 1).

    Accuracy enters as 1 − accuracy; each cost objective is divided by its scale (run.yaml's
    hypervolume_scale: twice the most expensive reference point), so runs of one space compare.
    Points beyond the reference point on any objective add nothing.
    """
    from optuna._hypervolume import compute_hypervolume  # Optuna's exact WFG implementation

    losses = normalised_losses(ranked(records, objectives), objectives, scales)
    losses = losses[(losses < 1.0).all(axis=1)] if len(losses) else losses
    if len(losses) == 0:
        return 0.0
    return float(compute_hypervolume(losses, np.ones(len(objectives))))


def hypervolume_history(records: Sequence[TrialRecord], objectives: Sequence[str],
                        scales: dict[str, float]) -> list[float]:
    """Hypervolume after each trial, in the order trials finished."""
    return [hypervolume(records[: i + 1], objectives, scales) for i in range(len(records))]
