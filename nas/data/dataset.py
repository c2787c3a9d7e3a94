"""What a dataset is here and how one is loaded: `Dataset` (normalised tensors on one device),
`DataError`, the supported names, the table of their sources, the seeded splits, and `load_dataset`.

`load_dataset(name, data_dir, ...)` reads one of the supported datasets with its reader (the readers
of the files as they are distributed are in `nas.data.readers`, which fills `SOURCES`), splits a
seeded validation set off the training images, optionally keeps a stratified subset of the rest for
a cheap proxy, resizes to `image_size`, normalises with the training split's per-channel mean/std
and returns a `Dataset` whose tensors already live on the target device, ready for `nas.train`.

Splits: validation is always a seeded, stratified part of the *training* images
(`VAL_FRACTION` by default), so a search never selects on the official test split, which is kept
untouched as ``test_x``/``test_y``. `fingerprint` names the training images and labels as read,
before any split, so a run can bind its data by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.errors import NasError

VAL_FRACTION = 0.2  # share of the training images held out for validation, by default everywhere
MAX_IMAGE_SIZE = 4096  # a larger side is a typo, not a dataset: refused before anything is resized
DATASETS = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder", "symmetry")

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "image-folder": "imagefolder",
    "image_folder": "imagefolder",
}

# What a reader returns: (train_x, train_y, test_x, test_y, classes), the images as NHWC arrays,
# uint8 in 0..255 or float32 in [0, 1]. A reader takes (name, data_dir, image_size); readers of
# files whose images have one size ignore image_size (load_dataset resizes), the others read or
# make that size.
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]
Reader = Callable[[str, Path | None, int], Arrays]


class DataError(NasError):
    """A dataset that cannot be read: its str is one line naming the dataset, the folder and
    the files that were expected there."""

    def __init__(self, dataset: str, folder: Path | str | None, expected: str, detail: str = ""):
        self.dataset, self.folder, self.expected, self.detail = dataset, folder, expected, detail
        msg = (
            f"{dataset}: expected {expected}"
            if folder is None
            else (f"{dataset}: folder {folder}: expected {expected}")
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(" ".join(msg.split()))


@dataclass
class Dataset:
    """One dataset as normalised float tensors (N x C x H x W) on a single device.

    `train_*` is what the model trains on (after the validation split and `subset`), `val_*` is
    the seeded held-out part of the training images, `test_*` the official test split (never
    used by the search). `mean`/`std` are the per-channel statistics (in [0, 1] pixel units)
    that were subtracted/divided; a deployed model needs the same normalisation.
    `default_augment` is the augmentation that suits this data ('crop', 'flip' or 'crop+flip').
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    default_augment: str = "crop+flip"
    info: dict = field(default_factory=dict)
    fingerprint: str = ""  # of the training images and labels as read (see `fingerprint`)

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def to(self, device: torch.device | str) -> "Dataset":
        """The same dataset with every tensor moved to `device`."""
        moved = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        return Dataset(**{**self.__dict__, **moved})

    def summary(self) -> str:
        """One line: name, sizes, shape, classes, and a subset larger than the data if one was asked for."""
        return (
            f"{self.name}: {len(self.train_y)} train / {len(self.val_y)} val / "
            f"{len(self.test_y)} test, {self.in_chans}x{self.image_size}x{self.image_size}, "
            f"{self.num_classes} classes" + (f" ({self.info['clamped']})" if self.info.get("clamped") else "")
        )


# --------------------------------------------------------------------------- the sources


@dataclass(frozen=True)
class Source:
    """One supported dataset: its reader, its native side (what `image_size=None` keeps; digits
    is upsampled), the augmentation that suits it, and the files it reads under data_dir ('' for
    the datasets that read no folder)."""

    read: Reader
    size: int
    augment: str
    files: str = ""


# Name -> Source, filled by nas.data.readers, which the package imports (as timm's model modules
# fill its registry). load_dataset looks names up here and imports no reader, so this module stays
# low in the import graph, where nas.proxy and nas.train import it.
SOURCES: dict[str, Source] = {}


