"""`python -m nas.dashboard RUN`: write the dashboard's files, say what they hold, then serve
optuna-dashboard on the run's study if --serve asks (bound to 127.0.0.1 unless --host says otherwise)."""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna

from nas.cli import ArgumentParser, command
from nas.dashboard.serve import port_in_use, require_study, serve
from nas.dashboard.write import write_dashboard
from nas.run.folder import RunError, RunFolder


def _parser() -> argparse.ArgumentParser:
    """The command line of `python -m nas.dashboard`."""
    ap = ArgumentParser(
        prog="python -m nas.dashboard",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write dashboard.html (self-contained, offline) and pareto.png for a run folder; "
        "--serve also starts optuna-dashboard on its Optuna study.",
    )
    ap.add_argument("run", type=Path, help="run folder, e.g. results/RUN")
    ap.add_argument(
        "--out", type=Path, default=None, help="folder for dashboard.html and pareto.png; None means the run folder"
    )
    ap.add_argument("--no-png", action="store_true", help="skip pareto.png")
    ap.add_argument("--serve", action="store_true", help="then start optuna-dashboard on the run's study")
    ap.add_argument("--host", default="127.0.0.1", help="address optuna-dashboard binds to (0.0.0.0: every interface)")
    ap.add_argument("--port", type=int, default=8080, help="port of optuna-dashboard")
    ap.add_argument("--storage", default=None, help="an Optuna storage URL to serve instead of the run's study.journal")
    return ap


def _refuse_serving(run: RunFolder, args: argparse.Namespace) -> None:
    """--serve refused before anything is written or said about serving: no study to serve, or a
    port out of range or taken."""
    require_study(run, args.storage)
    if not 0 <= args.port <= 65535:
        raise RunError(f"--port must be in 0..65535, got {args.port}")
    busy = port_in_use(args.host, args.port)
    if busy:
        raise RunError(f"{busy}; pick another --port")


@command
def main(argv: list[str]) -> None:
    """`python -m nas.dashboard`: write the files, say what they hold, then serve if asked."""
    args = _parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = RunFolder(args.run).require()
    if args.serve:
        _refuse_serving(run, args)
    try:
        files = write_dashboard(run, args.out, png=not args.no_png)
    except OSError as e:  # a read-only run folder, a full disk: each file is replaced whole or not at all
        e.filename = e.filename or args.out or args.run
        e.add_note("nothing was written" + ("" if args.out else "; give --out DIR to write the dashboard elsewhere"))
        raise
    s = files.summary
    print(
        f"wrote {files.html} ({files.html.stat().st_size / 1e6:.1f} MB)"
        + (f" and {files.png}" if files.png else "")
        + f" in {files.seconds:.1f} s: {s['trials']} trials, {s['front']} on the front, "
        f"hypervolume {s['hypervolume']:.4f}",
        flush=True,
    )
    if args.serve:
        require_study(run, args.storage)
        print(f"serving optuna-dashboard at http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
        try:
            serve(run, args.host, args.port, args.storage)
        except OSError as e:
            raise RunError(f"cannot serve on {args.host}:{args.port} ({e.strerror or e})") from None
