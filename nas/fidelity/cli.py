"""`python -m nas.fidelity RUN`: does the proxy rank architectures like the training you deploy?

The command line of `nas.fidelity.check.check`: its options, one line and exit 2 for a user error,
130 (143 for SIGTERM) for an interruption and 1 for a failed write, each naming the command that
continues; then the report's table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli import (
    ArgumentParser,
    add_resource_options,
    check_place,
    command,
    shell_command,
)
from nas.fidelity.check import FIDELITY_JSON, PICKS, FidelityOptions, check
from nas.fidelity.reference import SCORED_ON
from nas.fidelity.report import format_table

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m nas.fidelity",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", type=Path, help="the run folder (results/<run>)")
    p.add_argument("--archs", type=int, default=12, help="architectures to check: the front, then spread over accuracy")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="the reference training's epochs; default: those of the deployment the run's proxy was "
        "calibrated against (nas.calibrate), else 4x the run's proxy epochs",
    )
    p.add_argument(
        "--seeds", type=int, default=2, help="seeds per architecture and budget (the run's seed + 0, 1, ...)"
    )
    p.add_argument(
        "--same-subset",
        action="store_true",
        help="compare with longer training on the proxy's own training subset (the old check: the short "
        "schedule's effect alone) instead of deployment-like training on the whole training split",
    )
    p.add_argument(
        "--pick",
        choices=PICKS,
        default="spread",
        help="the architectures off the front: spread over accuracy (for the rank correlations), or the "
        "next non-domination ranks (the pool in which the front's precision and recall mean most)",
    )
    p.add_argument(
        "--score-on",
        choices=SCORED_ON,
        default="val",
        help="score the deployment-like training on the run's validation split, or train it on every "
        "training image and score it on the official test split, which no search or calibration selects "
        "on (a final measurement, kept in its own records file)",
    )
    p.add_argument(
        "--images",
        type=int,
        default=None,
        help="train deployment-like on this many training images (a seeded subset), for data too large to "
        "train whole on this machine; default: all",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="the dataset's folder; default: the run's")
    add_resource_options(p)
    return p


@command
def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    again = shell_command("fidelity", *argv)  # the same check, every option kept
    if args.run.exists():
        check_place(args.run, flag="")  # the guard every command that writes shares
    try:
        summary = check(FidelityOptions(**vars(args)), command=again)
    except KeyboardInterrupt as e:
        e.add_note(f"interrupted; continue with: {again}")
        raise
    except OSError as e:  # a full disk, a run folder gone read-only: what is recorded stays
        e.filename = e.filename or args.run
        e.add_note(f"the check stopped; continue with: {again}")
        raise
    print(format_table(summary))
    print(f"\nwrote {Path(summary['run']) / FIDELITY_JSON}; dashboard: {shell_command('dashboard', summary['run'])}")