def register_source(name: str, source: Source) -> None:
    """Make `name`, one of `DATASETS`, loadable by `load_dataset` with `source`.

    Raises:
        ValueError: `name` is not in `DATASETS` (add it there first: the commands list it).
    """
    if name not in DATASETS:
        raise ValueError(f"{name!r} is not in DATASETS ({', '.join(DATASETS)})")
    SOURCES[name] = source


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
    train_idx, val_idx = _validation_split(train_y, val_fraction, seed, key, folder)
    # Statistics from the training part before `subset`: the same normalisation for a proxy
    # and for the full retraining of the same network.
    mean, std = _channel_stats(train_x[train_idx])
    clamped = None
    if subset is not None:
        k = _subset_count(subset, len(train_idx), key)
        if k < subset and not (isinstance(subset, float) and subset <= 1.0):  # said, not silently clamped
            clamped = f"subset {subset:g} is more than the {len(train_idx):,} training images: all of them are used"
        train_idx = train_idx[stratified_indices(train_y[train_idx], k, seed + 1)]
    info = {
        "data_dir": None if folder is None else str(folder),
        "seed": seed,
        "val_fraction": float(val_fraction),
        "subset": subset,
        **({"clamped": clamped} if clamped else {}),
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


# --------------------------------------------------------------------------- splitting


def stratified_indices(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Pick exactly `k` indices of `labels`, class proportions kept, reproducible for `seed`.

    Every item gets the key (rank within its class + 0.5) / class size after a seeded shuffle;
    taking the k smallest keys takes from every class in proportion to its size.
    """
    labels = np.asarray(labels)
    n = len(labels)
    k = int(min(max(k, 0), n))
    perm = np.random.default_rng(seed).permutation(n)
    _, cls, counts = np.unique(labels[perm], return_inverse=True, return_counts=True)
    cls = cls.reshape(-1)
    order = np.argsort(cls, kind="stable")  # grouped by class, shuffled within each class
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[cls[order]]
    key = (rank + 0.5) / counts[cls]
    chosen = np.argsort(key, kind="stable")[:k]
    return np.sort(perm[chosen])


def _subset_count(subset: int | float, n: int, name: str) -> int:
    """How many of `n` training images a `subset` keeps: a count (an int, at most `n`) or a share
    (a float in (0, 1], at least one image).

    Raises:
        DataError: a subset that is not a positive number.
    """
    if isinstance(subset, bool) or not isinstance(subset, (int, float)) or subset <= 0:
        raise DataError(name, None, "subset as a count >= 1 or a fraction in (0, 1]", f"got {subset!r}")
    if isinstance(subset, float) and subset <= 1.0:
        return max(1, round(subset * n))
    return min(int(subset), n)


def _validation_split(
    labels: np.ndarray, val_fraction: float, seed: int, key: str, folder: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of the training images: a stratified, seeded `val_fraction`
    of them for validation, both sorted.

    Raises:
        DataError: too few images to leave at least one on each side.
    """
    n = len(labels)
    n_val = round(float(val_fraction) * n)
    if val_fraction > 0 and (n_val < 1 or n - n_val < 1):
        raise DataError(
            key, folder, "enough training images for the validation split", f"{n} images, val_fraction={val_fraction}"
        )
    is_val = np.zeros(n, dtype=bool)
    is_val[stratified_indices(labels, n_val, seed)] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# --------------------------------------------------------------------------- names


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """16 hex chars of the SHA-256 of images and labels as read from their files (before any
    split, resizing or normalisation, so the same files give the same fingerprint on any machine
    and from any folder). A run binds its data by it (run.yaml `data.fingerprint`)."""
    h = hashlib.sha256()
    for a in (images, labels):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


def dataset_name(name: str) -> str | None:
    """The name of a supported dataset, aliases resolved ('CIFAR-10' -> 'cifar10'); None if unknown."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in DATASETS else None


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
    """Per-channel mean and std of NHWC images, in [0, 1] pixel units (a constant channel gets std 1)."""
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
