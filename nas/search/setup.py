"""A search's set-up: the run folder claimed, a resume resolved, the checks, and run.yaml.

Before anything is written, a new run's name (`resolve_run`: free, in a writable --results-dir)
or a resumed run's folder and stored options are resolved; then `set_up` loads the space and the
proxy, checks the resources and the data (a resumed run's against its run.yaml), joins a named
Ray cluster, claims the folder (`Claim`: its lock; a new run that recorded nothing is removed
again), repairs it, writes its run.yaml and reads its trials.jsonl. A resumed run's run.yaml is
read once, by `resolve_run`, and that one reading serves the whole set-up.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from nas.cli import check_place, shell_command
from nas.data.dataset import Dataset
from nas.errors import UsageError
from nas.proxy import ProxyConfig, ProxyError, load_proxy_file
from nas.run.folder import RUN_YAML, DataInfo, RunConfig, RunError, RunFolder, package_versions
from nas.run.lock import LOCK_FILE, RunLock, RunLocked
from nas.run.record import TrialRecord
from nas.search.options import RESUMABLE, SearchOptions, proxy_changes
from nas.search.rungs import run_ladder
from nas.space.decision import SpaceError
from nas.space.space import SearchSpace, load_space

__all__ = ["PROJECT", "Claim", "SetUp", "resume_command", "resolve_run", "set_up"]

PROJECT = Path(__file__).resolve().parents[2]


def resume_command(path: str | Path) -> str:
    """The command that continues a run, ready to paste into a shell."""
    return shell_command("search", "--resume", path)


class Claim:
    """Taking a run folder for this process: its lock (`nas.run.lock`), taken when the folder exists
    (a resume) or right before a new run writes its first file; `undo` removes a new run that
    recorded nothing."""

    def __init__(self, folder: RunFolder, resumed: bool, command: str):
        self.folder, self.resumed = folder, resumed
        self.existed = folder.path.exists()
        self.lock = RunLock(folder.path, command=command, resume=resume_command(folder.path))
        self.made = False  # this process holds the lock and the folder is its run
        self.stack = contextlib.ExitStack()  # what lives as long as the claim: a joined Ray cluster

    def __call__(self) -> None:
        if self.made:
            return
        try:
            note = self.lock.acquire()
        except RunLocked:
            raise
        except RunError:  # a new run's folder that could not be written (a full disk): not left behind
            if not self.existed:
                with contextlib.suppress(OSError):
                    if not self.lock.path.stat().st_size:  # no holder described in it: ours
                        self.lock.path.unlink()
                    self.folder.path.rmdir()  # only if nothing else is in it
            raise
        if note:
            print(note, flush=True)
        if not self.resumed:  # a new run: the name may have been taken while this one set up
            taken = sorted(p.name for p in self.folder.path.iterdir() if p.name != LOCK_FILE)
            if taken:
                self.lock.release()
                raise UsageError(_name_taken(self.folder))
        self.made = True

    def undo(self) -> bool:
        """Remove a new run that recorded nothing (what this process made of it); True if it did."""
        if self.resumed or not self.made:
            return False
        try:
            if self.folder.trials():
                return False
        except RunError:
            return False
        for path in [self.folder.path] if not self.existed else list(self.folder.path.iterdir()):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        return True


def _name_taken(folder: RunFolder) -> str:
    """Why a new run cannot have `folder`'s name, and what to do: continue the run there, or, for a
    folder that is not a search's run (a calibration's, anything else), use it as it is meant."""
    if (folder.path / RUN_YAML).is_file():
        return (
            f"{folder.path}: a run folder of that name exists; continue it with: {resume_command(folder.path)}, "
            f"or pick another --name"
        )
    if (folder.path / "calibration.yaml").is_file():  # nas.calibrate's folder
        proxy = folder.path / "proxy.yaml"
        use = (
            f"search with its proxy: python -m nas.search --proxy {shlex.quote(str(proxy))}, "
            if proxy.is_file()
            else ""
        )
        return f"{folder.path}: holds a calibration (nas.calibrate), not a search's run; {use}pick another --name"
    return f"{folder.path}: exists and holds no search run (no {RUN_YAML}); pick another --name"


def resolve_run(opts: SearchOptions, explicit: set[str]) -> tuple[RunFolder, SearchOptions, RunConfig | None]:
    """The run folder, the effective options and, for a resumed run, its run.yaml (the one read of
    it): new (None), or resumed with its stored options."""
    if opts.resume is None:
        name = opts.name or datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = RunFolder(opts.results_dir / name)
        check_place(opts.results_dir, name)  # the guard of every command that writes a folder
        if folder.exists() or (folder.path.exists() and any(p.name != LOCK_FILE for p in folder.path.iterdir())):
            raise UsageError(_name_taken(folder))
        return folder, opts, None
    given = Path(opts.resume)
    folder = RunFolder(given)
    if not given.is_dir() and not given.is_absolute() and (opts.results_dir / given).is_dir():
        folder = RunFolder(opts.results_dir / given)  # a run's name under --results-dir
    if not folder.path.is_dir():
        raise UsageError(
            f"--resume {opts.resume}: no such run folder"
            + (f" (nor {opts.results_dir / given})" if not given.is_absolute() else "")
        )
    config = folder.require().config()
    stored = config.options
    given_opts = opts.to_dict()
    changed = sorted(k for k in explicit - RESUMABLE if k in stored and given_opts[k] != stored[k])
    if changed:
        raise UsageError(
            f"--resume: cannot change {', '.join('--' + k.replace('_', '-') for k in changed)} "
            f"of an existing run ({folder.path}); only resources and budgets may change"
        )
    merged = {**stored, **{k: v for k, v in given_opts.items() if k in explicit or k not in stored}}
    merged["resume"] = str(folder.path)
    return folder, SearchOptions.from_dict({k: v for k, v in merged.items() if k in given_opts}), config


def _gpus(opts: SearchOptions) -> tuple[float, float | None]:
    """GPUs per trial (for auto: its smallest share) and, for auto, the GPUs' memory in MB.
    The options are checked already (a number >= 0, 'auto' or None)."""
    if opts.gpus_per_trial is None:
        return (1.0 if torch.cuda.is_available() else 0.0), None
    if opts.gpus_per_trial != "auto":
        return float(opts.gpus_per_trial), None
    memory = opts.gpu_memory_mb
    if memory is None:
        if not torch.cuda.is_available():
            raise UsageError(
                "--gpus-per-trial auto: no GPU here to measure; give --gpu-memory-mb (the memory of the cluster's GPUs)"
            )
        memory = torch.cuda.get_device_properties(0).total_memory / 2**20
    from nas.tune.session import GPU_GRID

    return 1 / GPU_GRID, float(memory)


def _proxy(space: SearchSpace, opts: SearchOptions) -> tuple[ProxyConfig, dict[str, Any]]:
    """The space's proxy (or the --proxy file's) with the command line's overrides, checked by the
    same rules, and the --proxy file's calibration ({} without one)."""
    base, calibration = (space.proxy, {}) if opts.proxy is None else load_proxy_file(opts.proxy)
    changes = proxy_changes(opts)
    try:
        proxy = replace(base, **changes).checked()
    except ProxyError as e:
        where = f"{opts.proxy}" if opts.proxy is not None else f"{space.path}"
        flag = f"--{e.key.replace('_', '-')}" if e.key in changes else f"{where}: proxy.{e.key}"
        raise UsageError(f"{flag}: {e.msg}") from None
    return proxy, ({"file": str(opts.proxy), **calibration} if opts.proxy is not None else {})


