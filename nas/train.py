"""One training loop for proxies and for full retraining.

`train(model, data, cfg)` is a generator: it yields one `EpochResult` per epoch so a search can
report, prune or stop early, and it ends with a `status='failed'` result (never an exception)
when the loss goes NaN/inf or the device runs out of memory.

The data is a `nas.data.Dataset`: tensors already on the device. Batches are drawn with a
seeded `torch.randperm` and augmented in batched tensor ops (random crop from a zero-padded
image, which is the dataset mean after normalisation, and horizontal flip, both as one gather),
so there is no DataLoader, worker or per-image Python in the loop. On CPU a run is
bit-for-bit reproducible for a given model initialisation, seed and thread count.

Run as a module it fully trains one architecture and writes a checkpoint:

    python -m nas.train --arch arch.json --dataset cifar10 --data-dir ~/data --epochs 100
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.optim import param_groups_weight_decay

from nas.cli import ArgumentParser, fault_exit
from nas.data.dataset import DATASETS, MAX_IMAGE_SIZE, VAL_FRACTION, DataError, Dataset, load_dataset
from nas.errors import UsageError
from nas.proxy import ProxyConfig
from nas.run.files import folder_written_whole, occupied, save_safetensors

if TYPE_CHECKING:
    from nas.net.arch import Arch
    from nas.run.folder import RunConfig

__all__ = ["TrainConfig", "EpochResult", "train", "evaluate", "param_groups", "augment_batch", "main"]

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
def evaluate(
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
                val_acc, val_loss = evaluate(
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


# --------------------------------------------------------------------------- CLI


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:  # these say their default in words
            return action.help or ""
        return super()._get_help_string(action)


def _resolve_arch(spec: str, trial: int | None) -> tuple["Arch", "RunConfig | None"]:
    """The Arch named on the command line and, when it comes from a run folder, that run's
    run.yaml. `spec` is an Arch .json/.yaml file, a run folder with `--trial N`, or
    RUN[/trials.jsonl]#ARCH_ID."""
    from nas.net.arch import Arch

    path_part, _, arch_id = spec.partition("#")
    path = Path(path_part).expanduser()
    if path.name == "trials.jsonl":
        path = path.parent
    if path.is_file() and not arch_id:
        if trial is not None:
            raise UsageError(f"--trial needs a run folder, but --arch {spec} is a file")
        try:
            return Arch.load(path), None
        except Exception as e:
            raise UsageError(f"--arch {path}: not a valid Arch JSON/YAML file ({' '.join(str(e).split())})") from None
    if not path.is_dir():
        raise UsageError(f"--arch {spec}: no such file or run folder")
    from nas.run.folder import RunError, RunFolder, records_of

    try:
        run = RunFolder(path).require()
        config, records = run.config(), run.trials()
    except RunError as e:
        raise UsageError(str(e)) from None
    if arch_id:
        try:
            found = records_of(records, arch_id)  # the id, or a unique prefix of it
        except RunError as e:
            raise UsageError(f"{run.trials_path}: {e}") from None
        what = f"arch id {arch_id}"
    elif trial is not None:
        found = [r for r in records if r.number == trial]
        what = f"trial {trial}"
    else:
        raise UsageError(f"--arch {spec} is a run folder: add --trial N or #ARCH_ID")
    if not found:
        raise UsageError(f"{run.trials_path}: no {what} ({len(records)} trials)")
    try:
        return Arch.from_dict(found[-1].arch), config
    except Exception as e:
        raise UsageError(f"{run.trials_path}: {what} has a bad arch ({e})") from None


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = ArgumentParser(  # every CLI's: one-line errors, exit 2
        prog="python -m nas.train",
        formatter_class=_HelpFormatter,
        description="Train one architecture from scratch and save a checkpoint "
        "(model.safetensors, arch.json, metrics.json).",
    )
    p.add_argument(
        "--arch",
        required=True,
        help="an Arch .json/.yaml file, a run folder with --trial N, or RUN_FOLDER[/trials.jsonl]#ARCH_ID",
    )
    p.add_argument("--trial", type=int, default=None, help="trial number in the run folder")
    p.add_argument(
        "--dataset", default=None, help=f"one of {', '.join(DATASETS)}; default: the run's dataset, else digits"
    )
    p.add_argument(
        "--data-dir", type=Path, default=None, help="folder with the dataset's files (default: the run's, if any)"
    )
    p.add_argument("--image-size", type=int, default=None, help="training resolution; default: the arch's input size")
    p.add_argument(
        "--val-fraction", type=float, default=VAL_FRACTION, help="share of the training images held out for validation"
    )
    p.add_argument(
        "--subset", type=float, default=None, help="train on this many (>1) or this share (<=1) of the training images"
    )
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument(
        "--augment", choices=AUGMENTS, default="auto", help="auto: crop for digits/MNIST, crop+flip for natural images"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--amp", choices=("auto", "on", "off"), default="auto", help="mixed precision (auto: on for CUDA)")
    p.add_argument(
        "--channels-last", choices=("auto", "on", "off"), default="auto", help="channels_last memory format (auto: on)"
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument(
        "--out", type=Path, default=None, help="checkpoint folder (default: results/trained/<arch id>-<dataset>)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing checkpoint folder (whole, and only if training succeeds)",
    )
    return p


# flag -> (check, what is allowed): the numbers TrainConfig and load_dataset would take badly or late
_ARG_CHECKS = {
    "epochs": (lambda v: v >= 1, "an int >= 1"),
    "batch_size": (lambda v: v >= 1, "an int >= 1"),
    "lr": (lambda v: math.isfinite(v) and v > 0, "a number > 0"),
    "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a number >= 0"),
    "warmup_epochs": (lambda v: math.isfinite(v) and v >= 0, "a number >= 0"),
    "label_smoothing": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "val_fraction": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "subset": (lambda v: v is None or (math.isfinite(v) and v > 0), "a count > 1 or a fraction in (0, 1]"),
    "image_size": (lambda v: v is None or 1 <= v <= MAX_IMAGE_SIZE, f"an int in 1..{MAX_IMAGE_SIZE}"),
    "threads": (lambda v: v >= 0, "an int >= 0"),
}
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _check_args(args: argparse.Namespace) -> None:
    """Every number and the device, before any data is read (one line naming the flag)."""
    for key, (ok, allowed) in _ARG_CHECKS.items():
        value = getattr(args, key)
        if not ok(value):
            raise UsageError(f"--{key.replace('_', '-')} must be {allowed}, got {value}")
    d = args.device
    if not (d in ("auto", "cpu", "cuda", "mps") or (d.startswith("cuda:") and d[5:].isdigit())):
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got {d!r}")


def _run(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    arch, cfg, data, out, subset = _set_up(args)
    model, history, last, seconds = _fit(arch, cfg, data, args.seed)
    return _save(args, arch, cfg, data, out, subset, model, history, last, seconds)


def _set_up(args: argparse.Namespace) -> tuple[Arch, TrainConfig, Dataset, Path, int | float | None]:
    """The command line's architecture, training config, data and output folder, checked (UsageError)."""
    arch, run_cfg = _resolve_arch(args.arch, args.trial)
    dataset = args.dataset or (run_cfg.data.dataset if run_cfg else None) or "digits"
    data_dir = args.data_dir or (run_cfg.options.get("data_dir") if run_cfg else None)
    _check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available")
    h, w = arch.input_size
    image_size = args.image_size or (h if h == w else None)
    subset = None if args.subset is None else (int(args.subset) if args.subset > 1 else float(args.subset))
    try:
        cfg = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=args.optimizer,
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            warmup_epochs=args.warmup_epochs,
            label_smoothing=args.label_smoothing,
            seed=args.seed,
            augment=args.augment,
            device=device,
            amp={"auto": "auto", "on": True, "off": False}[args.amp],
            channels_last={"auto": "auto", "on": True, "off": False}[args.channels_last],
        )
        data = load_dataset(
            dataset,
            data_dir,
            image_size=image_size,
            val_fraction=args.val_fraction,
            subset=subset,
            seed=args.seed,
            device=device,
        )
    except (DataError, ValueError) as e:
        raise UsageError(str(e)) from None
    if data.in_chans != arch.in_chans:
        raise UsageError(
            f"arch {arch.arch_id} takes {arch.in_chans}-channel input but {data.name} has {data.in_chans} channels"
        )
    out = args.out or Path("results") / "trained" / f"{arch.arch_id}-{data.name}"
    if occupied(out) and not args.force:
        raise UsageError(f"{occupied(out)}; refusing to overwrite a checkpoint (use --force to replace it)")
    print(f"arch {arch.arch_id}: {arch.summary()}")
    print(f"data {data.summary()}; device {device}")

    return arch, cfg, data, out, subset


def _fit(arch: Arch, cfg: TrainConfig, data: Dataset, seed: int) -> tuple[nn.Module, list[dict], Any, float]:
    """Train a new `arch` network, an epoch line each: (model, per-epoch history, last epoch, seconds)."""
    from nas.net.model import create_model

    torch.manual_seed(seed)
    model = create_model(arch, num_classes=data.num_classes)
    history: list[dict] = []
    t0 = time.perf_counter()
    last = None
    for r in train(model, data, cfg):
        history.append(asdict(r))
        last = r
        if r.status != "ok":
            break
        print(
            f"epoch {r.epoch}/{cfg.epochs}  loss {r.train_loss:.4f}  val_acc {r.val_acc:.4f}  "
            f"val_loss {r.val_loss:.4f}  lr {r.lr:.3g}  {r.seconds:.1f}s",
            flush=True,
        )
    return model, history, last, time.perf_counter() - t0


def _save(
    args: argparse.Namespace,
    arch: Arch,
    cfg: TrainConfig,
    data: Dataset,
    out: Path,
    subset: int | float | None,
    model: nn.Module,
    history: list[dict],
    last: Any,
    seconds: float,
) -> int:
    """Score the trained network on the test split, write the output folder whole and say so; the exit status."""
    failed = last is not None and last.status != "ok"
    metrics = {
        "arch_id": arch.arch_id,
        "status": "failed" if failed else "ok",
        "reason": last.reason if failed else "",
        "dataset": data.name,
        "num_classes": data.num_classes,
        "in_chans": data.in_chans,
        "image_size": data.image_size,
        "mean": list(data.mean),
        "std": list(data.std),
        "classes": list(data.classes),
        "train_images": len(data.train_y),
        "val_images": len(data.val_y),
        "val_fraction": args.val_fraction,
        "subset": subset,
        "val_acc": None if last is None or failed else last.val_acc,
        "seconds": seconds,
        "config": asdict(cfg),
        "history": history,
    }
    if not failed:
        test_acc, test_loss = evaluate(model, data.test_x, data.test_y, cfg.eval_batch_size)
        metrics.update(test_acc=test_acc, test_loss=test_loss)
    # Written whole (a temp folder, then a rename). A failed run never replaces a checkpoint: its
    # arch.json and metrics.json go to OUT, or beside an existing OUT as OUT.failed.
    dest = out.with_name(out.name + ".failed") if failed and occupied(out) else out
    with folder_written_whole(dest) as tmp:
        arch.save(tmp / "arch.json")
        if not failed:
            state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            save_safetensors(state, tmp / "model.safetensors", metadata={"format": "pt", "arch_id": arch.arch_id})
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=True) + "\n")
    if failed:
        print(
            f"training failed: {last.reason}; wrote {dest / 'metrics.json'}"
            + (f"; {out} is left as it was" if dest != out else ""),
            file=sys.stderr,
        )
        return 1
    print(
        f"val_acc {metrics['val_acc']:.4f}  test_acc {metrics['test_acc']:.4f}  {metrics['seconds']:.1f}s; saved {out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m nas.train`: returns the exit status (2 for a user error, 1 for a failed run)."""
    try:
        return _run(argv)
    except SystemExit as e:  # from the parser: --help (0), or a one-line argument error (2)
        return e.code if isinstance(e.code, int) else 2
    except UsageError as e:
        print(f"nas.train: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only --out: the checkpoint folder is written whole or not at all
        print(
            f"nas.train: error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}; no checkpoint "
            f"was written",
            file=sys.stderr,
        )
        return fault_exit(e)
    except KeyboardInterrupt:
        print("nas.train: interrupted; no checkpoint was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
