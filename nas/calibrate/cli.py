"""`python -m nas.calibrate`: fit the search's proxy to your data, against the training you deploy.

The command line of `nas.calibrate.run.calibrate`: its options, one line and exit 2 for a user
error, 130 for Ctrl-C (with the command that continues), then the report's table and where it went.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.calibrate.report import CALIBRATION_JSON, PROXY_YAML, format_table
from nas.calibrate.run import CalibrateOptions, calibrate
from nas.cli import ArgumentParser, add_resource_options, check_place, command

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    d = CalibrateOptions()
    p = ArgumentParser(
        prog="python -m nas.calibrate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_what_options(p, d)
    _add_candidate_options(p, d)
    add_resource_options(p)
    g = p.add_argument_group("where")
    g.add_argument("--name", default=None, help="folder name under --results-dir; default: calibrate-<space>-<dataset>")
    g.add_argument("--results-dir", type=Path, default=d.results_dir, help="where the folder goes")
    return p


def _add_what_options(p: argparse.ArgumentParser, d: CalibrateOptions) -> None:
    """The options of what to calibrate: the space, the data, the seed, the panel and its seeds."""
    g = p.add_argument_group("what to calibrate")
    g.add_argument("--space", type=Path, default=d.space, help="search-space YAML")
    g.add_argument("--dataset", default=None, help="the dataset (as for nas.search); default: the space proxy's")
    g.add_argument("--data-dir", type=Path, default=None, help="folder with the dataset as distributed")
    g.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="the data split's seed (use the search's --seed), the panel's draw and the first training seed",
    )
    g.add_argument(
        "--archs",
        type=int,
        default=d.archs,
        help="the panel: the space's reference points, then architectures spread over MACs",
    )
    g.add_argument("--seeds", type=int, default=d.seeds, help="training seeds per architecture and setting")


def _add_candidate_options(p: argparse.ArgumentParser, d: CalibrateOptions) -> None:
    """The options of the candidate proxies, the deployment they are measured against, the bar
    they qualify by and the time budget."""
    g = p.add_argument_group("the candidate proxies and the deployment they are measured against")
    g.add_argument("--subsets", type=int, nargs="+", default=d.subsets, help="training images of the candidates")
    g.add_argument("--epochs", type=int, nargs="+", default=d.epochs, help="epochs of the candidates")
    g.add_argument(
        "--image-sizes",
        type=int,
        nargs="+",
        default=None,
        help="image sizes of the candidates; default: the networks' input size and 3/4 of it, where the "
        "space's strides allow",
    )
    g.add_argument(
        "--deploy-epochs",
        type=int,
        default=None,
        help="deployment-like training's epochs; default: 4x the space proxy's",
    )
    g.add_argument(
        "--deploy-subset",
        type=int,
        default=None,
        help="deployment-like training on this many training images; default: the whole training split",
    )
    g.add_argument(
        "--share",
        type=float,
        default=d.share,
        help="a qualifying proxy's τ against deployment, as a share of deployment's test-retest τ",
    )
    g.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="the training's wall time, from the plan on: a plan estimated over it is refused before training, "
        "naming settings that fit (see --partial); no evaluation starts after it",
    )
    g.add_argument(
        "--partial",
        action="store_true",
        help="with --time-budget: train what fits in it and stop starting evaluations then (the same command "
        "continues), instead of refusing a plan over it",
    )
    g.add_argument(
        "--progress-every",
        type=float,
        default=d.progress_every,
        help="seconds between two progress lines of one running evaluation (0: every epoch)",
    )


@command
def main(argv: list[str]) -> None:
    opts = CalibrateOptions(**vars(build_parser().parse_args(argv)))
    check_place(opts.results_dir, opts.name)  # the guard every command that writes shares
    from nas.tune.session import cluster_joined  # Ray: once the calibration starts

    try:
        with cluster_joined(opts.address):  # a cluster that does not answer: one line, no folder made
            report = calibrate(opts, command="python -m nas.calibrate " + " ".join(argv))
    except (KeyboardInterrupt, OSError) as e:  # OSError: a full disk, a Ray that died under it
        e.add_note(
            f"{'interrupted' if isinstance(e, KeyboardInterrupt) else 'the calibration stopped'}; "
            f"continue with: python -m nas.calibrate {' '.join(argv)}"
        )
        raise
    print(format_table(report))
    choice = report["pick"] or report["closest"]
    folder = Path(report["folder"])
    print(
        f"\nwrote {folder / CALIBRATION_JSON}"
        + (
            f" and {folder / PROXY_YAML}; search with: python -m nas.search --proxy {folder / PROXY_YAML}"
            if choice
            else ""
        )
    )
