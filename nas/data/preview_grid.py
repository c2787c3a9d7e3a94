"""`preview`: a PNG grid of a few training images of a dataset, titled with their class names
(`python -m nas.data --preview PNG`)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import torch

from nas.data.dataset import Dataset, load_dataset

MAX_GRID = 32  # rows and columns of a preview at most (1,024 small plots take a while already)
_PREVIEW_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def preview(
    name: str,
    path: Path | str,
    data_dir: Path | str | None = None,
    rows: int = 4,
    cols: int = 8,
    image_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a PNG grid of `rows` x `cols` training images of a dataset, titled with their class
    names (the first `cols` images of each class in turn, when there are `rows` classes or more).
    Returns the file written: `path`, with .png added when it has no extension.

    Raises:
        ValueError: `path` is a folder or has an unknown extension; rows or cols out of 1..MAX_GRID.
        DataError: the dataset cannot be read.
        OSError: the file cannot be written.

    Example:
        >>> preview("symmetry", "docs/symmetry.png")   # also: python -m nas.data --preview PNG
    """
    path = _preview_path(path, rows, cols)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = load_dataset(name, data_dir, image_size=image_size, val_fraction=0.0, seed=seed)
    fig = _grid_figure(ds, rows, cols)
    try:
        if path.parent.exists() and not path.parent.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
    finally:
        plt.close(fig)
    return path


def _preview_path(path: Path | str, rows: int, cols: int) -> Path:
    """The file a preview writes (`path`, .png added when it has no extension), its grid checked.

    Raises:
        ValueError: `path` is a folder or has an unknown extension; rows or cols out of 1..MAX_GRID.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name such as {path / 'preview.png'}")
    if not path.suffix:
        path = path.with_name(path.name + ".png")  # what matplotlib would write: say so
    if path.suffix.lower() not in _PREVIEW_FORMATS:
        raise ValueError(f"{path}: unknown image format {path.suffix}; use one of {', '.join(_PREVIEW_FORMATS)}")
    for flag, n in (("rows", rows), ("cols", cols)):
        if not 1 <= n <= MAX_GRID:
            raise ValueError(f"--{flag} must be in 1..{MAX_GRID}, got {n}")
    return path


def _grid_picks(labels: np.ndarray, num_classes: int, rows: int, cols: int) -> list[int]:
    """The image index for each cell of a rows x cols grid, row by row: row r shows the first
    `cols` images of class r % num_classes; -1 marks a cell its class has no image for."""
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    return [
        int(by_class[r % num_classes][c]) if c < len(by_class[r % num_classes]) else -1
        for r in range(rows)
        for c in range(cols)
    ]


def _grid_figure(ds: Dataset, rows: int, cols: int):
    """A matplotlib figure of rows x cols training images of `ds` (see `_grid_picks`), each titled
    with its class name, the dataset's summary above them."""
    import matplotlib.pyplot as plt

    x = _unnormalise(ds.train_x, ds.mean, ds.std).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    y = ds.train_y.numpy()
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.25 * rows), squeeze=False)
    for ax, i in zip(axes.ravel(), _grid_picks(y, ds.num_classes, rows, cols)):
        ax.axis("off")
        if i < 0:
            continue
        img = x[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(ds.classes[y[i]] if ds.classes else str(y[i]), fontsize=7)
    fig.suptitle(f"{ds.name}: {ds.summary().split(': ', 1)[1]}", fontsize=8)
    fig.tight_layout()
    return fig


def _unnormalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Pixels in [0, 1] units again: the normalisation by (mean, std) undone."""
    return x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
