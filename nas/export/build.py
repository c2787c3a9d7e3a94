"""`export`: write the selected trial of a run as a timm local folder, retrained first if asked,
and check that timm reloads it to the same outputs."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.export.card import model_card
from nas.export.folder import CARD, CONFIG, EXPORTS, WEIGHTS_FILE, ExportError, load_checked
from nas.export.selection import Selection
from nas.net.arch import Arch, ArchError
from nas.run.files import folder_written_whole, occupied, save_safetensors
from nas.run.folder import RunConfig, RunFolder, TrialRecord


@dataclass
class ExportResult:
    """What `export` wrote and measured."""

    path: Path
    record: TrialRecord
    how: str
    retrained: dict[str, Any] | None  # epochs, val_acc, test_acc, seconds after --retrain-epochs
    max_abs_diff: float  # reloaded (timm local-dir) vs exported outputs on a random batch
    seconds: float


def _data_cfg(config: RunConfig, arch: Arch) -> dict[str, Any]:
    """The run's preprocessing as timm data_config: input size, mean/std, interpolation, crop."""
    data = config.data
    size = data.image_size or list(arch.input_size)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    out = dict(
        input_size=(int(data.in_chans), int(h), int(w)), interpolation="bilinear", crop_pct=1.0, crop_mode="center"
    )
    if data.mean and data.std:
        out.update(mean=tuple(float(v) for v in data.mean), std=tuple(float(v) for v in data.std))
    return out


def _retrain(model: nn.Module, config: RunConfig, epochs: int, data_dir: Path | None, device: str) -> dict[str, Any]:
    """Continue training with the run's proxy hyper-parameters for `epochs` on the run's full
    training split (a fresh warm-up and cosine schedule). Prints one line per epoch."""
    from nas.data.dataset import DataError
    from nas.train.loop import TrainConfig, accuracy_and_loss, train

    name = config.data.dataset or config.proxy.dataset
    proxy = replace(config.proxy, dataset=name, image_size=config.data.image_size, subset=None, epochs=epochs)
    dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    try:
        ds = proxy.load_data(data_dir or config.options.get("data_dir"), seed=config.seed, device=dev)
    except DataError as e:
        raise ExportError(f"--retrain-epochs: {e}") from None
    if config.data.mean and not np.allclose(ds.mean, config.data.mean, atol=1e-4):
        print(f"warning: {name} now normalises with mean {ds.mean}, the run used {config.data.mean}", file=sys.stderr)
    cfg = TrainConfig.of_proxy(proxy, seed=config.seed, device=dev)
    t0 = time.perf_counter()
    last = None
    for r in train(model, ds, cfg):
        print(
            f"retrain epoch {r.epoch}/{epochs}: loss {r.train_loss:.4f}, val acc {r.val_acc:.4f} ({r.seconds:.1f} s)",
            flush=True,
        )
        if r.status == "failed":
            raise ExportError(f"--retrain-epochs: training failed ({r.reason})")
        last = r
    test_acc, _ = accuracy_and_loss(model, ds.test_x, ds.test_y)
    model.to("cpu")
    return dict(
        epochs=epochs,
        dataset=name,
        train_images=len(ds.train_y),
        val_acc=last.val_acc if last else None,
        test_acc=test_acc,
        seconds=time.perf_counter() - t0,
    )


def export(
    run: RunFolder,
    selection: Selection,
    out: Path | None = None,
    *,
    retrain_epochs: int = 0,
    data_dir: Path | None = None,
    device: str = "auto",
    force: bool = False,
) -> ExportResult:
    """Write the selected trial as a timm local folder (config.json, model.safetensors,
    README.md) and check that timm reloads it to the same outputs.

    The folder is written whole (a temp folder beside it, then a rename): a failure leaves what
    was there before as it was. A non-empty `out` is refused (ExportError) unless `force`."""
    import timm
    from timm.models._hub import save_config_for_hf

    from nas.net.model import create_model, model_args

    t0 = time.perf_counter()
    config = run.config()
    record = selection.record
    out = Path(out) if out else run.path / EXPORTS / record.arch_id
    if not force and occupied(out):
        raise ExportError(f"{occupied(out)}; refusing to overwrite it (use --force to replace it whole)")
    try:
        arch = Arch.from_dict(record.arch)
    except ArchError as e:
        raise ExportError(f"trial {record.arch_id}: bad architecture in trials.jsonl ({e})") from None
    num_classes = int(config.data.num_classes)
    weights = run.weights_of(record)
    if weights is None:
        raise ExportError(f"trial {record.arch_id} has no weights file in {run.path / 'weights'}")
    model = create_model(arch, num_classes=num_classes)
    load_checked(model, weights, f"{weights} (trial {record.arch_id}, num_classes {num_classes} from run.yaml)")
    retrained = _retrain(model, config, retrain_epochs, data_dir, device) if retrain_epochs > 0 else None
    model.eval()

    with folder_written_whole(out) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_safetensors(state, tmp / WEIGHTS_FILE, metadata={"format": "pt", "arch_id": record.arch_id})
        save_config_for_hf(model, str(tmp / CONFIG), model_args=model_args(model), data_config=_data_cfg(config, arch))

        # the promise of the folder: timm rebuilds the same function from it
        reloaded = timm.create_model(f"local-dir:{tmp}", pretrained=True).eval()
        x = torch.randn(
            2,
            *timm.data.resolve_data_config({}, model=reloaded)["input_size"],
            generator=torch.Generator().manual_seed(0),
        )
        with torch.no_grad():
            diff = float((reloaded(x) - model(x)).abs().max())
        (tmp / CARD).write_text(model_card(run, selection, model, retrained, out))
    return ExportResult(out, record, selection.how, retrained, diff, time.perf_counter() - t0)
