"""Datasets by name, held as normalised tensors on the device, read from the files as they are
distributed (nothing is ever downloaded).

The package, bottom to top:

- `nas.data.dataset`: `Dataset`, `DataError`, the supported names (`DATASETS`, `dataset_name`),
  the registry of their sources (`SOURCES`), the seeded, stratified splits (`stratified_indices`,
  `VAL_FRACTION`), `fingerprint`, and `load_dataset`: read, split, resize, normalise, onto the device;
- `nas.data.symmetry`: the procedural default task, `make_symmetry` (no files);
- `nas.data.readers`: the readers of CIFAR pickles, MNIST IDX files, scikit-learn's digits and
  image folders, and the table of supported datasets (reader, native size, augmentation, files
  expected) that it registers in `SOURCES`: the package imports it, so every name is loadable;
- `nas.data.preview_grid`: `preview`, a PNG grid of a few training images;
- `nas.data.cli`: `python -m nas.data [--dataset NAME] [--preview PNG]` (`main`).

    >>> ds = load_dataset('digits', val_fraction=0.2)
    >>> ds.summary()
    'digits: 1150 train / 288 val / 359 test, 1x16x16, 10 classes'
"""

import nas.data.readers  # noqa: F401  (registers the datasets' readers in nas.data.dataset.SOURCES)
from nas.data.cli import main
from nas.data.dataset import (
    DATASETS,
    MAX_IMAGE_SIZE,
    VAL_FRACTION,
    DataError,
    Dataset,
    dataset_name,
    fingerprint,
    load_dataset,
    stratified_indices,
)
from nas.data.preview_grid import MAX_GRID, preview
from nas.data.symmetry import SYMMETRY_CLASSES, make_symmetry

__all__ = [
    "DATASETS",
    "MAX_IMAGE_SIZE",
    "MAX_GRID",
    "SYMMETRY_CLASSES",
    "VAL_FRACTION",
    "DataError",
    "Dataset",
    "load_dataset",
    "make_symmetry",
    "preview",
    "stratified_indices",
    "fingerprint",
    "dataset_name",
    "main",
]
