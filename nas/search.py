"""`python -m nas.search`: multi-objective architecture search with Optuna samplers on Ray Tune.

    python -m nas.search --budget 100                       # digits, accuracy vs MACs, on this machine
    python -m nas.search --space search_spaces/cifar_resnet.yaml --dataset cifar10 --data-dir ~/data \\
        --objectives accuracy latency --max-params 2e6 --gpus-per-trial 0.5
    python -m nas.search --resume results/<run>             # after Ctrl-C or a crash

Each Ray Tune trial is one architecture, sampled define-by-run from the YAML space by an Optuna
sampler (OptunaSearch): it is built as a timm model, costed (params, MACs, latency, peak memory),
trained as a short proxy and scored on the validation split. The space's reference points
(all-conv, all-ACmix, the paper's placement) are evaluated first. Everything lands in
results/<run>/ (see nas/results.py), with trials.jsonl as the record of what is done.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import torch

from nas.arch import Arch
from nas.data import DataError, Dataset, load_dataset
from nas.results import OBJECTIVES, STUDY_NAME, RunError, RunFolder, TrialRecord
from nas.space import SearchSpace, SpaceError, load_space

__all__ = ["main", "run_trial", "ArchSearcher", "SearchSettings"]

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_SPACE = Path("search_spaces/digits.yaml")
SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random")
COST_OBJECTIVES = [o for o in OBJECTIVES if o != "accuracy"]
# Options a resumed run may change; the others define the search and must stay as they were.
RESUMABLE = {"budget", "time_budget", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "address",
             "max_failures", "resume", "results_dir", "quiet", "data_dir"}
DUPLICATES_BEFORE_RANDOM = 3  # re-proposals of known architectures before a random unseen one is tried
RANDOM_TRIES = 2000  # random draws that find nothing new: the space counts as exhausted


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- the trial (worker side)

@dataclass
class SearchSettings:
    """What every trial needs besides its architecture; sent once to the workers."""

    proxy: dict[str, Any]
    seed: int
    num_classes: int
    limits: dict[str, float]  # objective name -> hard upper limit
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0


def _constraints(cost: dict[str, Any], limits: dict[str, float]) -> list[float]:
    """One value per hard limit, <= 0 where it holds (Optuna's constraint convention)."""
    return [float(cost[OBJECTIVES[name][0]]) - float(limit) for name, limit in sorted(limits.items())]


def run_trial(config: dict[str, Any], data: Dataset, settings: SearchSettings) -> None:
    """Ray Tune function trainable: cost, then train one architecture, reporting every epoch.

    Every report carries the costs; the last one carries ``final=True`` and the status
    ('complete', 'failed' or 'infeasible'). A trial the scheduler stops has no final report.
    """
    import ray
    from ray import tune
    from safetensors.torch import save_file

    from nas.cost import measure_cost
    from nas.model import create_model, rates_of
    from nas.train import TrainConfig, train

    torch.set_num_threads(max(1, int(settings.cpus_per_trial)))  # one thread per CPU Ray gives us
    device = torch.device("cuda" if settings.gpus_per_trial > 0 and torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    arch = Arch.from_dict(config["arch"])
    torch.manual_seed(settings.seed)  # same arch, data and seed: same weights, same accuracy
    model = create_model(arch, num_classes=settings.num_classes)
    cost = measure_cost(model, device=device, warmup=2, repeats=5)
    base = {"arch_id": arch.arch_id, "started_at": started_at, "node": ray.get_runtime_context().get_node_id(),
            "params": cost.params, "macs": cost.macs, "latency_ms": cost.latency_ms,
            "memory_mb": cost.peak_memory_mb}
    base["constraints"] = _constraints(base, settings.limits)
    if any(c > 0 for c in base["constraints"]):
        tune.report({**base, "status": "infeasible", "final": True, "accuracy": 0.0, "epoch": 0,
                     "seconds": time.perf_counter() - start, "train_seconds": 0.0})
        return

    cfg = TrainConfig.from_dict({**settings.proxy, "seed": settings.seed, "device": str(device)})
    data = data.to(device)
    accs: list[float] = []
    losses: list[float] = []
    train_start = time.perf_counter()
    for r in train(model, data, cfg):
        timing = {"seconds": time.perf_counter() - start, "train_seconds": time.perf_counter() - train_start}
        if r.status != "ok":
            tune.report({**base, **timing, "status": "failed", "final": True, "error": r.reason,
                         "accuracy": 0.0, "epoch": r.epoch, "acc_per_epoch": accs, "loss_per_epoch": losses})
            return
        accs.append(r.val_acc)
        losses.append(r.train_loss)
        metrics = {**base, **timing, "epoch": r.epoch, "accuracy": r.val_acc, "train_loss": r.train_loss,
                   "acc_per_epoch": list(accs), "loss_per_epoch": list(losses)}
        if r.epoch < cfg.epochs:
            tune.report({**metrics, "status": "running", "final": False})
            continue
        with tempfile.TemporaryDirectory() as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      str(Path(tmp) / "model.safetensors"), metadata={"arch_id": arch.arch_id})
            tune.report({**metrics, "status": "complete", "final": True, "rates": rates_of(model)},
                        checkpoint=tune.Checkpoint.from_directory(tmp))
    if cfg.epochs == 0:
        tune.report({**base, "status": "complete", "final": True, "accuracy": 0.0, "epoch": 0,
                     "seconds": time.perf_counter() - start, "train_seconds": 0.0})


# --------------------------------------------------------------------------- the searcher (driver side)

def define_by_run(space: SearchSpace, trial: optuna.Trial) -> dict[str, Any]:
    """One Optuna parameter per decision; the resulting Arch travels in the trial's config."""
    arch = space.sample(trial)
    return {"arch": arch.to_dict(), "arch_id": arch.arch_id}


def trial_constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    """constraints_func for Optuna samplers: the hard-limit values the searcher stored."""
    return trial.user_attrs.get("constraints", [])


def make_sampler(name: str, seed: int, budget: int, constrained: bool) -> optuna.samplers.BaseSampler:
    """A named, seeded sampler; with hard limits, the samplers that can use them get constraints."""
    cf = {"constraints_func": trial_constraints} if constrained else {}
    population = max(4, min(50, budget // 4))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **cf)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population, **cf)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=population, **cf)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **cf)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UsageError(f"--sampler: unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def _make_searcher_class():
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    class ArchSearcher(OptunaSearch):
        """OptunaSearch that never trains an architecture twice and tells Optuna the truth.

        - A proposal whose architecture is already known (evaluated in this run, or in flight) is
          not trained: it is told to Optuna as FAIL with a ``duplicate_of`` user attribute (so
          samplers ignore it instead of weighting a known point again) and another is drawn. After
          DUPLICATES_BEFORE_RANDOM such proposals in a row, a random architecture not yet evaluated
          is enqueued: samplers such as TPE converge on small categorical spaces and keep
          proposing the same points. The space counts as exhausted when RANDOM_TRIES random draws
          find nothing new.
        - A trial the scheduler stopped early is told as PRUNED (its accuracy is at a lower
          fidelity, so it never enters the front); a failed one as FAIL; an infeasible one as
          COMPLETE with its constraint values, which keep it off the front.
        """

        def __init__(self, *args, known: dict[str, TrialRecord], objectives: list[str],
                     arch_space: SearchSpace, seed: int, **kwargs):
            super().__init__(*args, **kwargs)
            self.known = known  # arch_id -> record, shared with the recorder
            self.objectives = objectives
            self.arch_space = arch_space
            self.in_flight: dict[str, str] = {}  # arch_id -> Ray trial id
            self.exhausted = False
            self.duplicates = 0  # proposals of known architectures, told as FAIL
            self.random_injections = 0
            self._random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))

        def suggest(self, trial_id: str):
            in_a_row = 0
            while True:
                config = super().suggest(trial_id)
                if not isinstance(config, dict):
                    return config
                arch_id = config["arch_id"]
                if arch_id not in self.known and arch_id not in self.in_flight:
                    self.in_flight[arch_id] = trial_id
                    return config
                ot_trial = self._ot_trials.pop(trial_id)
                ot_trial.set_user_attr("duplicate_of", arch_id)
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
                self.duplicates += 1
                in_a_row += 1
                if in_a_row >= DUPLICATES_BEFORE_RANDOM:
                    params = self._random_unseen()
                    if params is None:
                        self.exhausted = True
                        return Searcher.FINISHED
                    self._ot_study.enqueue_trial(params)  # the next ask() takes it
                    self.random_injections += 1
                    in_a_row = 0

        def _random_unseen(self) -> dict[str, Any] | None:
            for _ in range(RANDOM_TRIES):
                arch = self.arch_space.sample(self._random.ask())
                if arch.arch_id not in self.known and arch.arch_id not in self.in_flight:
                    return self.arch_space.params_of(arch)
            return None

        def _tell(self, ot_trial: optuna.Trial, record: TrialRecord) -> None:
            if record.status in ("failed", "stopped"):
                state, values = optuna.trial.TrialState.FAIL, None
                if record.status == "stopped":
                    state = optuna.trial.TrialState.PRUNED
            else:
                state = optuna.trial.TrialState.COMPLETE
                values = [float(record.value(o) or 0.0) for o in self.objectives]
                ot_trial.set_user_attr("constraints", list(record.constraints))
                self._store_constraints(ot_trial, record.constraints)
            self._ot_study.tell(ot_trial, values, state=state)

        def _store_constraints(self, ot_trial: optuna.Trial, constraints: list[float]) -> None:
            # Samplers given a constraints_func store these themselves when told; RandomSampler has
            # none. Storing them for every trial keeps infeasible trials off study.best_trials.
            from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

            if constraints:
                self._ot_study._storage.set_trial_system_attr(ot_trial._trial_id, _CONSTRAINTS_KEY,
                                                              list(constraints))

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            ot_trial = self._ot_trials[trial_id]
            record = record_from_result(-1, result or {}, error=error)
            ot_trial.set_user_attr("arch_id", record.arch_id)
            ot_trial.set_user_attr("status", record.status)
            ot_trial.set_user_attr("epochs", record.epochs)
            try:
                self._tell(ot_trial, record)
            except Exception as e:  # Optuna refuses e.g. NaN values: the trial is still recorded by us
                logging.getLogger(__name__).warning("Optuna did not take trial %s: %s", trial_id, e)
            self._completed_trials.add(trial_id)
            self.in_flight.pop(record.arch_id, None)

        def optuna_number(self, trial_id: str) -> int | None:
            t = self._ot_trials.get(trial_id)
            return t.number if t is not None else None

    return ArchSearcher


def ArchSearcher(*args, **kwargs):  # noqa: N802 - the class needs Ray, imported only when searching
    return _make_searcher_class()(*args, **kwargs)


def record_from_result(number: int, result: dict[str, Any], error: bool = False,
                       error_message: str | None = None) -> TrialRecord:
    """A trials.jsonl record from a trial's last reported result."""
    arch_id = result.get("arch_id") or (result.get("config") or {}).get("arch_id", "")
    arch = (result.get("config") or {}).get("arch", {})
    if error or not result:
        status = "failed"
    elif not result.get("final"):
        status = "stopped"  # ended by the scheduler before its last epoch
    else:
        status = result.get("status", "failed")
    accuracy = result.get("accuracy") if status in ("complete", "stopped") else None
    return TrialRecord(
        number=number, arch_id=arch_id, arch=arch, status=status, accuracy=accuracy,
        params=result.get("params"), macs=result.get("macs"), latency_ms=result.get("latency_ms"),
        memory_mb=result.get("memory_mb"), acc_per_epoch=list(result.get("acc_per_epoch") or []),
        loss_per_epoch=list(result.get("loss_per_epoch") or []), epochs=int(result.get("epoch") or 0),
        seconds=float(result.get("seconds") or 0.0), train_seconds=float(result.get("train_seconds") or 0.0),
        error=error_message or result.get("error"), constraints=list(result.get("constraints") or []),
        rates=list(result.get("rates") or []), node=result.get("node"),
        optuna_params={k: v for k, v in (result.get("config") or {}).items() if k not in ("arch", "arch_id")},
        started_at=result.get("started_at", ""),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    )


# --------------------------------------------------------------------------- recording and progress

@dataclass
class Progress:
    budget: int
    done_before: int
    start: float = field(default_factory=time.perf_counter)
    quiet: bool = False


def _make_recorder_class():
    from ray import tune

    class Recorder(tune.Callback):
        """Appends every finished trial to trials.jsonl, keeps its weights, updates pareto.json and
        prints one progress line per trial. Runs in the driver; the only writer of the run folder."""

        def __init__(self, run: RunFolder, searcher, known: dict[str, TrialRecord], references: dict[str, str],
                     objectives: list[str], progress: Progress):
            self.run, self.searcher, self.known = run, searcher, known
            self.references, self.objectives, self.progress = references, objectives, progress
            records = run.trials()
            self.number = len(records)
            self.failures = sum(r.status == "failed" for r in records)  # the whole run's, resumed or not
            self.weights: dict[str, str] = {}  # Ray trial id -> weights path (relative)

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            src = Path(checkpoint.path) / "model.safetensors"
            arch_id = trial.config.get("arch_id")
            if src.is_file() and arch_id:
                dst = self.run.weights_path(arch_id)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                self.weights[trial.trial_id] = str(dst.relative_to(self.run.path))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._record(trial, dict(trial.last_result or {}), error=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._record(trial, dict(trial.last_result or {}), error=True, message=_error_line(trial))

        def _record(self, trial, result: dict, error: bool, message: str | None = None) -> None:
            result.setdefault("arch_id", trial.config.get("arch_id"))
            result["config"] = trial.config
            record = record_from_result(self.number, result, error=error, error_message=message)
            record.reference = self.references.get(record.arch_id)
            record.optuna_number = self.searcher.optuna_number(trial.trial_id)
            record.weights = self.weights.get(trial.trial_id) if record.status == "complete" else None
            self.run.append(record)
            self.number += 1
            self.known[record.arch_id] = record
            if record.status == "failed":
                self.failures += 1
            front = self.run.write_pareto(self.objectives)["front"]
            self._print(record, len(front))

        def _print(self, record: TrialRecord, front_size: int) -> None:
            p = self.progress
            if p.quiet:
                return
            done = self.number
            elapsed = time.perf_counter() - p.start
            rate = elapsed / max(1, done - p.done_before)
            remaining = max(0, p.budget - done) * rate
            what = {"complete": f"acc {record.accuracy:.3f}" if record.accuracy is not None else "",
                    "stopped": f"stopped at epoch {record.epochs}, acc {record.accuracy or 0:.3f}",
                    "failed": f"{record.error}", "infeasible": "over a hard limit, not trained"}
            costs = f"{(record.macs or 0) / 1e6:.2f}M MACs {(record.params or 0) / 1e3:.1f}k params"
            tag = f" [{record.reference}]" if record.reference else ""
            print(f"[{done:>4}/{p.budget}] {_hms(elapsed)} {record.arch_id}{tag} {record.status}: "
                  f"{what.get(record.status, '')}, {costs} | failed {self.failures}, front {front_size}, "
                  f"~{_hms(remaining)} left", flush=True)

    return Recorder


def _make_failure_stopper(recorder, max_failures: int | None):
    from ray.tune.stopper import Stopper

    class FailureStopper(Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return max_failures is not None and recorder.failures > max_failures

    return FailureStopper()


def _error_line(trial) -> str:
    """The last line of a trial's exception, e.g. 'RuntimeError: ...'."""
    text = ""
    try:
        path = getattr(trial, "error_file", None) or ""
        if path and Path(path).is_file():
            text = Path(path).read_text()
    except OSError:
        pass
    text = text or str(getattr(trial, "error_msg", "") or "")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "the trial raised an exception"


def _check_resources(resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float,
                     address: str | None) -> None:
    """A trial that fits nowhere would make Tune wait forever: say so instead."""
    where = f"the Ray cluster at {address}" if address else "this machine"
    if cpus_per_trial > resources.get("CPU", 0):
        raise UsageError(f"--cpus-per-trial {cpus_per_trial:g}: {where} has {resources.get('CPU', 0):g} CPUs")
    if gpus_per_trial > resources.get("GPU", 0):
        raise UsageError(f"--gpus-per-trial {gpus_per_trial:g}: {where} has {resources.get('GPU', 0):g} GPUs"
                         + ("" if address else "; CUDA is not available to torch here"))


def _fitting_trials(resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster runs at once. Tune needs this number: without a concurrency
    limit it keeps a single trial pending when a searcher is used, and trials start one by one."""
    fit = int(resources.get("CPU", 1) // cpus_per_trial)
    if gpus_per_trial > 0:
        fit = min(fit, int(resources.get("GPU", 0) // gpus_per_trial))
    return max(1, fit)


def trial_dirname(trial) -> str:
    """Ray trial folders named by trial id (the default spells out the whole config)."""
    return f"trial_{trial.trial_id}"


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# --------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nas.search", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("what to search")
    g.add_argument("--budget", type=int, default=100, help="trials (distinct architectures) to evaluate")
    g.add_argument("--time-budget", type=float, default=None, help="stop starting trials after this many seconds")
    g.add_argument("--space", type=Path, default=DEFAULT_SPACE, help="search-space YAML")
    g.add_argument("--objectives", nargs="+", default=["accuracy", "macs"],
                   help=f"accuracy plus one or more of {', '.join(COST_OBJECTIVES)} (space- or comma-separated)")
    g.add_argument("--max-macs", type=float, default=None, help="hard limit on MACs per image")
    g.add_argument("--max-params", type=float, default=None, help="hard limit on parameters")
    g.add_argument("--max-latency-ms", type=float, default=None, help="hard limit on latency (batch 1)")
    g.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler")
    g.add_argument("--seed", type=int, default=0, help="seeds the sampler, data split and every proxy training")
    g.add_argument("--early-stop", action="store_true",
                   help="stop weak trials early (ASHA on validation accuracy); stopped trials never enter the front")
    g = p.add_argument_group("proxy training (defaults: the space file's proxy section)")
    g.add_argument("--dataset", default=None, help="digits | cifar10 | cifar100 | mnist | fashion-mnist | imagefolder")
    g.add_argument("--data-dir", type=Path, default=None, help="folder with the dataset as distributed")
    g.add_argument("--epochs", type=int, default=None, help="proxy epochs per trial")
    g.add_argument("--subset", type=float, default=None, help="training images per trial: a count (>1) or a fraction")
    g.add_argument("--batch-size", type=int, default=None, help="proxy batch size")
    g = p.add_argument_group("resources")
    g.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (torch threads)")
    g.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial, fractions allowed; default: 1 when CUDA is present, else 0")
    g.add_argument("--max-concurrent", type=int, default=None, help="trials at once; default: as resources allow")
    g.add_argument("--address", default=None,
                   help="join an existing Ray cluster ('auto' or host:port); default: a local Ray for this run")
    g.add_argument("--max-failures", type=int, default=None, help="stop the search after more failed trials than this")
    g = p.add_argument_group("run folder")
    g.add_argument("--name", default=None, help="run folder name under --results-dir; default: a timestamp")
    g.add_argument("--results-dir", type=Path, default=Path("results"), help="where run folders go")
    g.add_argument("--resume", default=None, metavar="RUN",
                   help="continue RUN (a run folder, or its name under --results-dir) to its budget")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _explicit_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """Names of the options given on the command line (not defaults)."""
    probe = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            kwargs = {"dest": action.dest, "default": argparse.SUPPRESS}
            if isinstance(action, argparse._StoreTrueAction):
                probe.add_argument(*action.option_strings, action="store_true", **kwargs)
            else:
                probe.add_argument(*action.option_strings, nargs=action.nargs, **kwargs)
    return set(vars(probe.parse_known_args(argv)[0]))


def _parse_objectives(values: list[str]) -> list[str]:
    names = [v.strip().lower() for item in values for v in item.split(",") if v.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise UsageError(f"--objectives: unknown {', '.join(unknown)}; choose accuracy plus any of "
                         f"{', '.join(COST_OBJECTIVES)}")
    if "accuracy" not in names or len(set(names)) < 2:
        raise UsageError("--objectives: give accuracy and at least one cost objective, e.g. accuracy macs")
    ordered = ["accuracy"] + [n for n in dict.fromkeys(names) if n != "accuracy"]
    return ordered


def _options_dict(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def _resolve_run(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]):
    """The run folder and the effective options: new, or resumed with its stored options."""
    if args.resume is None:
        name = args.name or datetime.now().strftime("%Y%m%d-%H%M%S")
        run = RunFolder(args.results_dir / name)
        if run.exists() or (run.path.exists() and any(run.path.iterdir())):
            raise UsageError(f"{run.path}: a run folder of that name exists; continue it with --resume "
                             f"{run.path}, or pick another --name")
        return run, args, False
    run = RunFolder(args.resume)
    if not run.path.is_dir() and not Path(args.resume).is_absolute():
        run = RunFolder(args.results_dir / args.resume)
    run.require()
    stored = run.config().get("options", {})
    explicit = _explicit_options(parser, argv)
    changed = sorted(k for k in explicit - RESUMABLE if k in stored and _options_dict(args)[k] != stored[k])
    if changed:
        raise UsageError(f"--resume: cannot change {', '.join('--' + k.replace('_', '-') for k in changed)} "
                         f"of an existing run ({run.path}); only resources and budgets may change")
    merged = {**stored, **{k: v for k, v in _options_dict(args).items() if k in explicit or k not in stored}}
    merged["resume"] = str(run.path)
    for key in ("space", "data_dir", "results_dir"):
        if merged.get(key) is not None:
            merged[key] = Path(merged[key])
    return run, argparse.Namespace(**merged), True


def _proxy_settings(space: SearchSpace, args: argparse.Namespace) -> dict[str, Any]:
    proxy = dict(space.proxy)
    for key in ("dataset", "epochs", "batch_size"):
        if getattr(args, key) is not None:
            proxy[key] = getattr(args, key)
    if args.subset is not None:
        proxy["subset"] = int(args.subset) if args.subset > 1 else float(args.subset)
    return proxy


def _load_data(proxy: dict[str, Any], data_dir: Path | None, seed: int) -> Dataset:
    return load_dataset(proxy.get("dataset", "digits"), data_dir=data_dir, image_size=proxy.get("image_size"),
                        val_fraction=proxy.get("val_fraction", 0.2), subset=proxy.get("subset"), seed=seed)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("acmix-nas", "torch", "timm", "optuna", "ray", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _hypervolume_scale(space: SearchSpace, num_classes: int, objectives: list[str]) -> dict[str, float]:
    """Per cost objective: twice the most expensive reference point (fixed for the run)."""
    from nas.cost import measure_cost

    costs = [measure_cost(arch, num_classes=num_classes, latency="latency" in objectives,
                          memory="memory" in objectives, warmup=2, repeats=5).to_dict()
             for arch in space.reference_points().values()]
    scale = {}
    for o in objectives:
        if o == "accuracy":
            continue
        key = {"latency": "latency_ms", "memory": "peak_memory_mb"}.get(o, o)
        scale[o] = 2.0 * max(float(c[key] or 0.0) for c in costs) or 1.0
    return scale


def _mark_interrupted_trials(run: RunFolder) -> int:
    """Optuna trials left RUNNING by a killed process become FAIL, so samplers ignore them."""
    if not run.study_path.is_file():
        return 0
    storage = run.storage()
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    stale = [t for t in study.get_trials(deepcopy=False)
             if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    for t in stale:
        storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    return len(stale)


def search(args: argparse.Namespace, run: RunFolder, resumed: bool, argv: list[str]) -> int:
    objectives = _parse_objectives(args.objectives)
    if args.budget < 1:
        raise UsageError(f"--budget must be at least 1, got {args.budget}")
    if args.cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial must be positive, got {args.cpus_per_trial}")
    if not args.space.exists() and not args.space.is_absolute() and (PROJECT / args.space).exists():
        args.space = PROJECT / args.space  # the shipped spaces, from any working directory
    space = load_space(args.space)
    limits = {name: value for name, value in (("macs", args.max_macs), ("params", args.max_params),
                                              ("latency", args.max_latency_ms)) if value is not None}
    proxy = _proxy_settings(space, args)
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else (1.0 if torch.cuda.is_available() else 0.0)

    if resumed:
        stored = run.config()
        if stored.get("space_fingerprint") != space.fingerprint:
            raise UsageError(f"--resume: the search space changed since {run.path} started "
                             f"({args.space} now has fingerprint {space.fingerprint}, the run used "
                             f"{stored.get('space_fingerprint')}); start a new run for a new space")
    data = _load_data(proxy, args.data_dir, args.seed)
    if data.in_chans != space.in_chans:
        raise UsageError(f"{args.space}: in_chans is {space.in_chans} but dataset {data.name} has {data.in_chans} "
                         f"channel(s); set in_chans: {data.in_chans} in the space or pick another --dataset")
    references = {arch.arch_id: name for name, arch in space.reference_points().items()}
    if not resumed:
        run.write_config({
            "name": run.path.name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m nas.search " + " ".join(argv),
            "objectives": objectives,
            "sampler": args.sampler,
            "seed": args.seed,
            "limits": limits,
            "space_file": str(args.space),
            "space_fingerprint": space.fingerprint,
            "space_size": space.size if math.isfinite(space.size) else "infinite",
            "space": space.to_dict(),
            "proxy": proxy,
            "data": {"dataset": data.name, "num_classes": data.num_classes, "in_chans": data.in_chans,
                     "image_size": data.image_size, "mean": list(data.mean), "std": list(data.std),
                     "train_images": len(data.train_y), "val_images": len(data.val_y)},
            "references": {name: arch.arch_id for name, arch in space.reference_points().items()},
            "hypervolume_scale": _hypervolume_scale(space, data.num_classes, objectives),
            "versions": _versions(),
            "device": "cuda: " + torch.cuda.get_device_name(0) if gpus > 0 and torch.cuda.is_available() else "cpu",
            "options": _options_dict(args),
        })
    else:
        cfg = run.config()
        cfg["options"] = _options_dict(args)
        run.write_config(cfg)

    records = run.trials()
    known = {r.arch_id: r for r in records}
    remaining = args.budget - len(records)
    if remaining <= 0:
        print(f"{run.path}: {len(records)} trials done, budget {args.budget} reached")
        _print_front(run, objectives)
        return 0
    interrupted = _mark_interrupted_trials(run)
    if resumed:
        print(f"resuming {run.path}: {len(records)} trials done, {remaining} to go"
              + (f" ({interrupted} interrupted trials marked failed in the study)" if interrupted else ""))
    print(f"{run.path}: {data.summary()}; space {space.name} ({_fmt_size(space.size)} architectures); "
          f"objectives {', '.join(objectives)}; sampler {args.sampler}, seed {args.seed}", flush=True)

    return _tune(args, run, space, data, proxy, objectives, limits, gpus, known, references, remaining,
                 len(records))


def _fmt_size(n: float) -> str:
    return "infinitely many" if not math.isfinite(n) else f"{int(n):,}"


def _tune(args, run: RunFolder, space: SearchSpace, data: Dataset, proxy: dict, objectives: list[str],
          limits: dict, gpus: float, known: dict, references: dict, remaining: int, done_before: int) -> int:
    # Our progress lines replace Tune's tables; trials.jsonl replaces its per-trial result files.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    settings = SearchSettings(proxy=proxy, seed=args.seed, num_classes=data.num_classes, limits=limits,
                              gpus_per_trial=gpus, cpus_per_trial=args.cpus_per_trial)
    sampler = make_sampler(args.sampler, args.seed, args.budget, constrained=bool(limits))
    points = [space.params_of(arch) for arch in space.reference_points().values() if arch.arch_id not in known]
    searcher = ArchSearcher(
        space=partial(define_by_run, space),
        metric=[OBJECTIVES[o][0] for o in objectives],
        mode=["max" if OBJECTIVES[o][1] == "maximize" else "min" for o in objectives],
        points_to_evaluate=points, sampler=sampler, study_name=STUDY_NAME, storage=run.storage(),
        known=known, objectives=objectives, arch_space=space, seed=args.seed)
    progress = Progress(budget=args.budget, done_before=done_before, quiet=args.quiet)
    recorder = _make_recorder_class()(run, searcher, known, references, objectives, progress)

    started_ray = False
    if args.address:
        ray.init(address=args.address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                 num_gpus=torch.cuda.device_count())
        started_ray = True
    try:
        cfg = run.config()
        cfg["ray"] = {"address": args.address or "local", "nodes": sum(n["Alive"] for n in ray.nodes()),
                      **{k.lower() + "s": v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}}
        run.write_config(cfg)
        _check_resources(ray.cluster_resources(), args.cpus_per_trial, gpus, args.address)
        concurrent = args.max_concurrent or _fitting_trials(ray.cluster_resources(), args.cpus_per_trial, gpus)
        trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, settings=settings),
                                        {"cpu": args.cpus_per_trial, "gpu": gpus})
        scheduler = None
        if args.early_stop:
            epochs = int(proxy.get("epochs", 10))
            scheduler = ASHAScheduler(metric="accuracy", mode="max", time_attr="training_iteration",
                                      max_t=max(1, epochs), grace_period=max(1, epochs // 4), reduction_factor=3)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=remaining,
                                        max_concurrent_trials=concurrent, reuse_actors=True,
                                        time_budget_s=args.time_budget, trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name=f"tune-{datetime.now().strftime('%Y%m%d-%H%M%S')}",
                storage_path=str((run.path / "ray").resolve()),
                stop=_make_failure_stopper(recorder, args.max_failures),
                callbacks=[recorder], verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
        )
        tuner.fit()  # results are read from the run folder, not from Tune's ResultGrid
    finally:
        if started_ray:
            ray.shutdown()
    done = len(run.trials())
    if searcher.duplicates:
        print(f"{searcher.duplicates} proposals of already evaluated architectures were not trained again; "
              f"{searcher.random_injections} random unseen architectures were tried instead")
    if searcher.exhausted:
        print(f"the space is exhausted: {RANDOM_TRIES} random draws found no architecture not yet evaluated")
    elif args.max_failures is not None and recorder.failures > args.max_failures:
        print(f"stopped: {recorder.failures} failed trials, more than --max-failures {args.max_failures}")
    elif done < args.budget:
        print(f"stopped at {done}/{args.budget} trials; continue with: python -m nas.search --resume {run.path}")
    _print_front(run, objectives)
    return 0


def _print_front(run: RunFolder, objectives: list[str]) -> None:
    records = run.trials()
    summary = run.write_pareto(objectives)
    counts = {s: sum(r.status == s for r in records) for s in ("complete", "stopped", "failed", "infeasible")}
    print(f"\n{len(records)} trials ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
          f"Pareto front: {len(summary['front'])} architectures"
          + (f", hypervolume {summary['hypervolume']:.4f}" if summary["hypervolume"] is not None else ""))
    by_number = {r.number: r for r in records}
    header = f"  {'arch id':12}  {'accuracy':>8}  {'MACs':>10}  {'params':>9}  {'latency':>9}  acmix  reference"
    print(header)
    for row in summary["front"]:
        r = by_number[row["number"]]
        n_acmix = Arch.from_dict(r.arch).num_acmix
        lat = f"{r.latency_ms:.2f}ms" if r.latency_ms is not None else "-"
        print(f"  {r.arch_id:12}  {r.accuracy:8.4f}  {r.macs / 1e6:9.3f}M  {r.params / 1e3:8.1f}k  {lat:>9}  "
              f"{n_acmix:5}  {r.reference or ''}")
    print(f"\nrun folder: {run.path}   dashboard: python -m nas.dashboard {run.path}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = None
    created, existed = False, False
    try:
        run, args, resumed = _resolve_run(args, parser, argv)
        created, existed = not resumed, run.path.exists()
        return search(args, run, resumed, argv)
    except (UsageError, SpaceError, DataError, RunError) as e:
        if created and run.exists() and not run.trials():  # a new run that never started: leave nothing
            for path in ([run.path] if not existed else list(run.path.iterdir())):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if run is not None and run.exists():
            print(f"\ninterrupted; continue with: python -m nas.search --resume {run.path}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
