"""`load_dataset`: a dataset by name, read, split, resized, normalised and on the device.

`load_dataset(name, data_dir, ...)` reads one of the supported datasets with its reader
(`nas.data.readers.SOURCES`), splits a seeded validation set off the training images, optionally
keeps a stratified subset of the rest for a cheap proxy, resizes to `image_size`, normalises with
the training split's per-channel mean/std and returns a `Dataset` whose tensors already live on the
target device, ready for `nas.train`. The official test split is kept untouched as
``test_x``/``test_y``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.data.dataset import (
    DATASETS,
    MAX_IMAGE_SIZE,
    VAL_FRACTION,
    Arrays,
    DataError,
    Dataset,
    dataset_name,
    fingerprint,
    stratified_indices,
    subset_count,
    validation_split,
)
from nas.data.readers import SOURCES


def load_dataset(
    name: str,
    data_dir: Path | str | None = None,
    image_size: int | None = None,
    val_fraction: float = VAL_FRACTION,
    subset: int | float | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Dataset:
    """Load a dataset by name as normalised tensors on `device`.

    Args:
        name: one of `DATASETS` ('digits', 'cifar10', 'cifar100', 'mnist', 'fashion-mnist',
            'imagefolder', 'symmetry').
        data_dir: folder holding the files as distributed (see `nas.data.readers`); not used
            by 'digits' and 'symmetry'.
        image_size: side of the square images; None keeps the native size (digits: 16,
            CIFAR: 32, MNIST: 28, imagefolder: 64, symmetry: 16, generated at that size).
        val_fraction: share of the training images held out (stratified, seeded) as
            validation; 0 gives an empty validation set.
        subset: keep only this many (int > 1) or this share (float in (0, 1]) of the remaining
            training images, stratified and seeded: a cheap proxy.
        seed: seeds the validation split and the subset.
        device: where the tensors live.

    Returns:
        A `Dataset`.

    Raises:
        DataError: unknown name, missing or malformed files (one line naming the dataset, the
            folder and the expected files), or bad split arguments.

    Example:
        >>> ds = load_dataset("digits", val_fraction=0.2)
        >>> ds.train_x.shape[1:], ds.num_classes
        (torch.Size([1, 16, 16]), 10)
    """
    key, size, folder = _checked_arguments(name, data_dir, image_size, val_fraction)
    arrays = SOURCES[key].read(key, folder, size)
    train_x, train_y = arrays[0], arrays[1]
    train_idx, val_idx = validation_split(train_y, val_fraction, seed, key, folder)
    # Statistics from the training part before `subset`: the same normalisation for a proxy
    # and for the full retraining of the same network.
    mean, std = _channel_stats(train_x[train_idx])
    if subset is not None:
        k = subset_count(subset, len(train_idx), key)
        train_idx = train_idx[stratified_indices(train_y[train_idx], k, seed + 1)]
    info = {
        "data_dir": None if folder is None else str(folder),
        "seed": seed,
        "val_fraction": float(val_fraction),
        "subset": subset,
    }
    return _as_dataset(key, arrays, train_idx, val_idx, size, (mean, std), torch.device(device), info)


def _checked_arguments(
    name: str, data_dir: Path | str | None, image_size: int | None, val_fraction: float
) -> tuple[str, int, Path | None]:
    """load_dataset's arguments checked: the dataset's name (aliases resolved), the image side
    and the data folder (user's home expanded).

    Raises:
        DataError: an unknown name, a val_fraction or image_size out of range, no such folder.
    """
    key = dataset_name(name)
    if key is None:
        raise DataError(str(name), None, f"a dataset name in {', '.join(DATASETS)}", "unknown dataset")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise DataError(key, None, "val_fraction in [0, 1)", f"got {val_fraction!r}")
    size = int(image_size) if image_size else SOURCES[key].size
    if not 1 <= size <= MAX_IMAGE_SIZE:
        raise DataError(key, None, f"image_size in 1..{MAX_IMAGE_SIZE}", f"got {image_size!r}")
    folder = None if data_dir is None else Path(data_dir).expanduser()
    files = SOURCES[key].files
    if folder is not None and files and not folder.is_dir():
        raise DataError(key, folder, files, "no such folder")
    return key, size, folder


def _as_dataset(
    key: str,
    arrays: Arrays,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    size: int,
    stats: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    info: dict,
) -> Dataset:
    """The Dataset of a reader's arrays: the training images at `train_idx` and `val_idx` and the
    test images, resized to `size`, normalised with `stats` (mean, std) and moved to `device`."""
    train_x, train_y, test_x, test_y, classes = arrays
    mean, std = stats

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return _to_tensor(x, size, mean, std, device), torch.from_numpy(y.copy()).to(device)

    tr_x, tr_y = tensors(train_x[train_idx], train_y[train_idx])
    va_x, va_y = tensors(train_x[val_idx], train_y[val_idx])
    te_x, te_y = tensors(test_x, test_y)
    return Dataset(
        name=key,
        train_x=tr_x,
        train_y=tr_y,
        val_x=va_x,
        val_y=va_y,
        test_x=te_x,
        test_y=te_y,
        num_classes=len(classes),
        in_chans=train_x.shape[-1],
        image_size=size,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        classes=tuple(classes),
        default_augment=SOURCES[key].augment,
        info=info,
        fingerprint=fingerprint(train_x, train_y),
    )


# --------------------------------------------------------------------------- tensors


def _to_tensor(
    x: np.ndarray, image_size: int, mean: torch.Tensor, std: torch.Tensor, device: torch.device, chunk: int = 4096
) -> torch.Tensor:
    """NHWC uint8/float array -> normalised float32 NCHW tensor of `image_size`, on `device`."""
    n, h, w, c = x.shape
    out = torch.empty((n, c, image_size, image_size), dtype=torch.float32, device=device)
    for i in range(0, n, chunk):  # chunks bound the float32 copy of large datasets
        t = torch.from_numpy(np.array(x[i : i + chunk])).to(device)  # a writable copy
        t = t.permute(0, 3, 1, 2).float()
        if x.dtype == np.uint8:
            t = t / 255.0
        if (h, w) != (image_size, image_size):
            t = F.interpolate(
                t, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=image_size < min(h, w)
            )
        out[i : i + chunk] = (t - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    return out


def _channel_stats(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    flat = x.reshape(-1, x.shape[-1])
    mean = np.zeros(x.shape[-1])
    sq = np.zeros(x.shape[-1])
    for i in range(0, len(flat), 1 << 22):  # float64 sums in chunks: exact enough, bounded memory
        part = flat[i : i + (1 << 22)].astype(np.float64) / scale
        mean += part.sum(0)
        sq += (part * part).sum(0)
    mean /= max(len(flat), 1)
    std = np.sqrt(np.maximum(sq / max(len(flat), 1) - mean * mean, 0.0))
    std = np.where(std < 1e-6, 1.0, std)
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
