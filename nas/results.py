"""The run folder, results/<run>/: what a search writes and what dashboards and exports read.

    results/<run>/
      run.yaml          resolved search space, options, seeds, package versions, device
      trials.jsonl      one JSON line per finished trial, appended atomically, never rewritten
      study.journal     the Optuna study (JournalStorage): `optuna-dashboard results/<run>/study.journal`
      pareto.json       the Pareto front of the architectures' mean accuracy over seeds (complete,
                        feasible only), with standard errors, seeds and noise flags; hypervolume
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml

from nas import pareto
from nas.pareto import OBJECTIVES
from nas.train import ProxyConfig

if TYPE_CHECKING:
    from nas.data import Dataset

RUN_YAML = "run.yaml"
TRIALS = "trials.jsonl"
STUDY = "study.journal"
STUDY_NAME = "acmix-nas"
PARETO = "pareto.json"
WEIGHTS = "weights"

STATUSES = ("complete", "stopped", "failed", "infeasible")

class RunError(ValueError):
    """A run folder that is missing, incomplete or does not match what is asked of it."""


@dataclass
class TrialRecord:
    """One line of trials.jsonl."""

    number: int  # position in the run, from 0
    arch_id: str
    arch: dict[str, Any]
    status: str  # see STATUSES ('running' only in progress reports, never in trials.jsonl)
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
    seed: int | None = None  # the proxy's seed (initial weights, batch order, augmentation)
    device: str | None = None  # where it was costed and trained ('cpu', 'cuda:0')
    gpu_ids: list[str] = field(default_factory=list)  # the GPUs Ray gave the trial (empty on CPU)
    setup_seconds: float = 0.0  # in the trainable before evaluation: the data fetched and placed
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


@dataclass
class DataInfo:
    """run.yaml `data:`: what the proxy trained on (a deployed model needs the same mean/std)."""

    dataset: str = "digits"
    num_classes: int = 10
    in_chans: int = 1
    image_size: int | None = None
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    train_images: int = 0
    val_images: int = 0

    @classmethod
    def of(cls, data: Dataset) -> DataInfo:
        return cls(dataset=data.name, num_classes=data.num_classes, in_chans=data.in_chans,
                   image_size=data.image_size, mean=list(data.mean), std=list(data.std),
                   train_images=len(data.train_y), val_images=len(data.val_y))


@dataclass
class RunConfig:
    """run.yaml: everything that defines a run, read and written only through this class.

    `options` holds the search's options as given (nas.search.SearchOptions, paths as strings);
    `ray` the cluster the run last ran on. Keys this version does not know are kept as they are.
    """

    name: str = ""
    created: str = ""
    command: str = ""
    objectives: list[str] = field(default_factory=lambda: ["accuracy", "macs"])
    sampler: str = "tpe"
    seed: int = 0
    limits: dict[str, float] = field(default_factory=dict)  # objective -> hard upper limit
    space_file: str = ""
    space_fingerprint: str = ""
    space_size: int | str = 0  # 'infinite' for a space with a continuous decision
    space: dict[str, Any] = field(default_factory=dict)  # the resolved space (SearchSpace.to_dict)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    data: DataInfo = field(default_factory=DataInfo)
    references: dict[str, str] = field(default_factory=dict)  # reference name -> arch id
    hypervolume_scale: dict[str, float] = field(default_factory=dict)  # cost objective -> scale
    versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
    ray: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, written back as they were

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)} - {"extra"}
        kw = {k: v for k, v in d.items() if k in names}
        kw["proxy"] = ProxyConfig(**{k: v for k, v in (d.get("proxy") or {}).items()
                                     if k in ProxyConfig.__dataclass_fields__})
        kw["data"] = DataInfo(**{k: v for k, v in (d.get("data") or {}).items() if k in DataInfo.__dataclass_fields__})
        for k in ("limits", "references", "hypervolume_scale", "versions", "options", "ray"):
            kw[k] = dict(d.get(k) or {})
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["proxy"], out["data"] = self.proxy.to_dict(), asdict(self.data)
        return {**out, **self.extra}


@dataclass
class ArchResult:
    """One architecture over all its evaluations (one per seed): what the front, the knee,
    exports, pareto.json and the hypervolume use. Accuracy is the mean over its complete
    evaluations, with its standard error (None below 2 seeds); costs are the first evaluation's
    (params and MACs are exact; latency and memory are measured once). It has `number`,
    `status`, `feasible` and `value(objective)`, so every nas.pareto function takes it."""

    records: list[TrialRecord]  # its evaluations, in the order they finished

    @property
    def complete(self) -> list[TrialRecord]:
        return [r for r in self.records if r.status == "complete" and r.accuracy is not None]

    @property
    def record(self) -> TrialRecord:
        """The evaluation that stands for it: its first complete one (its weights), else its first."""
        return (self.complete or self.records)[0]

    @property
    def number(self) -> int:
        return self.record.number

    @property
    def arch_id(self) -> str:
        return self.records[0].arch_id

    @property
    def arch(self) -> dict[str, Any]:
        return self.records[0].arch

    @property
    def reference(self) -> str | None:
        return self.records[0].reference

    @property
    def status(self) -> str:
        return "complete" if self.complete else self.records[-1].status

    @property
    def feasible(self) -> bool:
        return self.records[0].feasible

    @property
    def seeds(self) -> int:
        """Complete evaluations (distinct seeds)."""
        return len(self.complete)

    @property
    def accuracies(self) -> list[float]:
        return [float(r.accuracy) for r in self.complete]

    @property
    def accuracy(self) -> float | None:
        """The mean over complete evaluations; for one never complete, its last accuracy (a stopped
        trial's, at a lower fidelity) or None."""
        accs = self.accuracies
        return sum(accs) / len(accs) if accs else self.records[-1].accuracy

    @property
    def accuracy_std(self) -> float | None:
        """Sample standard deviation over seeds (None below 2 seeds)."""
        accs = self.accuracies
        if len(accs) < 2:
            return None
        mean = sum(accs) / len(accs)
        return (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5

    @property
    def accuracy_se(self) -> float | None:
        """Standard error of the mean accuracy (None below 2 seeds)."""
        std = self.accuracy_std
        return None if std is None else std / len(self.accuracies) ** 0.5

    # the exact costs and what the weights file was trained with: its standing evaluation's
    params = property(lambda self: self.record.params)
    macs = property(lambda self: self.record.macs)
    latency_ms = property(lambda self: self.record.latency_ms)
    memory_mb = property(lambda self: self.record.memory_mb)
    epochs = property(lambda self: self.record.epochs)
    weights = property(lambda self: self.record.weights)
    error = property(lambda self: self.records[-1].error)
    seconds = property(lambda self: sum(r.seconds for r in self.records))  # all its evaluations

    def value(self, objective: str) -> float | None:
        if objective == "accuracy":
            return self.accuracy
        return (self.complete or self.records)[0].value(objective)

    def summary(self) -> dict[str, Any]:
        """Its pareto.json entry."""
        return {"number": self.number, "arch_id": self.arch_id, "reference": self.reference,
                "accuracy": self.accuracy, "accuracy_se": self.accuracy_se, "accuracy_std": self.accuracy_std,
                "seeds": self.seeds, "accuracies": self.accuracies,
                **{o: self.value(o) for o in OBJECTIVES if o != "accuracy"}, "weights": self.record.weights}


def aggregate(records: Sequence[TrialRecord]) -> list[ArchResult]:
    """One ArchResult per architecture, in the order each was first evaluated."""
    by_id: dict[str, list[TrialRecord]] = {}
    for r in records:
        by_id.setdefault(r.arch_id, []).append(r)
    return [ArchResult(rs) for rs in by_id.values()]


def seed_std(archs: Sequence[ArchResult]) -> float | None:
    """The proxy's seed-to-seed standard deviation of accuracy, pooled over every architecture
    with at least 2 seeds (the root of the mean variance); None when there is none."""
    variances = [a.accuracy_std ** 2 for a in archs if a.accuracy_std is not None]
    return (sum(variances) / len(variances)) ** 0.5 if variances else None


def package_versions() -> dict[str, str]:
    """Python's and the installed versions of the packages a run depends on (run.yaml `versions`)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("acmix-nas", "torch", "timm", "optuna", "ray", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


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
    def write_config(self, config: RunConfig) -> None:
        """Replace run.yaml atomically (a temp file, then a rename)."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / (RUN_YAML + ".tmp")
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        os.replace(tmp, self.path / RUN_YAML)

    def config(self) -> RunConfig:
        self.require()
        try:
            raw = yaml.safe_load((self.path / RUN_YAML).read_text()) or {}
        except yaml.YAMLError as e:
            raise RunError(f"{self.path / RUN_YAML}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise RunError(f"{self.path / RUN_YAML}: expected a mapping, got {type(raw).__name__}")
        try:
            return RunConfig.from_dict(raw)
        except TypeError as e:
            raise RunError(f"{self.path / RUN_YAML}: unexpected contents ({e})") from None

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
        return list(self.config().objectives)

    def archs(self) -> list[ArchResult]:
        """The run's architectures, each aggregated over its evaluations (seeds)."""
        return aggregate(self.trials())

    def front(self, objectives: Sequence[str] | None = None) -> list[ArchResult]:
        """The Pareto front of the architectures' means over seeds, by increasing first cost."""
        return pareto.front(self.archs(), objectives or self.objectives())

    def write_pareto(self, objectives: Sequence[str] | None = None) -> dict[str, Any]:
        """pareto.json: the front of the complete, feasible trials and its hypervolume."""
        config = self.config()
        objectives = list(objectives or config.objectives)
        records = self.trials()
        archs = aggregate(records)
        front = pareto.front(archs, objectives)
        sigma = seed_std(archs)
        unseparable = pareto.unseparable(archs, objectives, sigma)
        ids = {a.number: a.arch_id for a in archs}
        scales = config.hypervolume_scale
        summary = {
            "objectives": objectives,
            "directions": pareto.directions(objectives),
            "hypervolume": pareto.hypervolume(archs, objectives, scales) if scales else None,
            "hypervolume_scale": scales,
            "trials": len(records),
            "architectures": len(archs),
            "seed_std": sigma,
            "front": [{**a.summary(), "separable": not unseparable.get(a.number),
                       "unseparable_from": [ids[n] for n in unseparable.get(a.number, [])]} for a in front],
        }
        tmp = self.path / (PARETO + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, self.path / PARETO)
        return summary

    # -- weights and what they hold
    def weights_of(self, record: TrialRecord) -> Path | None:
        """The trial's weights file, if it exists: record.weights (relative to the run) or the
        standard weights/<arch id>.safetensors."""
        for p in ([self.path / record.weights] if record.weights else []) + [self.weights_path(record.arch_id)]:
            if p.is_file():
                return p
        return None

    def block_map(self, record: TrialRecord) -> list[dict[str, Any]]:
        """The per-block map of a trial (nas.model.block_map): learned α/β from `record.rates`,
        else from its weights file, else the initial values."""
        from nas.arch import Arch
        from nas.model import block_map, rates_from_weights

        arch = Arch.from_dict(record.arch)
        rates = record.rates
        if not rates and arch.num_acmix:
            path = self.weights_of(record)
            if path is not None:
                try:
                    rates = rates_from_weights(path)
                except Exception:  # a torn or foreign file: show the initial values
                    rates = []
        return block_map(arch, rates)


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
