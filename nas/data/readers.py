"""The readers of the datasets as they are distributed (nothing is ever downloaded), and the table
of supported datasets (each name's reader, native image side, augmentation and files), which this
module registers into `nas.data.dataset.SOURCES` when the package is imported.

Supported names and the files they expect under `data_dir`:

- ``digits``: scikit-learn's 8x8 handwritten digits (shipped with sklearn; no `data_dir`).
  Upsampled to 16x16 by default, 1 channel, 10 classes. It has no official split: a fixed 20%
  (stratified, always the same images whatever the seed) is held out as its test split.
- ``cifar10``: ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, ``batches.meta`` (`data_dir` may be that folder or its parent).
- ``cifar100``: ``cifar-100-python/`` with ``train``, ``test``, ``meta`` (fine labels).
- ``mnist``, ``fashion-mnist``: a folder with ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
  optionally gzipped (``.gz``). torchvision's ``MNIST/raw`` and ``FashionMNIST/raw`` layouts
  under `data_dir` are found too.
- ``imagefolder``: ``train/<class>/*.png|jpg|...`` and ``val/<class>/...``; class names are
  the folder names under ``train/``. Images are converted to RGB, resized (shorter side) and
  centre-cropped to `image_size` (default 64).
- ``symmetry``: procedural, no files (`nas.data.symmetry`).

The official held-out split (CIFAR ``test``, MNIST ``t10k``, imagefolder ``val/``) is read as
the test split. A reader returns the arrays `nas.data.dataset.Arrays` describes; a new dataset
is a reader, one row of the table below and its name in `nas.data.dataset.DATASETS`.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from nas.data.dataset import Arrays, DataError, Source, register_source, stratified_indices
from nas.data.symmetry import read_symmetry

_DIGITS_TEST_FRACTION = 0.2
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of lists and numpy arrays) and nothing else: a data
    folder should not be able to run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("copyreg", "_reconstructor"),
        ("builtins", "bytearray"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        obj = _ArrayUnpickler(f, encoding="bytes").load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path.name} holds a {type(obj).__name__}, not a dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _read_cifar(name: str, data_dir: Path | None, image_size: int) -> Arrays:
    """CIFAR-10 or CIFAR-100 (fine labels) from the python pickles as distributed."""
    if name == "cifar10":
        sub, train_files, test_files, meta_file = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
            "batches.meta",
        )
        label_key, names_key = "labels", "label_names"
    else:
        sub, train_files, test_files, meta_file = "cifar-100-python", ["train"], ["test"], "meta"
        label_key, names_key = "fine_labels", "fine_label_names"
    expected = f"{sub}/{{{','.join(train_files + test_files + [meta_file])}}} python pickles"
    if data_dir is None:
        raise DataError(name, None, expected, "no data_dir given (--data-dir)")
    folder = data_dir / sub if (data_dir / sub).is_dir() else data_dir
    missing = [f for f in train_files + test_files + [meta_file] if not (folder / f).is_file()]
    if missing:
        raise DataError(name, folder, expected, f"missing {', '.join(missing)}")

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for fname in files:
            try:
                d = _unpickle(folder / fname)
                x = np.asarray(d["data"], dtype=np.uint8)
                y = np.asarray(d[label_key], dtype=np.int64)
                if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
                    raise ValueError(f"data of shape {x.shape} with {len(y)} labels")
            except Exception as e:  # any corruption becomes one readable line
                raise DataError(name, folder, expected, f"cannot read {fname}: {e}") from None
            xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    train_x, train_y = read(train_files)
    test_x, test_y = read(test_files)
    try:
        meta = _unpickle(folder / meta_file)
        classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in meta[names_key])
    except Exception as e:
        raise DataError(name, folder, expected, f"cannot read {meta_file}: {e}") from None
    n_cls = 10 if name == "cifar10" else 100
    if len(classes) != n_cls or max(train_y.max(), test_y.max()) >= n_cls or min(train_y.min(), test_y.min()) < 0:
        raise DataError(name, folder, expected, f"labels or class names are not {n_cls} classes")
    return train_x, train_y, test_x, test_y, classes


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_EXPECTED = "the IDX files " + ", ".join(f"{f}[.gz]" for f in _IDX_FILES)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise ValueError("file too short")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError("not an unsigned-byte IDX file (bad magic number)")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def _read_mnist(name: str, data_dir: Path | None, image_size: int) -> Arrays:
    """MNIST or Fashion-MNIST from the IDX files, plain or gzipped, in data_dir or a torchvision layout under it."""
    expected = _IDX_EXPECTED
    if data_dir is None:
        raise DataError(name, None, expected, "no data_dir given (--data-dir)")
    tv = "MNIST" if name == "mnist" else "FashionMNIST"
    candidates = [
        data_dir,
        data_dir / "raw",
        data_dir / tv / "raw",
        data_dir / tv,
        data_dir / name,
        data_dir / name / "raw",
    ]

    def find(folder: Path, fname: str) -> Path | None:
        for p in (folder / fname, folder / f"{fname}.gz"):
            if p.is_file():
                return p
        return None

    folder = next((c for c in candidates if all(find(c, f) for f in _IDX_FILES)), None)
    if folder is None:
        missing = [f for f in _IDX_FILES if find(data_dir, f) is None]
        raise DataError(name, data_dir, expected, f"missing {', '.join(missing)}")
    arrays = []
    for fname in _IDX_FILES:
        path = find(folder, fname)
        try:
            arrays.append(_read_idx(path))
        except Exception as e:
            raise DataError(name, folder, expected, f"cannot read {path.name}: {e}") from None
    train_x, train_y, test_x, test_y = arrays
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(name, folder, expected, f"{split} images {x.shape} do not match labels {y.shape}")
        if len(y) and y.max() > 9:
            raise DataError(
                name,
                folder,
                expected,
                f"{split} labels must be 0..9, found {int(y.max())} ({int((y > 9).sum())} labels out of range)",
            )
    classes = tuple(str(i) for i in range(10)) if name == "mnist" else _FASHION_CLASSES
    return (train_x[..., None], train_y.astype(np.int64), test_x[..., None], test_y.astype(np.int64), classes)


def _read_digits(name: str, data_dir: Path | None, image_size: int) -> Arrays:
    """scikit-learn's 8x8 digits, a fixed 20% of them held out as the test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    y = d.target.astype(np.int64)
    # A fixed test split, whatever the caller's seed: the same 20% of images are never searched on.
    test = np.zeros(len(y), dtype=bool)
    test[stratified_indices(y, round(_DIGITS_TEST_FRACTION * len(y)), seed=12345)] = True
    return x[~test], y[~test], x[test], y[test], tuple(str(i) for i in range(10))


