"""Driver scale: the search driver's own milliseconds per trial as a run grows to 10,000 architectures.

    python benchmarks/driver_scale.py                           # default space and sampler, 10,000 architectures
    python benchmarks/driver_scale.py --archs 1000 --sampler tpe
    python benchmarks/driver_scale.py --samplers evolution tpe random --archs 3000

One process drives what a search's driver runs per trial, without Ray and without training:
`ArchSearcher.suggest` (ask: racing, the sampler's proposal, the study's RUNNING trial in the
journal), `ArchSearcher.on_trial_complete` (tell: the archive, Optuna told the mean), and the
`Recorder` (record: the trials.jsonl append and the weights file; front: the in-memory front,
pareto.json when it changed). The evaluation is a stand-in, excluded from the timings: a cheap
deterministic function of the architecture plus seeded noise (racing sees real seed noise), with
the architecture's real params and MACs from `nas.net.cost` (cached on disk per space, so a second run
costs nothing). `--concurrency` trials are in flight, finishing in the order they started. Every
trial writes the run folder as a search does (fsynced appends, the Optuna journal).

The table gives driver milliseconds per evaluation over the `--window` evaluations before each
checkpoint (by architectures done), split into ask, tell, record and front, and the total's ratio to
the first checkpoint's; then the driver's CPU milliseconds (its own work, without the waits for
fsync or for other processes on a loaded machine) and their ratio. `run s` is the wall time of the
whole loop so far, stand-in evaluations included. Goal: <= 20 ms per trial at 10,000 and <= 2x the figure at 100, so that one
driver feeds >= 50 trials a second.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import optuna
import torch

from nas.run.folder import RunConfig, RunFolder, TrialRecord
from nas.search.options import DEFAULT_SPACE, SearchOptions
from nas.search.recorder import Recorder
from nas.search.searcher import ArchSearcher
from nas.search.state import RunState
from nas.search.study import open_study
from nas.space import SearchSpace, load_space

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "acmix-nas"


class Costs:
    """Real params and MACs of an architecture (nas.net.cost), cached on disk by space fingerprint."""

    def __init__(self, space: SearchSpace, num_classes: int):
        self.path = CACHE / f"costs-{space.fingerprint}-{num_classes}.json"
        self.num_classes = num_classes
        self.table: dict[str, list[int]] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.new = 0

    def __call__(self, arch) -> tuple[int, int]:
        if arch.arch_id not in self.table:
            from nas.net.cost import count_macs, count_params
            from nas.net.model import create_model

            model = create_model(arch, num_classes=self.num_classes)
            self.table[arch.arch_id] = [count_params(model), count_macs(model, (arch.in_chans, *arch.input_size))[0]]
            self.new += 1
            if self.new % 500 == 0:
                self.save()
        return tuple(self.table[arch.arch_id])

    def save(self) -> None:  # atomic: several benchmarks may share the cache
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.table))
        os.replace(tmp, self.path)


def stand_in(config: dict, costs: Costs) -> dict:
    """The trainable's final result for one evaluation, without training: accuracy rises with the
    log of the MACs, plus an architecture-specific offset (its id's hash) and seed noise."""
    from nas.net.arch import Arch

    arch = Arch.from_dict(config["arch"])
    params, macs = costs(arch)
    offset = int(hashlib.sha256(arch.arch_id.encode()).hexdigest()[:8], 16) / 2**32 - 0.5
    noise = random.Random(f"{arch.arch_id}-{config['seed']}").gauss(0.0, 0.01)
    accuracy = min(1.0, max(0.0, 0.55 + 0.08 * math.log10(macs / 1e5) + 0.06 * offset + noise))
    return final_result(config, accuracy, params, macs, seconds=1.0)


def final_result(config: dict, accuracy: float, params: int, macs: int, seconds: float) -> dict:
    """The trainable's last report for a complete one-epoch evaluation of `config` (the whole record, `final`)."""
    record = TrialRecord(
        number=-1,
        arch_id=config["arch_id"],
        arch=config["arch"],
        status="complete",
        accuracy=accuracy,
        params=params,
        macs=macs,
        acc_per_epoch=[accuracy],
        epochs=1,
        seconds=seconds,
        train_seconds=seconds,
        seed=config["seed"],
        device="cpu",
    )
    return {"accuracy": accuracy, "epoch": 1, "final": True, "status": "complete", "record": asdict(record)}


class Timer:
    """Wall and CPU milliseconds spent in wrapped methods, by phase (CPU time leaves out waits:
    fsync, and other processes on a loaded machine)."""

    def __init__(self):
        self.ms: dict[str, float] = defaultdict(float)

    def wrap(self, obj, name: str, phase: str) -> None:
        fn = getattr(obj, name)

        def timed(*args, **kwargs):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms[phase] += 1000 * (time.perf_counter() - t)
                self.ms[phase + " cpu"] += 1000 * (time.process_time() - c)

        setattr(obj, name, timed)


def drive(
    space: SearchSpace,
    sampler: str,
    archs: int,
    concurrency: int,
    race: int,
    seed: int,
    checkpoints: list[int],
    window: int,
    costs: Costs,
    folder: Path,
    evaluate=stand_in,
    scale: float | None = None,
    quiet: bool = False,
) -> list[dict]:
    """Run the driver to `archs` architectures; per checkpoint, milliseconds per evaluation by phase.
    `evaluate(config, costs)` is the trainable's final result (default: the stand-in); `scale` the
    hypervolume's MACs scale (default: twice the reference points' largest)."""
    from safetensors.torch import save_file

    opts = SearchOptions(
        space=space.path, sampler=sampler, budget=archs, race=race, seed=seed, objectives=["accuracy", "macs"]
    ).checked()
    run = RunFolder(folder)
    scale = scale or 2.0 * max(costs(a)[1] for a in space.reference_points().values())
    run.write_config(
        RunConfig(
            name=folder.name,
            objectives=opts.objectives,
            sampler=sampler,
            seed=seed,
            space=space.to_dict(),
            hypervolume_scale={"macs": scale},
            options=opts.to_dict(),
        )
    )
    study, _, queue, _ = open_study(run, opts, space, [])
    searcher = ArchSearcher(
        study,
        space,
        RunState(opts.objectives),
        {},
        seed=seed,
        budget=archs,
        race=race,
        race_share=opts.race_share,
        queue=queue,
    )
    recorder = Recorder(run, searcher.state, archs, scales={"macs": scale}, quiet=True, epochs=1)
    weights = folder / "stand-in-weights"  # a proxy-sized weights file (~50k parameters), copied per architecture
    weights.mkdir()
    save_file({"w": torch.zeros(50_000)}, str(weights / "model.safetensors"))
    checkpoint = SimpleNamespace(path=str(weights))

    timer = Timer()
    timer.wrap(searcher, "suggest", "ask")
    timer.wrap(searcher, "on_trial_complete", "tell")
    timer.wrap(recorder, "on_trial_complete", "recorder")
    timer.wrap(recorder, "on_checkpoint", "weights")
    timer.wrap(run, "append", "append")

    rows, marks, in_flight, n = [], sorted(checkpoints), [], 0
    history: list[tuple[int, dict[str, float]]] = []  # (architectures done, cumulative ms by phase) per evaluation
    start = time.perf_counter()
    while True:
        while len(in_flight) < concurrency:
            config = searcher.suggest(f"t{n}")
            if not isinstance(config, dict):
                break
            in_flight.append((f"t{n}", config))
            n += 1
        if not in_flight:
            break
        trial_id, config = in_flight.pop(0)
        result = evaluate(config, costs)
        trial = SimpleNamespace(trial_id=trial_id, config=config, last_result=result)
        searcher.on_trial_complete(trial_id, result)
        recorder.on_checkpoint(0, [], trial, checkpoint)
        recorder.on_trial_complete(0, [], trial)
        history.append((len(recorder.archive), dict(timer.ms)))
        while marks and len(recorder.archive) >= marks[0]:
            rows.append(_row(marks.pop(0), history, window, time.perf_counter() - start))
            if not quiet:
                print(
                    f"  {sampler}: {rows[-1]['archs']:>6} architectures, {rows[-1]['ms']:.2f} ms per evaluation",
                    flush=True,
                )
    costs.save()
    rows.append(
        {
            "sampler": sampler,
            "proposals": dict(searcher.proposals),
            "evaluations": len(history),
            "journal_trials": len(optuna.load_study(study_name="acmix-nas", storage=run.storage()).trials),
            "hypervolume": recorder.archive.hypervolume({"macs": scale}),
            "seconds": sum(r.seconds for r in run.trials()),
        }
    )
    return rows


def _row(mark: int, history: list[tuple[int, dict[str, float]]], window: int, wall: float) -> dict:
    last = len(history) - 1
    first = max(0, last - window)
    a, b = history[first][1], history[last][1]
    count = max(1, last - first)
    per = {k: (b.get(k, 0.0) - a.get(k, 0.0)) / count for k in set(a) | set(b)}
    for cpu in ("", " cpu"):
        per["front" + cpu] = per.pop("recorder" + cpu) - per["append" + cpu]  # the recorder besides the append
        per["record" + cpu] = per.pop("append" + cpu) + per.pop("weights" + cpu)
    total = per["ask"] + per["tell"] + per["record"] + per["front"]
    cpu = per["ask cpu"] + per["tell cpu"] + per["record cpu"] + per["front cpu"]
    return {"archs": mark, "evaluations": last + 1, **per, "ms": total, "cpu": cpu, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--space", default=str(DEFAULT_SPACE))
    parser.add_argument("--samplers", nargs="+", default=[SearchOptions().sampler])
    parser.add_argument("--archs", type=int, default=10_000, help="architectures to reach")
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[100, 1000, 3000, 10_000])
    parser.add_argument("--window", type=int, default=100, help="evaluations averaged before each checkpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="trials in flight")
    parser.add_argument("--race", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--history-window",
        type=int,
        default=None,
        help="trials a TPE or GP ask reads (nas.search.study.HISTORY_WINDOW; 0: all of them)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep each run folder as KEEP/<sampler> (a synthetic run, e.g. for the dashboard)",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    if args.history_window is not None:
        import nas.search.study

        nas.search.study.HISTORY_WINDOW = args.history_window or None
    space = load_space(ROOT / args.space if not Path(args.space).is_absolute() else args.space)
    costs = Costs(space, num_classes=4)
    checkpoints = [c for c in args.checkpoints if c <= args.archs]
    results = {}
    for sampler in args.samplers:
        with tempfile.TemporaryDirectory() as tmp:
            folder = args.keep / sampler if args.keep else Path(tmp) / "run"
            results[sampler] = drive(
                space,
                sampler,
                args.archs,
                args.concurrency,
                args.race,
                args.seed,
                checkpoints,
                args.window,
                costs,
                folder,
            )
    print(
        f"\n{args.space}: driver milliseconds per evaluation (mean of the {args.window} before each checkpoint), "
        f"{args.concurrency} in flight, --race {args.race}"
    )
    print(
        f"{'sampler':10} {'archs':>6} {'evals':>6} {'ask':>7} {'tell':>7} {'record':>7} {'front':>7} {'total':>7} "
        f"{'x first':>7} {'cpu ms':>7} {'x first':>7} {'run s':>6}"
    )
    for sampler, rows in results.items():
        *rows, info = rows
        for r in rows:
            print(
                f"{sampler:10} {r['archs']:6d} {r['evaluations']:6d} {r['ask']:7.2f} {r['tell']:7.2f} "
                f"{r['record']:7.2f} {r['front']:7.2f} {r['ms']:7.2f} {r['ms'] / rows[0]['ms']:7.2f} "
                f"{r['cpu']:7.2f} {r['cpu'] / rows[0]['cpu']:7.2f} {r['wall']:6.0f}"
            )
        print(
            f"{sampler:10} {info['evaluations']} evaluations; study trials {info['journal_trials']}; "
            f"proposals {info['proposals']}; stand-in hypervolume {info['hypervolume']:.4f}"
        )


if __name__ == "__main__":
    sys.exit(main())
