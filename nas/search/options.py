"""The options of a search: their defaults, their checks, and their form in run.yaml.

`SearchOptions` is what `python -m nas.search`'s flags and `nas.search.run()`'s keyword arguments
fill in. Every value is checked (`SearchOptions.checked`) before a folder is made or Ray starts;
a bad one raises `UsageError` with one line naming the flag.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from nas.checks import is_int
from nas.cli import amount, check_folder_name
from nas.errors import UsageError
from nas.proxy import ProxyConfig, ProxyError
from nas.run.pareto import COSTS, OBJECTIVES
from nas.samplers.registry import SAMPLERS

__all__ = ["UsageError", "SearchOptions", "DEFAULT_SPACE", "SAMPLERS", "RESUMABLE"]

DEFAULT_SPACE = Path("search_spaces/symmetry.yaml")
# Options a resumed run may change; the others define the search and must stay as they were.
RESUMABLE = {
    "budget",
    "time_budget",
    "cpus_per_trial",
    "gpus_per_trial",
    "gpu_memory_mb",
    "max_concurrent",
    "address",
    "max_failures",
    "resume",
    "results_dir",
    "quiet",
    "data_dir",
    "promote",
    "promote_share",
    "promote_seeds",
}
LIMIT_OPTIONS = {o.limit: name for name, o in OBJECTIVES.items() if o.search_limit}  # max_macs -> macs, ...
PROXY_OPTIONS = ("dataset", "epochs", "batch_size", "subset")


@dataclass
class SearchOptions:
    """Every option of a search; the command line's flags and `run()`'s keyword arguments."""

    budget: int = 100  # trials (distinct architectures) to evaluate, counting those done before
    time_budget: float | None = None  # stop starting trials after this many seconds
    space: Path = DEFAULT_SPACE
    objectives: list[str] = field(default_factory=lambda: ["accuracy", "macs"])
    max_macs: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    sampler: str = (
        "evolution"  # chosen by benchmarks/nas_bench_201.py, search_quality.py and driver_scale.py (docs/benchmarks.md)
    )
    seed: int = 0
    repeats: int = 1  # seeds every architecture is evaluated with
    race: int = 3  # seeds for the front and the points within its noise (1: no racing)
    race_share: float = 0.3  # noise-band re-evaluations, at most this share of the budget
    early_stop: bool = False
    promote: int = 24  # architectures trained again at rung 1 after the search (nas.search.promote); 0: off
    promote_share: float = 1.0  # the promotion's compute, at most this share of the proxy search's (1: half the whole)
    promote_seeds: int = 2  # seeds per promoted architecture (nas.search.promote.PROMOTE_SEEDS)
    promote_epochs: int | None = None  # rung 1's epochs; None: the calibration's deployment, else 2x the proxy's
    promote_images: int | None = None  # rung 1's training images; None: the calibration's deployment, else all
    proxy: Path | None = None  # a proxy: file (nas.calibrate's proxy.yaml) in place of the space file's proxy section
    dataset: str | None = None  # proxy overrides; None: the space file's (or --proxy's) proxy section
    data_dir: Path | None = None
    epochs: int | None = None
    subset: float | None = None
    batch_size: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | str | None = None  # None: 1 when CUDA is present, else 0; 'auto': by memory
    gpu_memory_mb: float | None = None  # the GPUs' memory for auto; None: measured on this machine's GPU
    max_concurrent: int | None = None
    address: str | None = None
    max_failures: int | None = None
    name: str | None = None
    results_dir: Path = Path("results")
    resume: str | None = None
    quiet: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchOptions:
        """From run.yaml's `options` (or keyword arguments); unknown keys are an error."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise UsageError(f"unknown option {unknown[0]!r}; options: {', '.join(f.name for f in fields(cls))}")
        opts = cls(**d)
        for key in ("space", "data_dir", "results_dir", "proxy"):
            if getattr(opts, key) is not None:
                setattr(opts, key, Path(getattr(opts, key)))
        return opts

    def to_dict(self) -> dict[str, Any]:
        """As run.yaml stores them: paths as strings."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @property
    def limits(self) -> dict[str, float]:
        return {obj: float(getattr(self, opt)) for opt, obj in LIMIT_OPTIONS.items() if getattr(self, opt) is not None}

    def checked(self) -> SearchOptions:
        """These options with objectives and amounts parsed, or UsageError naming the first bad one.
        Needs neither the space nor Ray: everything here is refused before anything starts."""
        objectives = _parse_objectives(self.objectives)
        self._check_search()
        limits = self._checked_limits()
        gpus = self._checked_resources()
        self._check_name()
        self._check_proxy()
        return replace(self, objectives=objectives, gpus_per_trial=gpus, **limits)

    def _check_search(self) -> None:
        """The budgets, seeds, repeats, racing and the sampler."""
        if not is_int(self.budget) or self.budget < 1:
            raise UsageError(f"--budget must be at least 1, got {self.budget!r}")
        if not is_int(self.repeats) or not is_int(self.race) or self.repeats < 1 or self.race < 1:
            raise UsageError(f"--repeats and --race must be at least 1, got {self.repeats!r} and {self.race!r}")
        if not 0 <= self.race_share <= 10:
            raise UsageError(f"--race-share must be in [0, 10], got {self.race_share}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler: unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if not is_int(self.seed) or self.seed < 0:
            raise UsageError(f"--seed must be an int >= 0, got {self.seed!r}")
        if self.time_budget is not None and not _positive(self.time_budget):
            raise UsageError(f"--time-budget must be a number of seconds > 0, got {self.time_budget!r}")
        if not is_int(self.promote) or self.promote < 0 or self.promote == 1:
            raise UsageError(f"--promote must be 0 (off) or at least 2 (a ranking needs two), got {self.promote!r}")
        if not _positive(self.promote_share):
            raise UsageError(f"--promote-share must be a number > 0, got {self.promote_share!r}")
        if not is_int(self.promote_seeds) or self.promote_seeds < 2:
            raise UsageError(f"--promote-seeds must be at least 2 (a mean and its noise), got {self.promote_seeds!r}")
        if self.promote_epochs is not None and (not is_int(self.promote_epochs) or self.promote_epochs < 1):
            raise UsageError(f"--promote-epochs must be an int >= 1, got {self.promote_epochs!r}")
        if self.promote_images is not None and (not is_int(self.promote_images) or self.promote_images < 1):
            raise UsageError(f"--promote-images must be an int >= 1, got {self.promote_images!r}")

    def _checked_limits(self) -> dict[str, float]:
        """The hard limits given (--max-macs, ...), parsed as amounts ('2e6', '50k'): option -> value."""
        limits = {}
        for key in LIMIT_OPTIONS:
            value = getattr(self, key)
            if value is None:
                continue
            try:
                limits[key] = amount(value)
            except argparse.ArgumentTypeError as e:
                raise UsageError(f"--{_flag(key)}: {e}") from None
            if limits[key] <= 0:
                raise UsageError(f"--{_flag(key)} must be > 0, got {value!r}")
        return limits

    def _checked_resources(self) -> float | str | None:
        """The per-trial resources, --gpu-memory-mb, --max-concurrent and --max-failures; returns
        --gpus-per-trial parsed (a number, 'auto' or None)."""
        if not _positive(self.cpus_per_trial):
            raise UsageError(f"--cpus-per-trial must be positive, got {self.cpus_per_trial!r}")
        gpus = self.gpus_per_trial
        if isinstance(gpus, str) and gpus.strip().lower() != "auto":
            try:
                gpus = float(gpus)  # the command line gives a string
            except ValueError:
                raise UsageError(f"--gpus-per-trial must be a number >= 0 or auto, got {gpus!r}") from None
        elif isinstance(gpus, str):
            gpus = "auto"
        if gpus is not None and gpus != "auto" and not (_positive(gpus) or gpus == 0):
            raise UsageError(f"--gpus-per-trial must be a number >= 0 or auto, got {self.gpus_per_trial!r}")
        if self.gpu_memory_mb is not None and not _positive(self.gpu_memory_mb):
            raise UsageError(f"--gpu-memory-mb must be a number of MB > 0, got {self.gpu_memory_mb!r}")
        for key, low in (("max_concurrent", 1), ("max_failures", 0)):
            value = getattr(self, key)
            if value is not None and (not is_int(value) or value < low):
                raise UsageError(f"--{_flag(key)} must be an int >= {low}, got {value!r}")
        return gpus

    def _check_name(self) -> None:
        """--name: a plain folder name that a file system takes (`nas.cli.check_folder_name`)."""
        if self.name is not None:
            check_folder_name(str(self.name))

    def _check_proxy(self) -> None:
        """The proxy overrides, by ProxyConfig's own rules (the space's proxy is checked once loaded)."""
        changes = proxy_changes(self)
        try:
            replace(ProxyConfig(), **changes).checked()
        except ProxyError as e:
            if e.key in changes:
                raise UsageError(f"--{_flag(e.key)}: {e.msg}") from None


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _flag(key: str) -> str:
    return key.replace("_", "-")


def proxy_changes(opts: SearchOptions) -> dict[str, Any]:
    """The proxy settings the options override: --subset as a count (> 1) or a fraction."""
    changes: dict[str, Any] = {k: getattr(opts, k) for k in PROXY_OPTIONS if getattr(opts, k) is not None}
    subset = changes.get("subset")
    if isinstance(subset, (int, float)) and not isinstance(subset, bool) and math.isfinite(subset) and subset > 1:
        if subset != int(subset):
            raise UsageError(f"--subset: a count of images must be a whole number, got {subset!r}")
        changes["subset"] = int(subset)
    elif isinstance(subset, int) and not isinstance(subset, bool):
        changes["subset"] = float(subset)  # 1 means all of it, as a fraction
    return changes


def _parse_objectives(values: list[str] | str) -> list[str]:
    names = [
        v.strip().lower()
        for item in ([values] if isinstance(values, str) else values)
        for v in item.split(",")
        if v.strip()
    ]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise UsageError(f"--objectives: unknown {', '.join(unknown)}; choose accuracy plus any of {', '.join(COSTS)}")
    if "accuracy" not in names or len(set(names)) < 2:
        raise UsageError("--objectives: give accuracy and at least one cost objective, e.g. accuracy macs")
    return ["accuracy"] + [n for n in dict.fromkeys(names) if n != "accuracy"]