def _load_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


_IMAGEFOLDER_EXPECTED = "train/<class>/*.png|jpg and val/<class>/*.png|jpg"


def _read_imagefolder(name: str, data_dir: Path | None, image_size: int) -> Arrays:
    """train/<class>/ and val/<class>/ image files, each resized and centre-cropped to image_size."""
    expected = _IMAGEFOLDER_EXPECTED
    if data_dir is None:
        raise DataError(name, None, expected, "no data_dir given (--data-dir)")
    for split in ("train", "val"):
        if not (data_dir / split).is_dir():
            raise DataError(name, data_dir, expected, f"missing {split}/")
    classes = tuple(sorted(p.name for p in (data_dir / "train").iterdir() if p.is_dir()))
    if not classes:
        raise DataError(name, data_dir, expected, "train/ has no class folders")
    index = {c: i for i, c in enumerate(classes)}

    def read(split: str) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for cdir in sorted(p for p in (data_dir / split).iterdir() if p.is_dir()):
            if cdir.name not in index:
                raise DataError(name, data_dir, expected, f"{split}/{cdir.name} is not a class of train/")
            for f in sorted(cdir.iterdir()):
                if f.suffix.lower() not in _IMAGE_SUFFIXES:
                    continue
                try:
                    xs.append(_load_image(f, image_size))
                except Exception as e:
                    raise DataError(name, data_dir, expected, f"cannot read {f.relative_to(data_dir)}: {e}") from None
                ys.append(index[cdir.name])
        if not xs:
            raise DataError(name, data_dir, expected, f"no images under {split}/")
        return np.stack(xs), np.asarray(ys, dtype=np.int64)

    train_x, train_y = read("train")
    test_x, test_y = read("val")
    return train_x, train_y, test_x, test_y, classes


# --------------------------------------------------------------------------- the table

# Augmentation: horizontal flips change the meaning of digits; a flip keeps every symmetry class,
# a random crop moves the mirror axis off the centre.
_TABLE = {
    "digits": Source(_read_digits, 16, "crop"),
    "cifar10": Source(_read_cifar, 32, "crop+flip", "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"),
    "cifar100": Source(_read_cifar, 32, "crop+flip", "cifar-100-python/{train,test,meta}"),
    "mnist": Source(_read_mnist, 28, "crop", _IDX_EXPECTED),
    "fashion-mnist": Source(_read_mnist, 28, "crop+flip", _IDX_EXPECTED),
    "imagefolder": Source(_read_imagefolder, 64, "crop+flip", _IMAGEFOLDER_EXPECTED),
    "symmetry": Source(read_symmetry, 16, "flip"),
}

for _name, _source in _TABLE.items():
    register_source(_name, _source)
