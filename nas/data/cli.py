"""`python -m nas.data`: describe a dataset in one line, or write a preview of its images."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli import ArgumentParser, command
from nas.data.dataset import DATASETS, load_dataset
from nas.data.preview_grid import preview
from nas.errors import NasError, UsageError


@command
def main(argv: list[str]) -> None:
    """`python -m nas.data --preview PNG [--dataset NAME]`: a picture of a few samples."""
    ap = ArgumentParser(
        prog="python -m nas.data",
        description="Describe a dataset or write a PNG grid of a few of its training images.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--dataset", default="symmetry", help=f"one of {', '.join(DATASETS)}")
    ap.add_argument("--data-dir", type=Path, default=None, help="folder with the dataset's files")
    ap.add_argument("--image-size", type=int, default=None, help="side in pixels (default: native)")
    ap.add_argument("--preview", type=Path, default=None, help="write a sample grid to this PNG")
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--cols", type=int, default=8)
    args = ap.parse_args(argv)
    try:
        if args.preview is None:
            print(load_dataset(args.dataset, args.data_dir, image_size=args.image_size).summary())
        else:
            out = preview(
                args.dataset, args.preview, args.data_dir, rows=args.rows, cols=args.cols, image_size=args.image_size
            )
            print(f"wrote {out}")
    except OSError as e:
        e.filename = e.filename or args.preview
        e.add_note("nothing was written")
        raise
    except ValueError as e:
        if isinstance(e, NasError):
            raise
        raise UsageError(str(e)) from None
