"""`python -m nas.train`: fully train one architecture and write a checkpoint.

    python -m nas.train --arch arch.json --dataset cifar10 --data-dir ~/data --epochs 100
    python -m nas.train --arch results/RUN#<arch id> --epochs 100 --out checkpoints/best

The architecture comes from an Arch file or from a run folder (whose dataset and data folder are
the defaults); every number and the device are checked before any data is read, by the rules of
`nas.proxy.TRAINING_CHECKS`. The checkpoint folder (model.safetensors, arch.json, metrics.json)
is written whole; a failed run never replaces one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas.cli import ArgumentParser, command
from nas.data.dataset import DATASETS, VAL_FRACTION, DataError, Dataset, load_dataset
from nas.errors import UsageError
from nas.net.arch import Arch
from nas.net.model import create_model
from nas.proxy import check_setting
from nas.run.files import folder_written_whole, occupied, save_safetensors
from nas.run.folder import RunConfig, RunError, RunFolder, records_of
from nas.train.loop import AUGMENTS, TrainConfig, accuracy_and_loss, train

__all__ = ["main"]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:  # these say their default in words
            return action.help or ""
        return super()._get_help_string(action)


def _resolve_arch(spec: str, trial: int | None) -> tuple[Arch, RunConfig | None]:
    """The Arch named on the command line and, when it comes from a run folder, that run's
    run.yaml. `spec` is an Arch .json/.yaml file, a run folder with `--trial N`, or
    RUN[/trials.jsonl]#ARCH_ID."""
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


# the flags that are training settings, checked by nas.proxy's rules in this order (then --threads and --device)
_SETTING_FLAGS = (
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "label_smoothing",
    "val_fraction",
    "subset",
    "image_size",
)
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _subset(value: float | None) -> int | float | None:
    """--subset as `load_dataset` takes it: a whole count above 1 as an int, else a fraction."""
    if value is not None and math.isfinite(value) and value > 1 and value == int(value):
        return int(value)
    return value


def _check_args(args: argparse.Namespace) -> None:
    """Every number and the device, before any data is read (one line naming the flag)."""
    for key in _SETTING_FLAGS:
        wrong = check_setting(key, _subset(args.subset) if key == "subset" else getattr(args, key))
        if wrong:
            raise UsageError(f"--{key.replace('_', '-')}: {wrong}")
    if args.threads < 0:
        raise UsageError(f"--threads: expected an int >= 0, got {args.threads!r}")
    d = args.device
    if not (d in ("auto", "cpu", "cuda", "mps") or (d.startswith("cuda:") and d[5:].isdigit())):
        raise UsageError(f"--device: expected one of {', '.join(DEVICES)}, got {d!r}")


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
    subset = _subset(args.subset)
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
        test_acc, test_loss = accuracy_and_loss(model, data.test_x, data.test_y, cfg.eval_batch_size)
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


@command
def main(argv: list[str]) -> int:
    """`python -m nas.train`: returns the exit status (2 for a user error, 1 for a failed run)."""
    try:
        return _run(argv)
    except OSError as e:  # a full disk, a read-only --out: the checkpoint folder is written whole or not at all
        e.add_note("no checkpoint was written")
        raise
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM
        e.add_note("interrupted; no checkpoint was written")
        raise
