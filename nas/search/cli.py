"""`python -m nas.search`: multi-objective architecture search with Optuna samplers on Ray Tune.

    python -m nas.search --budget 100                       # symmetry task, accuracy vs MACs, on this machine
    python -m nas.search --space search_spaces/cifar_resnet.yaml --dataset cifar10 --data-dir ~/data \\
        --objectives accuracy latency --max-params 2e6 --gpus-per-trial 0.5
    python -m nas.search --resume results/<run>             # after Ctrl-C or a crash

The command line (`build_parser`, its argument groups) and `main`, which maps the search's ends
to exit codes: a bad option 2, Ctrl-C 130, SIGTERM 143, a file-system fault 1 (with the command
that continues).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from nas.cli import (
    ArgumentParser,
    amount,
    command,
    shell_command,
)
from nas.run.pareto import COSTS
from nas.search.driver import search
from nas.search.options import SAMPLERS, SearchOptions
from nas.search.promote import add_promote_arguments

__all__ = ["build_parser", "main"]


def build_parser(explicit_only: bool = False) -> argparse.ArgumentParser:
    """The command line; with `explicit_only`, options not given are absent from the parse."""
    d = SearchOptions()

    def dflt(name: str) -> Any:
        return argparse.SUPPRESS if explicit_only else getattr(d, name)

    p = ArgumentParser(
        prog="python -m nas.search",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _search_arguments(p, dflt)
    _proxy_arguments(p, dflt)
    add_promote_arguments(p, dflt)
    _resource_arguments(p, dflt)
    _run_folder_arguments(p, dflt)
    return p


def _search_arguments(p: argparse.ArgumentParser, dflt: Callable[[str], Any]) -> None:
    """What to search: the budget, the space, the objectives and limits, the sampler, seeds and racing."""
    g = p.add_argument_group("what to search")
    g.add_argument("--budget", type=int, default=dflt("budget"), help="trials (distinct architectures) to evaluate")
    g.add_argument(
        "--time-budget", type=float, default=dflt("time_budget"), help="stop starting trials after this many seconds"
    )
    g.add_argument("--space", type=Path, default=dflt("space"), help="search-space YAML")
    g.add_argument(
        "--objectives",
        nargs="+",
        default=dflt("objectives"),
        help=f"accuracy plus one or more of {', '.join(COSTS)} (space- or comma-separated)",
    )
    g.add_argument("--max-macs", type=amount, default=dflt("max_macs"), help="hard limit on MACs per image (2e6, 2M)")
    g.add_argument("--max-params", type=amount, default=dflt("max_params"), help="hard limit on parameters (50k)")
    g.add_argument(
        "--max-latency-ms", type=amount, default=dflt("max_latency_ms"), help="hard limit on latency (batch 1)"
    )
    g.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=dflt("sampler"),
        help="how new architectures are proposed: evolution (multi-objective regularized evolution) "
        "or one of Optuna's samplers",
    )
    g.add_argument(
        "--seed", type=int, default=dflt("seed"), help="seeds the sampler, data split and every proxy training"
    )
    g.add_argument(
        "--repeats",
        type=int,
        default=dflt("repeats"),
        help="evaluate every architecture with this many seeds (its mean and standard error rank it)",
    )
    g.add_argument(
        "--race",
        type=int,
        default=dflt("race"),
        help="racing: evaluate the front's points, and those within its noise, with this many seeds "
        "(1: off); re-evaluations come on top of --budget",
    )
    g.add_argument(
        "--race-share",
        type=float,
        default=dflt("race_share"),
        help="re-evaluations of points within the front's noise (beyond the front's own), at most this "
        "share of --budget",
    )
    g.add_argument(
        "--early-stop",
        action="store_true",
        default=dflt("early_stop"),
        help="stop weak trials early (ASHA on validation accuracy); stopped trials never enter the front",
    )


def _proxy_arguments(p: argparse.ArgumentParser, dflt: Callable[[str], Any]) -> None:
    """The proxy training's overrides of the space file's proxy section."""
    g = p.add_argument_group("proxy training (defaults: the space file's proxy section)")
    g.add_argument(
        "--proxy",
        type=Path,
        default=dflt("proxy"),
        metavar="FILE",
        help="a proxy fitted to your data by python -m nas.calibrate (its proxy.yaml) in place of the "
        "space file's proxy section; the flags below still override it",
    )
    g.add_argument(
        "--dataset", default=dflt("dataset"), help="digits | cifar10 | cifar100 | mnist | fashion-mnist | imagefolder"
    )
    g.add_argument("--data-dir", type=Path, default=dflt("data_dir"), help="folder with the dataset as distributed")
    g.add_argument("--epochs", type=int, default=dflt("epochs"), help="proxy epochs per trial")
    g.add_argument(
        "--subset", type=float, default=dflt("subset"), help="training images per trial: a count (>1) or a fraction"
    )
    g.add_argument("--batch-size", type=int, default=dflt("batch_size"), help="proxy batch size")


def _resource_arguments(p: argparse.ArgumentParser, dflt: Callable[[str], Any]) -> None:
    """The resources: each trial's CPUs and GPUs, and the Ray cluster."""
    g = p.add_argument_group("resources")
    g.add_argument(
        "--cpus-per-trial", type=float, default=dflt("cpus_per_trial"), help="CPUs per trial (torch threads)"
    )
    g.add_argument(
        "--gpus-per-trial",
        default=dflt("gpus_per_trial"),
        help="GPUs per trial, fractions allowed, or auto: each trial gets the share of a GPU its measured "
        "training memory needs (steps of 1/8), and one that runs out of memory is retried once on a "
        "whole GPU; default: 1 when CUDA is present, else 0",
    )
    g.add_argument(
        "--gpu-memory-mb",
        type=float,
        default=dflt("gpu_memory_mb"),
        help="with --gpus-per-trial auto: the memory of the cluster's GPUs; default: this machine's GPU",
    )
    g.add_argument(
        "--max-concurrent", type=int, default=dflt("max_concurrent"), help="trials at once; default: as resources allow"
    )
    g.add_argument(
        "--address",
        default=dflt("address"),
        help="join an existing Ray cluster ('auto' or host:port); default: a local Ray for this run",
    )
    g.add_argument(
        "--max-failures",
        type=int,
        default=dflt("max_failures"),
        help="stop the search after more failed trials than this",
    )


def _run_folder_arguments(p: argparse.ArgumentParser, dflt: Callable[[str], Any]) -> None:
    """The run folder: its name and place, resuming one, and the progress display."""
    g = p.add_argument_group("run folder")
    g.add_argument("--name", default=dflt("name"), help="run folder name under --results-dir; default: a timestamp")
    g.add_argument("--results-dir", type=Path, default=dflt("results_dir"), help="where run folders go")
    g.add_argument(
        "--resume",
        default=dflt("resume"),
        metavar="RUN",
        help="continue RUN (a run folder, or its name under --results-dir) to its budget",
    )
    g.add_argument(
        "--quiet",
        action="store_true",
        default=dflt("quiet"),
        help="no progress: neither the line per trial nor the status of running trials",
    )


@command
def main(argv: list[str]) -> None:
    """`python -m nas.search`: the frame (nas.cli.command) turns what ends it into one line and a status;
    a stop or a fault in the middle already says what was kept and how to continue."""
    opts = SearchOptions.from_dict(vars(build_parser().parse_args(argv)))
    explicit = set(vars(build_parser(explicit_only=True).parse_args(argv)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search(opts, explicit, command=shell_command("search", *argv))