def _hypervolume_scale(space: SearchSpace, num_classes: int, objectives: list[str]) -> dict[str, float]:
    """Per cost objective: twice the most expensive reference point (fixed for the run)."""
    from nas.net.cost import measure_cost

    costs = [
        measure_cost(
            arch,
            num_classes=num_classes,
            latency="latency" in objectives,
            memory="memory" in objectives,
            warmup=2,
            repeats=5,
        ).to_dict()
        for arch in space.reference_points().values()
    ]
    key = {"latency": "latency_ms", "memory": "peak_memory_mb"}
    return {o: 2.0 * max(float(c[key.get(o, o)] or 0.0) for c in costs) or 1.0 for o in objectives if o != "accuracy"}


def _new_config(
    folder: RunFolder,
    opts: SearchOptions,
    space: SearchSpace,
    proxy: ProxyConfig,
    data: Dataset,
    gpus: float,
    command: str,
    calibration: dict[str, Any],
) -> RunConfig:
    return RunConfig(
        name=folder.path.name,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=command,
        objectives=opts.objectives,
        sampler=opts.sampler,
        seed=opts.seed,
        limits=opts.limits,
        space_file=str(opts.space),
        space_fingerprint=space.fingerprint,
        space_size=space.size if math.isfinite(space.size) else "infinite",
        space=space.to_dict(),
        proxy=proxy,
        data=DataInfo.of(data),
        references={name: a.arch_id for name, a in space.reference_points().items()},
        hypervolume_scale=_hypervolume_scale(space, data.num_classes, opts.objectives),
        versions=package_versions(),
        device="cuda: " + torch.cuda.get_device_name(0) if gpus > 0 and torch.cuda.is_available() else "cpu",
        options=opts.to_dict(),
        calibration=calibration,
    )


