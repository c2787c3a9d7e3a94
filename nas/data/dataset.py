"""What a dataset is here: `Dataset` (normalised tensors on one device), `DataError`, the supported
names, and the seeded, stratified splits every dataset is cut by.

Splits: validation is always a seeded, stratified part of the *training* images
(`VAL_FRACTION` by default), so a search never selects on the official test split; `subset` keeps a
stratified, seeded part of the rest for a cheap proxy. `fingerprint` names the training images and
labels as read, before any split, so a run can bind its data by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

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
        """One line: name, sizes, shape, classes."""
        return (
            f"{self.name}: {len(self.train_y)} train / {len(self.val_y)} val / "
            f"{len(self.test_y)} test, {self.in_chans}x{self.image_size}x{self.image_size}, "
            f"{self.num_classes} classes"
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


def subset_count(subset: int | float, n: int, name: str) -> int:
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


def validation_split(
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
