"""Datasets: every on-disk format from small files written here, splits, subsets, errors."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.data import SYMMETRY_CLASSES, DataError, Dataset, load_dataset, make_symmetry, preview, stratified_indices


def _unnormalise(ds: Dataset, x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    return x * std + mean


def _pixels(x: np.ndarray) -> torch.Tensor:
    """NHWC uint8 -> NCHW float in [0, 1], as load_dataset sees it before normalising."""
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255


def _rows_of(ds_x: torch.Tensor, ds: Dataset, ref: torch.Tensor) -> list[int]:
    """For every image of ds_x, the index of the identical image in ref."""
    x = _unnormalise(ds, ds_x).flatten(1)
    d = torch.cdist(x, ref.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    assert d.min(1).values.max() < 1e-4
    return d.argmin(1).tolist()


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", val_fraction=0.2, seed=0)


def test_digits_shapes_and_normalisation(digits):
    ds = digits
    assert ds.name == "digits" and ds.num_classes == 10 and ds.in_chans == 1
    assert ds.image_size == 16 and ds.train_x.shape[1:] == (1, 16, 16)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    n_train, n_val, n_test = len(ds.train_y), len(ds.val_y), len(ds.test_y)
    assert n_train + n_val + n_test == 1797
    assert abs(n_test - 0.2 * 1797) <= 1 and abs(n_val - 0.2 * (1797 - n_test)) <= 1
    assert ds.classes == tuple(str(i) for i in range(10))
    assert abs(ds.train_x.mean().item()) < 0.05  # normalised with the training statistics
    assert ds.default_augment == "crop"  # a flipped digit is a different digit
    # stratified: every class is in the validation split in proportion
    counts = torch.bincount(ds.val_y, minlength=10)
    assert counts.min() >= counts.max() - 2


def test_digits_seeds_move_val_but_never_test(digits):
    other = load_dataset("digits", val_fraction=0.2, seed=1, image_size=8)
    assert other.train_x.shape[1:] == (1, 8, 8)
    # the test split is the same images whatever the seed; validation images change
    assert torch.equal(other.test_y, digits.test_y)
    again = load_dataset("digits", val_fraction=0.2, seed=0, image_size=8)
    assert torch.equal(again.val_y, load_dataset("digits", val_fraction=0.2, seed=0, image_size=8).val_y)
    assert not torch.equal(again.val_x, other.val_x)


def test_subset_count_and_fraction():
    full = load_dataset("digits", image_size=8)
    by_count = load_dataset("digits", image_size=8, subset=200)
    by_frac = load_dataset("digits", image_size=8, subset=0.25)
    assert len(by_count.train_y) == 200
    assert len(by_frac.train_y) == round(0.25 * len(full.train_y))
    assert torch.bincount(by_count.train_y).min() >= 19  # about 20 of each class
    # a subset changes neither validation nor the normalisation
    assert torch.equal(by_count.val_x, full.val_x) and by_count.mean == full.mean
    with pytest.raises(DataError):
        load_dataset("digits", subset=-3)


def test_stratified_indices_exact_and_reproducible():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    a = stratified_indices(y, 10, seed=3)
    assert len(a) == 10 and np.array_equal(np.bincount(y[a]), [5, 3, 2])
    assert np.array_equal(a, stratified_indices(y, 10, seed=3))
    assert not np.array_equal(a, stratified_indices(y, 10, seed=4))


# --------------------------------------------------------------------------- CIFAR


def _write_pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_images(rng, n):
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _chw_rows(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1)


@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("c10")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    images, labels = [], []
    for i in range(1, 6):
        x = _cifar_images(rng, 8)
        y = [int(v) for v in rng.integers(0, 10, 8)]
        # the distributed batches: bytes keys, a uint8 (N, 3072) array, a list of ints
        _write_pickle(
            folder / f"data_batch_{i}",
            {b"batch_label": b"training batch", b"labels": y, b"data": _chw_rows(x), b"filenames": [b"x.png"] * 8},
        )
        images.append(x)
        labels += y
    tx = _cifar_images(rng, 6)
    _write_pickle(folder / "test_batch", {b"labels": list(range(6)), b"data": _chw_rows(tx)})
    names = [f"class{i}".encode() for i in range(10)]
    _write_pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return root, np.concatenate(images), np.array(labels)


def test_cifar10_pickles(cifar10_root):
    root, images, labels = cifar10_root
    ds = load_dataset("cifar10", root, val_fraction=0.25, seed=0)
    assert ds.num_classes == 10 and ds.in_chans == 3 and ds.image_size == 32
    assert ds.classes[3] == "class3" and ds.default_augment == "crop+flip"
    assert len(ds.train_y) == 30 and len(ds.val_y) == 10 and len(ds.test_y) == 6
    assert ds.test_y.tolist() == list(range(6))
    # pixels and labels survive the trip: every training image is one of the written ones
    ref = _pixels(images)
    rows = _rows_of(ds.train_x, ds, ref)
    assert ds.train_y.tolist() == labels[rows].tolist()
    assert len(set(rows) | set(_rows_of(ds.val_x, ds, ref))) == 40
    # data_dir may also be the extracted folder itself; image_size resizes
    small = load_dataset("cifar10", root / "cifar-10-batches-py", image_size=16)
    assert small.train_x.shape[1:] == (3, 16, 16)


def test_cifar100_pickles(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x = _cifar_images(rng, 20)
    fine = [int(v) for v in rng.integers(0, 100, 20)]
    _write_pickle(folder / "train", {b"fine_labels": fine, b"coarse_labels": [0] * 20, b"data": _chw_rows(x)})
    _write_pickle(
        folder / "test", {b"fine_labels": [5, 7], b"coarse_labels": [0, 0], b"data": _chw_rows(_cifar_images(rng, 2))}
    )
    _write_pickle(
        folder / "meta",
        {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": [b"x"] * 20},
    )
    ds = load_dataset("cifar100", tmp_path, val_fraction=0.1)
    assert ds.num_classes == 100 and ds.classes[99] == "c99"
    assert len(ds.train_y) == 18 and ds.test_y.tolist() == [5, 7]
    rows = _rows_of(ds.train_x, ds, _pixels(x))
    assert ds.train_y.tolist() == [fine[r] for r in rows]


def test_cifar_errors(tmp_path, cifar10_root):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "cifar10" in msg and str(tmp_path) in msg
    assert "data_batch_1" in msg and "batches.meta" in msg
    with pytest.raises(DataError, match="no data_dir"):
        load_dataset("cifar100")
    # a corrupt batch names the file
    root, _, _ = cifar10_root
    bad = tmp_path / "cifar-10-batches-py"
    bad.mkdir()
    for f in (root / "cifar-10-batches-py").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3") as e:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(e.value)
    # a pickle that would run code is refused, not executed
    _write_pickle(bad / "data_batch_3", {b"data": Path("x"), b"labels": []})
    with pytest.raises(DataError, match="refusing"):
        load_dataset("cifar10", tmp_path)


# --------------------------------------------------------------------------- MNIST (IDX)


def _idx_bytes(arr: np.ndarray) -> bytes:
    return (
        struct.pack(">HBB", 0, 0x08, arr.ndim)
        + struct.pack(f">{arr.ndim}I", *arr.shape)
        + arr.astype(np.uint8).tobytes()
    )


def _write_mnist(folder: Path, gz: bool, n_train: int = 30, n_test: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for name, arr in arrays.items():
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(_idx_bytes(arr))
        else:
            (folder / name).write_bytes(_idx_bytes(arr))
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz)
    ds = load_dataset("mnist", tmp_path, val_fraction=0.2)
    assert ds.in_chans == 1 and ds.image_size == 28 and ds.num_classes == 10
    assert len(ds.train_y) == 24 and len(ds.val_y) == 6 and ds.test_y.tolist() == [0, 1, 2, 3, 4]
    ref = _pixels(arrays["train-images-idx3-ubyte"][..., None])
    rows = _rows_of(ds.train_x, ds, ref)
    assert ds.train_y.tolist() == [r % 10 for r in rows]


def test_fashion_mnist_torchvision_layout(tmp_path):
    _write_mnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    ds = load_dataset("fashion-mnist", tmp_path, image_size=32)
    assert ds.classes[9] == "Ankle boot" and ds.train_x.shape[1:] == (1, 32, 32)
    assert load_dataset("fashion_mnist", tmp_path / "FashionMNIST" / "raw").name == "fashion-mnist"


def test_mnist_errors(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg
    assert all(f in msg for f in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    _write_mnist(tmp_path, gz=False)
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-100])  # truncated
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*header"):
        load_dataset("mnist", tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02" + raw[2:])  # bad magic
    with pytest.raises(DataError, match="magic"):
        load_dataset("mnist", tmp_path)


# --------------------------------------------------------------------------- imagefolder


def test_imagefolder_pngs(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for cls in ("cat", "dog", "emu"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                size = (24, 20) if i % 2 else (20, 20)  # mixed sizes are resized and cropped
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "train" / "emu" / "g.jpg")
    ds = load_dataset("imagefolder", tmp_path, image_size=16, val_fraction=0.25)
    assert ds.classes == ("cat", "dog", "emu") and ds.in_chans == 3
    assert ds.train_x.shape[1:] == (3, 16, 16)
    assert len(ds.train_y) + len(ds.val_y) == 19 and len(ds.test_y) == 6
    assert sorted(ds.test_y.tolist()) == [0, 0, 1, 1, 2, 2]
    # an exactly-sized image is read pixel for pixel
    arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "val" / "dog" / "exact.png")
    ds = load_dataset("imagefolder", tmp_path, image_size=16, val_fraction=0.25)
    x = _unnormalise(ds, ds.test_x).flatten(1)
    assert (x - _pixels(arr[None]).flatten(1)).abs().max(1).values.min() < 1e-4


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="train/<class>") as e:
        load_dataset("imagefolder", tmp_path)
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "b").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_dataset("imagefolder", tmp_path)
    (tmp_path / "train" / "a" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="x.png"):
        load_dataset("imagefolder", tmp_path)


def test_bad_arguments_are_one_line_errors(tmp_path):
    for kwargs in (
        {"name": "imagenet"},
        {"name": "digits", "val_fraction": 1.0},
        {"name": "cifar10", "data_dir": tmp_path / "nope"},
    ):
        with pytest.raises(DataError) as e:
            load_dataset(**kwargs)
        assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="digits, cifar10"):
        load_dataset("imagenet")


# --------------------------------------------------------------------------- symmetry (procedural)


def test_make_symmetry_is_seeded_balanced_and_symmetric():
    x, y = make_symmetry(400, seed=3)
    assert x.shape == (400, 16, 16, 1) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert np.bincount(y, minlength=4).tolist() == [100] * 4
    x2, y2 = make_symmetry(400, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)  # same seed, same data
    x3, y3 = make_symmetry(400, seed=4)
    assert not np.array_equal(y, y3) and np.abs(x - x3).mean() > 0.1  # another seed, other data
    assert make_symmetry(7, seed=0, size=8)[0].shape == (7, 8, 8, 1)
    with pytest.raises(ValueError):
        make_symmetry(4, seed=0, size=10)

    # without the broken cells and the noise every class is exactly its symmetry, and class 0
    # (a random pattern) has none of the three
    x, y = make_symmetry(200, seed=0, broken=0.0, noise=0.0)
    im = x[..., 0]
    same = {
        "lr": (im == im[:, :, ::-1]).all((1, 2)),
        "tb": (im == im[:, ::-1, :]).all((1, 2)),
        "rot": (im == im[:, ::-1, ::-1]).all((1, 2)),
    }
    assert same["lr"][y == 1].all() and same["tb"][y == 2].all() and same["rot"][y == 3].all()
    assert not (same["lr"] | same["tb"] | same["rot"])[y == 0].any()
    # with them, a symmetric image still matches its mirror on most pixels, a random one on half
    x, y = make_symmetry(400, seed=0)
    im = x[..., 0] > 0.5
    agree = (im == im[:, :, ::-1]).mean((1, 2))
    assert agree[y == 1].mean() > 0.8 and abs(agree[y == 0].mean() - 0.5) < 0.1


def test_symmetry_dataset_splits_shapes_and_seeds():
    ds = load_dataset("symmetry", val_fraction=0.2, seed=0)
    assert ds.name == "symmetry" and ds.num_classes == 4 and ds.in_chans == 1
    assert ds.classes == SYMMETRY_CLASSES and ds.default_augment == "flip"
    assert ds.train_x.shape == (4000, 1, 16, 16) and ds.train_x.dtype == torch.float32
    assert len(ds.val_y) == 1000 and len(ds.test_y) == 1000
    assert abs(ds.train_x.mean().item()) < 0.05 and abs(ds.train_x.std().item() - 1) < 0.05
    for split in (ds.train_y, ds.val_y, ds.test_y):  # every split class-balanced
        counts = torch.bincount(split, minlength=4)
        assert counts.max() - counts.min() <= 1
    # no image in two splits (the pool is cut by index; pixel noise makes every image unique)
    flat = torch.cat([ds.train_x, ds.val_x, ds.test_x]).flatten(1)
    assert len(torch.unique(flat, dim=0)) == len(flat)
    # the seed moves the validation split, never the images or the test split
    other = load_dataset("symmetry", val_fraction=0.2, seed=1, subset=200)
    assert torch.allclose(_unnormalise(other, other.test_x), _unnormalise(ds, ds.test_x), atol=1e-5)
    assert not torch.equal(other.val_y, ds.val_y)
    assert len(other.train_y) == 200 and torch.bincount(other.train_y).tolist() == [50] * 4
    # other sizes are generated, not resized; an odd size is a one-line error
    assert load_dataset("symmetry", image_size=8, val_fraction=0.1).train_x.shape[1:] == (1, 8, 8)
    with pytest.raises(DataError, match="symmetry"):
        load_dataset("symmetry", image_size=9)


def test_preview_writes_a_png(tmp_path):
    out = preview("symmetry", tmp_path / "grid.png", rows=2, cols=3)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size < 100_000


def test_every_dataset_name_has_one_source():
    from nas.data import DATASETS
    from nas.data.dataset import SOURCES

    assert tuple(SOURCES) == DATASETS
    # a dataset read from files names them when the folder is missing; a generated one reads none
    assert {k for k, s in SOURCES.items() if not s.files} == {"digits", "symmetry"}


def test_validation_split_is_stratified_disjoint_and_complete():
    from nas.data.dataset import _validation_split

    y = np.array([0] * 40 + [1] * 20 + [2] * 10)
    train, val = _validation_split(y, 0.2, seed=5, key="x", folder=None)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(70))  # every image once
    assert np.array_equal(np.bincount(y[val]), [8, 4, 2])
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    train, val = _validation_split(y, 0.0, seed=5, key="x", folder=None)
    assert len(val) == 0 and len(train) == 70
    with pytest.raises(DataError, match="enough training images"):
        _validation_split(y[:3], 0.1, seed=0, key="x", folder=None)


def test_preview_grid_shows_each_class_by_row():
    from nas.data.preview_grid import _grid_picks

    y = np.array([1, 0, 1, 2, 0, 1])
    # rows cycle through the classes; each row the first `cols` images of its class, -1 if fewer
    assert _grid_picks(y, 3, rows=4, cols=3) == [1, 4, -1, 0, 2, 5, 3, -1, -1, 1, 4, -1]
    assert _grid_picks(y, 4, rows=4, cols=1) == [1, 0, 3, -1]  # class 3 has no image


def test_a_subset_larger_than_the_data_is_said_not_silently_clamped():
    whole = load_dataset("digits", subset=99999)
    assert len(whole.train_y) == len(load_dataset("digits").train_y)  # all of them, as before
    assert whole.summary().endswith(
        f"(subset 99999 is more than the {len(whole.train_y):,} training images: all of them are used)"
    )
    for fits in (100, 0.5, None):  # a count that fits, a share, no subset: nothing to say
        assert "subset" not in load_dataset("digits", subset=fits).summary()