def _load_space(folder: RunFolder, opts: SearchOptions, stored: RunConfig | None) -> SearchSpace:
    """The search space: the space file, or on resume, when the file is gone, the resolved space
    the run's run.yaml (`stored`) holds (a changed file is refused: its fingerprint differs from the run's)."""
    typed = opts.space
    if not opts.space.exists() and not opts.space.is_absolute() and (PROJECT / opts.space).exists():
        opts.space = PROJECT / opts.space  # the shipped spaces, from any working directory
    if stored is not None and not opts.space.exists():
        space = SearchSpace.from_dict(stored.space, file=str(folder.path / RUN_YAML))
        if space.fingerprint != stored.space_fingerprint:
            raise UsageError(
                f"--resume: {typed} is gone and {folder.path / RUN_YAML} holds a space of fingerprint "
                f"{space.fingerprint}, not the run's {stored.space_fingerprint}; give the space file "
                f"with --space"
            )
        print(
            f"note: the space file {typed} is gone; resuming with the space {folder.path / RUN_YAML} stores "
            f"(fingerprint {space.fingerprint})",
            flush=True,
        )
        return space
    try:
        space = load_space(opts.space)
    except SpaceError as e:  # name the path as the user typed it
        raise SpaceError(typed, e.path, e.msg) from None
    if stored is not None and stored.space_fingerprint != space.fingerprint:
        raise UsageError(
            f"--resume: the search space changed since {folder.path} started ({typed} now has "
            f"fingerprint {space.fingerprint}, the run used {stored.space_fingerprint}); "
            f"start a new run for a new space"
        )
    return space


@dataclass(frozen=True)
class SetUp:
    """What a search runs with, once its run folder is claimed and its run.yaml written."""

    space: SearchSpace
    proxy: ProxyConfig
    calibration: dict[str, Any]  # the --proxy file's ({} without one)
    data: Dataset
    gpus: float  # per trial
    gpu_memory: float | None  # MB of the smallest GPU, for --gpus-per-trial auto
    address: str | None  # the Ray cluster joined; None: a local Ray
    config: RunConfig  # its run.yaml, as written
    records: list[TrialRecord]  # its trials.jsonl, read once (repaired): the proxy's (rung 0), the search's own


def set_up(folder: RunFolder, opts: SearchOptions, stored: RunConfig | None, command: str, claim: Claim) -> SetUp:
    """Check what can be checked before anything is written (the proxy, the resources, the data, a
    resumed run's data against its run.yaml, `stored`), join the Ray cluster if one is named, then
    claim the run folder, repair it, write its run.yaml and read its trials."""
    space = _load_space(folder, opts, stored)
    proxy, calibration = _proxy(space, opts)
    if stored is not None and opts.proxy is not None and stored.proxy != proxy:
        raise UsageError(
            f"--resume: the proxy in {opts.proxy} changed since {folder.path} started; start a new run for a new proxy"
        )
    gpus, gpu_memory = _gpus(opts)  # for auto: its smallest share of a GPU
    from nas.tune.session import check_resources, cluster_address, ray_session  # Ray: once a search starts

    address = cluster_address(opts.address)  # --address, or an exported RAY_ADDRESS as Ray reads it
    if not address:  # this machine's resources are known before Ray starts
        check_resources(
            {"CPU": len(os.sched_getaffinity(0)), "GPU": torch.cuda.device_count()}, opts.cpus_per_trial, gpus, None
        )
    data = proxy.load_data(opts.data_dir, seed=opts.seed)
    if data.in_chans != space.in_chans:
        raise UsageError(
            f"{opts.space}: in_chans is {space.in_chans} but dataset {data.name} has {data.in_chans} "
            f"channel(s); set in_chans: {data.in_chans} in the space or pick another --dataset"
        )
    if stored is not None:
        config = stored
        mismatch = config.data.mismatch(DataInfo.of(data))
        if mismatch:
            was = config.options.get("data_dir")
            raise UsageError(
                f"--resume: {folder.path} was searched on other data: {mismatch}; resume it on its own "
                f"data" + (f" (--data-dir {shlex.quote(str(was))})" if was else "") + ", or start a new run"
            )
        config.options = opts.to_dict()
    else:
        config = _new_config(folder, opts, space, proxy, data, gpus, command, calibration)
    if address and not opts.address:
        print(
            f"note: joining the Ray cluster at {address} from the exported RAY_ADDRESS (to run on a local Ray, "
            f"unset it: env -u RAY_ADDRESS python -m nas.search ...)",
            flush=True,
        )
    if address:  # joined before anything is written: a cluster that does not answer leaves no folder
        claim.stack.enter_context(ray_session(opts.address))
    claim()
    for line in folder.repair():  # a torn tail, temp files of a crash: before anything is appended
        print(line, flush=True)
    config.ladder = run_ladder(
        config, opts.promote_epochs, opts.promote_images
    )  # the fidelity ladder: kept once written
    folder.write_config(config)
    return SetUp(space, proxy, calibration, data, gpus, gpu_memory, address, config, folder.trials())
