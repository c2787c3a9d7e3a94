"""One training loop for proxies and for full retraining.

`train(model, data, cfg)` is a generator: it yields one `EpochResult` per epoch so a search can
report, prune or stop early, and it ends with a `status='failed'` result (never an exception)
when the loss goes NaN/inf or the device runs out of memory. `accuracy_and_loss` scores a model on
a split (validation after each epoch, the test split after a full training).

The data is a `nas.data.Dataset`: tensors already on the device. Batches are drawn with a
seeded `torch.randperm` and augmented in batched tensor ops (random crop from a zero-padded
image, which is the dataset mean after normalisation, and horizontal flip, both as one gather),
so there is no DataLoader, worker or per-image Python in the loop. On CPU a run is
bit-for-bit reproducible for a given model initialisation, seed and thread count.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.optim import param_groups_weight_decay

from nas.data.dataset import Dataset
from nas.proxy import ProxyConfig

__all__ = ["TrainConfig", "EpochResult", "train", "accuracy_and_loss", "param_groups", "augment_batch", "AUGMENTS"]

AUGMENTS = ("auto", "none", "crop", "flip", "crop+flip")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    The defaults are the proxy's (taken from `nas.proxy.ProxyConfig`): on the digits space the
    all-conv network reaches about 98% validation accuracy in about 2 s on 2 CPU cores, the all-ACmix one about 97% in about 6 s. Full retraining on CIFAR wants more
    epochs (100-200), `batch_size` 128 and `lr` 0.1. The names match the search-space YAML's
    `proxy:` section, so `TrainConfig.from_dict(proxy)` works.

    Args:
        epochs: passes over the training images.
        batch_size: images per step (the last partial batch of an epoch is dropped).
        optimizer: 'sgd' (Nesterov momentum) or 'adamw'.
        lr: peak learning rate, reached after the warm-up.
        momentum: SGD momentum (AdamW's beta1 stays at 0.9).
        weight_decay: decoupled for AdamW, L2 for SGD; never on biases, norm layers, 1-D
            parameters or ACmix's `rate1`/`rate2`.
        warmup_epochs: linear warm-up length (fractional epochs allowed); then cosine to 0,
            updated every step.
        label_smoothing: cross-entropy label smoothing in training (validation loss is plain).
        seed: seeds shuffling, augmentation and the global torch RNG (dropout, drop-path).
        augment: 'auto' (the dataset's default: crop for digits/MNIST, crop+flip for natural
            images), 'none', 'crop', 'flip', 'crop+flip', or True/False.
        crop_padding: pixels of padding for the random crop; None: image_size // 8 (>= 1).
        amp: mixed precision: 'auto' (on for CUDA: bf16 where supported, else fp16 with a
            GradScaler), True, or False.
        channels_last: 'auto' (on: it made the digits proxies 6-15% and small CIFAR conv nets
            14-25% faster on CPU, and it is the fast layout on CUDA), True or False.
        device: 'auto' (the data's device), 'cpu', 'cuda', 'cuda:1', ...
        eval_batch_size: batch size for validation.
        grad_clip: clip the gradient norm to this value; None: no clipping.
    """

    epochs: int = ProxyConfig.epochs
    batch_size: int = ProxyConfig.batch_size
    optimizer: str = ProxyConfig.optimizer
    lr: float = ProxyConfig.lr
    momentum: float = 0.9
    weight_decay: float = ProxyConfig.weight_decay
    warmup_epochs: float = float(ProxyConfig.warmup_epochs)
    label_smoothing: float = ProxyConfig.label_smoothing
    seed: int = 0
    augment: str | bool = "auto"
    crop_padding: int | None = None
    amp: str | bool = "auto"
    channels_last: str | bool = "auto"
    device: str = "auto"
    eval_batch_size: int = 512
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if isinstance(self.augment, str) and self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS} or a bool, got {self.augment!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr < 0 or self.warmup_epochs < 0:
            raise ValueError("epochs, lr and warmup_epochs must be >= 0 and batch_size >= 1")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a mapping (e.g. a YAML `proxy:` section), ignoring keys that belong to
        `load_dataset` (dataset, image_size, val_fraction, subset, data_dir)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def of_proxy(cls, proxy: ProxyConfig, seed: int, device: str = "auto") -> "TrainConfig":
        """The TrainConfig of one proxy training."""
        return cls.from_dict({**proxy.to_dict(), "seed": seed, "device": device})


@dataclass
class EpochResult:
    """Metrics of one epoch. `epoch` counts from 1; `lr` is the rate at the epoch's last step;
    `seconds` is the epoch's wall time including validation. A failed run ends with one result
    whose `status` is 'failed' and whose `reason` says why (NaN loss, out of memory)."""

    epoch: int
    train_loss: float
    val_acc: float
    val_loss: float
    seconds: float
    lr: float
    status: str = "ok"
    reason: str = ""


# --------------------------------------------------------------------------- pieces

_NO_DECAY_NAMES = ("rate1", "*.rate1", "rate2", "*.rate2")  # ACmix's α/β, whatever their shape


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups: weights with `weight_decay`, and the rest with none.

    timm's `param_groups_weight_decay` decides: no decay for biases and any other 1-D (or 0-D)
    parameter (every norm layer's), nor for ACmix's mixing weights `rate1`/`rate2` (α/β); frozen
    parameters are left out. Returned as [decay, no decay], both present.
    """
    groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=_NO_DECAY_NAMES)
    decay = [p for g in groups if g["weight_decay"] for p in g["params"]]
    no_decay = [p for g in groups if not g["weight_decay"] for p in g["params"]]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to 1, then a cosine to 0, as a function of the step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    rest = max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, rest) / rest))


def augment_batch(x: torch.Tensor, padding: int, crop: bool, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop (from a zero-padded image) and horizontal flip of a batch, as one gather.

    Args:
        x: N x C x H x W.
        padding: pixels of zero padding on each side for the crop.
        crop, flip: which augmentations to apply.
        generator: on `x`'s device; makes the offsets and flips reproducible.
    """
    if not (crop and padding > 0) and not flip:
        return x
    n, c, h, w = x.shape
    dev = x.device
    pad = padding if crop else 0
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=dev, generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=dev, generator=generator)
    else:
        oy = ox = torch.zeros((n, 1, 1), dtype=torch.long, device=dev)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    if flip:
        flipped = torch.rand((n, 1, 1), device=dev, generator=generator) < 0.5
        cols = torch.where(flipped, (w - 1) - cols, cols)
    # flat index into the padded H'xW' plane of every output pixel: one gather for all channels
    idx = (oy + torch.arange(h, device=dev).view(1, h, 1)) * (w + 2 * pad) + ox + cols
    out = x.flatten(2).gather(2, idx.view(n, 1, h * w).expand(n, c, h * w))
    return out.view(n, c, h, w)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def _resolve_device(cfg: TrainConfig, data: Dataset) -> torch.device:
    if cfg.device in ("auto", "", None):
        return data.device
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(cfg.device)


def _auto(flag: str | bool, device: torch.device) -> bool:
    return device.type == "cuda" if flag == "auto" else bool(flag)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


@torch.no_grad()
def accuracy_and_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 512,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Top-1 accuracy (0..1) and mean cross-entropy of `model` on (x, y), in eval mode.

    `amp_dtype` runs the forward under autocast in that dtype; the model's train/eval mode is
    restored afterwards. Empty inputs give (nan, nan).
    """
    n = len(y)
    if n == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=y.device)
    try:
        for i in range(0, n, batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(xb.device, amp_dtype):
                logits = model(xb)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
            correct += (logits.argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    return correct.item() / n, loss_sum.item() / n


# --------------------------------------------------------------------------- the loop


def train(model: nn.Module, data: Dataset, cfg: TrainConfig | None = None) -> Iterator[EpochResult]:
    """Train `model` in place on `data`, yielding an `EpochResult` after every epoch.

    Args:
        model: any classifier with `data.num_classes` outputs; moved to the device (and to
            channels_last) in place.
        data: a `nas.data.Dataset`; its tensors are moved to the device if needed.
        cfg: hyper-parameters; None: `TrainConfig()` (the digits proxy budget).

    Yields:
        One `EpochResult` per epoch. On a NaN/inf loss or an out-of-memory error, a last
        result with `status='failed'` and a `reason`, then the generator ends.

    Example:
        >>> for r in train(model, load_dataset("digits"), TrainConfig(epochs=3)):
        ...     print(r.epoch, r.val_acc)
    """
    cfg = cfg or TrainConfig()
    device = _resolve_device(cfg, data)
    if data.device != device:
        data = data.to(device)
    use_amp = _auto(cfg.amp, device)
    amp_dtype = _amp_dtype(device) if use_amp else None
    channels_last = True if cfg.channels_last == "auto" else bool(cfg.channels_last)
    augment = (
        data.default_augment
        if cfg.augment == "auto"
        else (("crop+flip" if cfg.augment else "none") if isinstance(cfg.augment, bool) else cfg.augment)
    )
    crop, flip = "crop" in augment, "flip" in augment
    padding = cfg.crop_padding if cfg.crop_padding is not None else max(1, data.image_size // 8)

    torch.manual_seed(cfg.seed)  # dropout / drop-path draw from the global generator
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)

    n = len(data.train_y)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(n // bs, 1)
    total_steps = max(cfg.epochs * steps_per_epoch, 1)
    warmup_steps = min(round(cfg.warmup_epochs * steps_per_epoch), total_steps)

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, warmup_steps, total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    # Checking the loss forces a device sync: every step on CPU (free), every few on CUDA.
    check_every = 1 if device.type == "cpu" else 25
    last_lr = opt.param_groups[0]["lr"]

    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        failure = ""
        train_loss = val_acc = val_loss = float("nan")
        try:
            model.train()
            order = torch.randperm(n, device=device, generator=gen)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            for step in range(steps_per_epoch):
                idx = order[step * bs : (step + 1) * bs]
                xb = augment_batch(data.train_x[idx], padding, crop, flip, gen)
                yb = data.train_y[idx]
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with _autocast(device, amp_dtype):
                    loss = criterion(model(xb).float(), yb)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                last_lr = opt.param_groups[0]["lr"]
                sched.step()
                loss_sum += loss.detach().double()
                if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
                    if not torch.isfinite(loss_sum).item():
                        failure = (
                            f"non-finite training loss at epoch {epoch} step {step + 1} "
                            f"(lr {opt.param_groups[0]['lr']:.3g})"
                        )
                        break
            if not failure:
                train_loss = loss_sum.item() / steps_per_epoch
                val_acc, val_loss = accuracy_and_loss(
                    model, data.val_x, data.val_y, cfg.eval_batch_size, amp_dtype=amp_dtype, channels_last=channels_last
                )
                if len(data.val_y) and not math.isfinite(val_loss):
                    failure = f"non-finite validation loss at epoch {epoch}"
        except Exception as e:
            if not _is_oom(e):
                raise
            failure = f"out of memory at epoch {epoch} (batch size {bs}): {str(e).splitlines()[0]}"
        if failure:
            # Outside the except block: the traceback no longer pins the batch's tensors.
            xb = yb = loss = order = None
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            yield EpochResult(
                epoch, train_loss, val_acc, val_loss, time.perf_counter() - t0, last_lr, status="failed", reason=failure
            )
            return
        yield EpochResult(epoch, train_loss, val_acc, val_loss, time.perf_counter() - t0, last_lr)
