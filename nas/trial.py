"""One architecture evaluated: cost it, train its proxy, score it. No Ray here.

This is the unit every part of acmix-nas calls: the search's Ray trainable is a few lines around
`evaluate`, and tests, benchmarks and the fidelity check call it directly.

    >>> from nas.space import load_space
    >>> from nas.trial import TrialSettings, evaluate
    >>> space = load_space('search_spaces/digits.yaml')
    >>> data = space.proxy.load_data(seed=0)
    >>> settings = TrialSettings(proxy=space.proxy, num_classes=data.num_classes)
    >>> result = evaluate(space.reference_points()['all_conv'], data, settings, seed=0)
    >>> result.record.status, result.record.accuracy
    ('complete', 0.98...)

The same architecture, data and seed give the same proxy accuracy on CPU (for a given thread
count): the seed sets the initial weights, the batch order and the augmentation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch
from torch import nn

from nas.data.dataset import Dataset
from nas.net.arch import Arch
from nas.net.cost import measure_cost
from nas.net.model import create_model, rates_of
from nas.proxy import ProxyConfig
from nas.run.record import TrialRecord
from nas.train.loop import TrainConfig, train

__all__ = ["TrialSettings", "TrialResult", "evaluate", "constraint_values"]


@dataclass
class TrialSettings:
    """What an evaluation needs besides the architecture, its data and its seed.

    Args:
        proxy: the proxy training (epochs, optimizer, ...; its data fields are the caller's business).
        num_classes: the classifier's outputs.
        limits: objective name ('macs', 'params', 'latency') -> hard upper limit; an architecture
            over one is costed but not trained (status 'infeasible').
        device: where to cost and train ('cpu', 'cuda', 'cuda:1').
        measure: the costs measured besides params and MACs ('latency', 'memory'); the others
            stay None.
    """

    proxy: ProxyConfig
    num_classes: int
    limits: Mapping[str, float] = field(default_factory=dict)
    device: str = "cpu"
    measure: tuple[str, ...] = ("latency", "memory")


@dataclass
class TrialResult:
    """An evaluation: its record (number -1 until a run numbers it) and, when complete, the
    trained model (on the evaluation's device)."""

    record: TrialRecord
    model: nn.Module | None = None


def constraint_values(record: TrialRecord, limits: Mapping[str, float]) -> list[float]:
    """One value per hard limit, in sorted limit order, <= 0 where it holds (Optuna's convention)."""
    return [float(record.value(name)) - float(limit) for name, limit in sorted(limits.items())]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def evaluate(
    arch: Arch, data: Dataset, settings: TrialSettings, seed: int, report: Callable[[TrialRecord], None] | None = None
) -> TrialResult:
    """Cost `arch`, train its proxy on `data` with `seed`, and score it on the validation split.

    Args:
        arch: the architecture.
        data: the proxy's dataset (moved to `settings.device` if it is elsewhere).
        settings: proxy, classes, hard limits, device.
        seed: seeds the initial weights, batch order and augmentation.
        report: called with the record so far (status 'running') after every epoch but the
            last; the last epoch's metrics are in the returned record. A caller that reports
            both (the Ray trainable) reports each epoch once.

    Returns:
        The record, with status 'complete', 'failed' (NaN loss, out of memory: `error` says
        which) or 'infeasible' (over a hard limit, not trained), and the trained model when
        complete.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    device = torch.device(settings.device)
    record = TrialRecord(
        number=-1,
        arch_id=arch.arch_id,
        arch=arch.to_dict(),
        status="running",
        seed=seed,
        device=str(device),
        started_at=_now(),
    )

    def finish(status: str, model: nn.Module | None = None) -> TrialResult:
        record.status, record.seconds, record.finished_at = status, time.perf_counter() - start, _now()
        record.cpu_seconds = time.process_time() - cpu_start
        return TrialResult(record, model)

    torch.manual_seed(seed)  # the initial weights
    model = create_model(arch, num_classes=settings.num_classes)
    _record_cost(record, model, settings, device)
    if not record.feasible:
        return finish("infeasible")

    cfg = TrainConfig.of_proxy(settings.proxy, seed=seed, device=str(device))
    data = data.to(device) if data.device != device else data
    train_start = time.perf_counter()
    for r in train(model, data, cfg):
        record.epochs = r.epoch
        record.train_seconds = time.perf_counter() - train_start
        if r.status != "ok":
            record.error, record.accuracy = r.reason, None
            return finish("failed")
        record.acc_per_epoch.append(r.val_acc)
        record.loss_per_epoch.append(r.train_loss)
        record.accuracy = r.val_acc
        if r.epoch < cfg.epochs and report is not None:
            record.seconds = time.perf_counter() - start
            report(record)
    record.rates = rates_of(model)
    return finish("complete", model)


def _record_cost(record: TrialRecord, model: nn.Module, settings: TrialSettings, device: torch.device) -> None:
    """Put `model`'s costs (the ones `settings` measures) and its hard-limit constraints into `record`."""
    cost = measure_cost(
        model,
        device=device,
        latency="latency" in settings.measure,
        memory="memory" in settings.measure,
        warmup=2,
        repeats=5,
    )
    record.params, record.macs = cost.params, cost.macs
    record.latency_ms, record.memory_mb = cost.latency_ms, cost.peak_memory_mb
    record.constraints = constraint_values(record, settings.limits)
