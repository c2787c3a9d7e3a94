"""`python -m nas.export`: select, export and check one trial of a run, or --check an exported folder.

The command's options (`_parser`), its run (`main`), and its last lines (`_report`): what was
written and how to load it. Exit codes: 0 written, 1 timm reloads the folder differently; the
command frame's (`nas.cli.command`) for bad input, a file-system fault, SIGTERM and Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas.cli import ArgumentParser, amount, command
from nas.export.build import ExportResult, export
from nas.export.card import accuracy_text, value_text
from nas.export.folder import ExportError, load_exported
from nas.export.onnx import ONNX_FILE, ONNX_RTOL, export_onnx
from nas.export.selection import LIMITS, PICKS, select
from nas.run.folder import RunFolder


def _parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="python -m nas.export",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Export one trial of a run as a timm local folder (config.json, model.safetensors, README.md); "
        "load it with timm.create_model('local-dir:DIR', pretrained=True) after `import nas`.",
    )
    ap.add_argument("run", type=Path, nargs="?", help="run folder, e.g. results/RUN")
    ap.add_argument("--arch-id", default=None, help="export this trial (an arch id or a unique prefix)")
    ap.add_argument(
        "--pick",
        choices=PICKS,
        default=None,
        help="which front point: knee (closest to the ideal point, objectives normalised over the "
        "front), max-accuracy or min-cost; None means knee, or max-accuracy under a --max-* limit",
    )
    ap.add_argument("--max-macs", type=amount, default=None, help="only trials with at most this many MACs (2e6, 2M)")
    ap.add_argument("--max-params", type=amount, default=None, help="only trials with at most this many parameters")
    ap.add_argument("--max-latency-ms", type=amount, default=None, help="only trials at most this slow (ms)")
    ap.add_argument("--max-memory-mb", type=amount, default=None, help="only trials with at most this peak memory (MB)")
    ap.add_argument("--out", type=Path, default=None, help="output folder; None means RUN/exports/<arch id>")
    ap.add_argument(
        "--force", action="store_true", help="replace a non-empty output folder (whole: its old files do not stay)"
    )
    ap.add_argument(
        "--retrain-epochs",
        type=int,
        default=0,
        help="train this many more epochs on the run's dataset (proxy hyper-parameters) before saving",
    )
    ap.add_argument("--data-dir", type=Path, default=None, help="dataset folder for --retrain-epochs (not for digits)")
    ap.add_argument("--device", default="auto", help="device for --retrain-epochs: auto, cpu, cuda, cuda:1")
    ap.add_argument(
        "--onnx",
        action="store_true",
        help="also write model.onnx beside model.safetensors, checked with onnxruntime (extra 'onnx')",
    )
    ap.add_argument(
        "--check",
        type=Path,
        default=None,
        metavar="DIR",
        help="only check that an exported folder loads (weights match config.json) and exit",
    )
    return ap


@command
def main(argv: list[str]) -> int:
    """`python -m nas.export`: select, export and check one trial of a run (or --check a folder).
    Exit codes: 0 written, 1 timm reloads it differently, 2 a user error, the frame's for a fault or a stop."""
    args = _parser().parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.check is not None:
        return _check(args.check)
    try:
        res = _export_of_args(args)
    except OSError as e:  # a read-only run folder, a full disk: the export folder is written whole or not at all
        e.filename = e.filename or args.out or args.run
        e.add_note("nothing was written" + ("" if args.out else "; give --out DIR to write the export elsewhere"))
        raise
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the half-written folder is already removed
        e.add_note("interrupted: nothing was written")
        raise
    return _report(res)


def _check(path: Path) -> int:
    """--check: load an exported folder (weights checked against config.json) and say what it holds."""
    model = load_exported(path)
    n = sum(p.numel() for p in model.parameters())
    print(f"{path}: ok, acmix_nas {model.arch.arch_id}, {n:,} parameters, {model.num_classes} classes")
    return 0


def _export_of_args(args: argparse.Namespace) -> ExportResult:
    """The CLI's export: check the arguments, select the trial (and say which), write the folder,
    and with --onnx the checked model.onnx beside it.

    Raises:
        ExportError, RunError: a user error (exit 2); OSError: a folder that cannot be written.
    """
    if args.run is None:
        raise ExportError("give a run folder (python -m nas.export results/RUN) or --check DIR")
    if args.retrain_epochs < 0:
        raise ExportError(f"--retrain-epochs must be >= 0, got {args.retrain_epochs}")
    run = RunFolder(args.run).require()
    records = run.trials()
    if not records:
        raise ExportError(f"{run.path}: no finished trials yet")
    selection = select(
        records,
        run.objectives(),
        arch_id=args.arch_id,
        pick=args.pick,
        limits={obj: getattr(args, flag) for flag, obj in LIMITS.items()},
        has_weights=lambda r: run.weights_of(r) is not None,
    )
    r = selection.record
    print(
        f"selected {r.arch_id} (trial #{r.number}, {selection.how}): accuracy {accuracy_text(selection)}, "
        f"{value_text(r.macs)} MACs, {value_text(r.params)} params",
        flush=True,
    )
    res = export(
        run,
        selection,
        args.out,
        retrain_epochs=args.retrain_epochs,
        data_dir=args.data_dir,
        device=args.device,
        force=args.force,
    )
    if args.onnx:
        exported = load_exported(res.path)
        onnx_path = export_onnx(exported, res.path / ONNX_FILE, tuple(exported.pretrained_cfg["input_size"]))
        print(f"wrote {onnx_path}; onnxruntime gives the same outputs (within {ONNX_RTOL:g} of their scale)")
    return res


def _report(res: ExportResult) -> int:
    """The CLI's last lines: what was written and how to load it (0), or that timm reloads the
    folder to different outputs (1)."""
    if res.max_abs_diff > 1e-5:
        print(
            f"error: {res.path}: timm reloads it to different outputs (max |diff| {res.max_abs_diff:.3g})",
            file=sys.stderr,
        )
        return 1
    print(
        f"wrote {res.path} (config.json, model.safetensors, README.md) in {res.seconds:.1f} s; "
        f"timm reloads it to the same outputs"
    )
    print(f"  import timm, nas; timm.create_model({'local-dir:' + str(res.path)!r}, pretrained=True)")
    return 0
