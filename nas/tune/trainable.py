"""The trainable: one evaluation in a Ray worker, a few lines around `nas.trial.evaluate`.

It reports every epoch (ASHA can stop a trial early); the last report carries `final=True`, the
whole record and, for a complete trial, its weights as a Tune checkpoint (`nas.tune.result`).
The search runs it on the architectures its searcher proposes; `nas.tune.jobs` on a fixed list.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from nas.data.dataset import Dataset
from nas.net.arch import Arch
from nas.run.record import TrialRecord
from nas.trial import TrialSettings, evaluate
from nas.tune.result import trial_result

__all__ = ["trainable"]

# The proxy's data on each worker's device, fetched once per worker process: actors are reused
# across trials, so only a worker's first trial pays for the fetch and the copy to the device.
_DATA_ON_DEVICE: dict[tuple[str, str], Dataset] = {}


def _data_on(ref: ray.ObjectRef, device: str) -> Dataset:
    key = (ref.hex(), device)
    if key not in _DATA_ON_DEVICE:
        _DATA_ON_DEVICE.clear()  # one dataset at a time: a worker serves one search
        _DATA_ON_DEVICE[key] = ray.get(ref).to(device)
    return _DATA_ON_DEVICE[key]


def trainable(config: dict[str, Any], data: list[ray.ObjectRef], settings: TrialSettings, threads: int) -> None:
    """Ray Tune function trainable: `evaluate` one architecture, reporting every epoch.

    `data` is [an object ref of the Dataset] (a list, so that Tune passes the ref unresolved and
    the worker fetches it once, not once per trial). The trial runs on the GPU Ray gave it
    (CUDA_VISIBLE_DEVICES: its first GPU is cuda:0), or on the CPU when it has none."""
    from safetensors.torch import save_file

    start = time.perf_counter()
    torch.set_num_threads(max(1, threads))  # one thread per CPU Ray gives the trial
    if config.get("epochs"):  # a longer (or shorter) training than the run's proxy: the fidelity check
        settings = replace(settings, proxy=replace(settings.proxy, epochs=int(config["epochs"])))
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    device = "cuda" if gpu_ids and torch.cuda.is_available() else "cpu"
    settings = replace(settings, device=device)
    dataset = _data_on(data[0], device)
    setup = time.perf_counter() - start
    node = ray.get_runtime_context().get_node_id()

    def stamp(record: TrialRecord) -> TrialRecord:
        record.node, record.gpu_ids, record.setup_seconds = node, gpu_ids, setup
        return record

    def report(record: TrialRecord) -> None:
        tune.report(trial_result(stamp(record), final=False))

    outcome = evaluate(Arch.from_dict(config["arch"]), dataset, settings, seed=int(config["seed"]), report=report)
    stamp(outcome.record)
    if outcome.model is None:
        tune.report(trial_result(outcome.record, final=True))
        return
    with tempfile.TemporaryDirectory() as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in outcome.model.state_dict().items()}
        save_file(state, str(Path(tmp) / "model.safetensors"), metadata={"arch_id": outcome.record.arch_id})
        tune.report(trial_result(outcome.record, final=True), checkpoint=tune.Checkpoint.from_directory(tmp))
