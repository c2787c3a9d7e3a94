"""What a training will cost, before it runs: its work and its seconds from a few timed steps.

`work` is the relative cost of a training (training images x epochs x pixels), what promotion
(`nas.search.promote`) and the job runner (`nas.tune.jobs`) weigh trainings by when nothing was
timed. `time_steps` times one architecture's training steps and validation batches at one image
size with the real loop (`nas.train.loop.train`, a warm-up epoch, then a timed one, on a slice of
the data; then `accuracy_and_loss` on one validation batch), and `StepTimes.seconds` extrapolates an evaluation from them:

    seconds = setup + epochs x (steps per epoch x step + validation batches x eval batch)

which is how `train` spends its time (the last partial batch of an epoch is dropped; validation
after every epoch). Measured on the thread count a trial gets, it is a trial's seconds; a machine
under other load, or trials sharing memory bandwidth, make the truth slower (see `nas.calibrate.plan`
for the ratio measured).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from nas.data.dataset import Dataset
from nas.proxy import ProxyConfig
from nas.train.loop import TrainConfig, _amp_dtype, _auto, accuracy_and_loss, train

__all__ = ["work", "StepTimes", "time_steps"]

TIMED_STEPS = 3  # training steps in the timed epoch


TRAIN_PASSES = 3  # a training image costs about three forward passes (forward and backward); a validation image one


def work(images: int | None, epochs: int, size: int | None, val_images: int = 0) -> float:
    """A training's relative cost in forward passes of a pixel: every epoch trains on `images` (0:
    none known) and scores `val_images`, at `size` pixels a side."""
    return (TRAIN_PASSES * float(images or 0) + val_images) * epochs * float(size or 1) ** 2


@dataclass(frozen=True)
class StepTimes:
    """One architecture's measured seconds at one image size: a model built and costed and its
    first epoch's warm-up (`setup`), one training step of `batch_size` images, one validation batch of `eval_batch_size`."""

    setup: float
    step: float
    eval_batch: float
    batch_size: int
    eval_batch_size: int

    def seconds(self, train_images: int, val_images: int, epochs: int) -> float:
        """The estimated seconds of an evaluation on that many images for `epochs`."""
        steps = max(train_images // min(self.batch_size, max(train_images, 1)), 1)
        batches = math.ceil(val_images / self.eval_batch_size)
        return self.setup + epochs * (steps * self.step + batches * self.eval_batch)


def time_steps(model_of: Any, data: Dataset, proxy: ProxyConfig, device: str = "cpu") -> StepTimes:
    """Time `model_of()` (a fresh model; building and costing it is the setup) trained by `proxy`'s
    settings on a slice of `data` (TIMED_STEPS batches) on `device`, with the torch threads the
    caller set: one warm-up epoch, then one timed (no validation in either); then one validation
    batch scored twice, the second timed."""
    cfg = TrainConfig.of_proxy(proxy, seed=0, device=device)
    bs, ebs = min(cfg.batch_size, len(data.train_y)), cfg.eval_batch_size
    start = time.perf_counter()
    model = model_of()
    setup = time.perf_counter() - start
    steps = replace(
        data,
        train_x=data.train_x[: bs * TIMED_STEPS],
        train_y=data.train_y[: bs * TIMED_STEPS],
        val_x=data.val_x[:0],
        val_y=data.val_y[:0],
    )
    epochs = [r.seconds for r in train(model, steps, replace(cfg, epochs=2))]
    if len(epochs) < 2:  # failed (out of memory, say): the trial will say so; cost it as one epoch
        return StepTimes(setup, epochs[-1] if epochs else 0.0, 0.0, bs, ebs)
    dev = torch.device(device)
    amp = _amp_dtype(dev) if _auto(cfg.amp, dev) else None
    val_x, val_y = data.val_x[:ebs].to(dev), data.val_y[:ebs].to(dev)
    seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        accuracy_and_loss(model, val_x, val_y, ebs, amp_dtype=amp, channels_last=True)  # .item(): synced
        seconds.append(time.perf_counter() - t0)
    eval_batch = seconds[-1] if len(val_y) else 0.0
    # the setup, plus the first epoch's warm-up over the others
    return StepTimes(setup + max(epochs[0] - epochs[1], 0.0), epochs[1] / TIMED_STEPS, eval_batch, bs, ebs)
