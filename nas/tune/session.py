"""The Ray session of a Tune run: which cluster, joining it (or a local Ray), and whether a trial fits.

`ray_session` starts a local Ray with this machine's resources, or joins the cluster at --address
(or an exported RAY_ADDRESS, `cluster_address`) after asking it with a bounded wait
(`join_cluster`); `check_resources` refuses a trial that fits nowhere (Tune would wait forever),
`fitting_trials` is how many run at once, and `gpu_fraction` the share of a GPU a trial gets
by its memory (the search's --gpus-per-trial auto). The search and `nas.tune.jobs` both run in one.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator

import ray
import torch

from nas.errors import UsageError
from nas.tune.head import LocalHead, signals_held

__all__ = [
    "CONNECT_TIMEOUT_S",
    "cluster_address",
    "join_cluster",
    "ray_session",
    "cluster_joined",
    "local_ray",
    "local_head",
    "check_resources",
    "fitting_trials",
    "trial_slots",
    "gpu_fraction",
    "GPU_GRID",
    "CUDA_CONTEXT_MB",
]

CONNECT_TIMEOUT_S = 30.0  # joining a Ray cluster: the longest wait before one line says it does not answer
QUIET_LOGGERS = ("ray.tune", "ray.train")  # Tune's own error reports: our records and lines say it once


def cluster_address(address: str | None) -> str | None:
    """The Ray cluster to join: `address` (--address), else an exported RAY_ADDRESS, as Ray itself
    would read it; None: start a local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


# An HTTP/2 client's first bytes, then an empty SETTINGS frame: a gRPC server (Ray's GCS, a Ray
# Client server) answers with its own SETTINGS frame, anything else with something else or nothing.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _probe(host: str, port: int, timeout: float) -> str | None:
    """Why no Ray cluster can answer at host:port (None: a gRPC server answers there, as Ray's does).
    Bounded by `timeout`: ray.init would retry a silent or foreign address forever."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(_HTTP2_HELLO)
            head = s.recv(9)
    except TimeoutError:
        return f"no answer within {timeout:.0f} s"
    except OSError as e:
        return e.strerror or str(e)
    return None if len(head) >= 4 and head[3] == 4 else "something else listens there, not a Ray cluster"


@contextlib.contextmanager
def _stderr_hidden() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a while (what C++ code writes there, too)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def join_cluster(address: str, from_env: bool = False) -> None:
    """ray.init on the cluster at `address` ('auto', host:port or ray://host:port), or UsageError
    with one line: nothing answers there as a Ray cluster (asked first, with a bounded wait), no
    cluster runs for 'auto', or Ray refuses (another version, a wrong token)."""
    flag = f"RAY_ADDRESS={address} (exported)" if from_env else f"--address {address}"
    how = (
        "; to run on a local Ray instead, run the command with it unset (env -u RAY_ADDRESS ...)"
        if from_env
        else "; start one with ray start --head, or leave --address out for a local Ray"
    )
    if address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"{flag}: expected auto or host:port{how}")
        why = _probe(host.strip("[]"), int(port), CONNECT_TIMEOUT_S)
        if why:
            raise UsageError(f"{flag}: no Ray cluster answers there ({why}){how}")
    try:
        with _stderr_hidden():  # Ray's C++ client prints a line per retry
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        ray.shutdown()
        reason = " ".join(str(e).split(". ")[0].split()) or type(e).__name__
        raise UsageError(f"{flag}: cannot join a Ray cluster ({reason}){how}") from None


@contextlib.contextmanager
def _our_sigterm() -> Iterator[None]:
    """Ray's start puts in a SIGTERM handler of its own (it exits with status 15 at once); the one
    there was before comes back, so a SIGTERM between Tune runs stops the command as Ctrl-C does
    (nas.cli's frame: 143 and its line), not in the middle of whatever it was doing."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and before is not None:
            signal.signal(signal.SIGTERM, before)


_HEAD: LocalHead | None = None  # the command's own local Ray while it runs (one at a time)


def local_head() -> LocalHead | None:
    """The command's own local Ray while one runs (`local_ray`), else None (none, or a cluster joined)."""
    return _HEAD


@contextlib.contextmanager
def local_ray() -> Iterator[LocalHead]:
    """A local Ray with this machine's resources in a session of its own (`nas.tune.head`), joined,
    and stopped on every way out: a normal end, an error, Ctrl-C, SIGTERM to the command or to its
    whole process group. A Ray process that dies meanwhile is raised at the end as `RayDied`.

    Raises:
        RayDied: a process of this Ray died while it ran (one line; the command adds how to continue).
    """
    global _HEAD
    head = LocalHead(num_gpus=torch.cuda.device_count())
    _HEAD = head
    try:
        with _our_sigterm():
            address = head.start()
            with _stderr_hidden():
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        head.watch()
        yield head
    except BaseException:
        if head.died is not None:
            raise head.died from None
        raise
    finally:
        _HEAD = None
        with signals_held():  # a second Ctrl-C or SIGTERM acts once Ray is down, not halfway
            try:
                if head.died is None:
                    ray.shutdown()
                else:  # its GCS is gone: Ray's own shutdown at exit would wait for it
                    atexit.unregister(ray.shutdown)
            finally:
                head.stop()
    if head.died is not None:
        raise head.died


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for one Tune run: the cluster at `address` (or an exported RAY_ADDRESS: see
    `join_cluster`), or a local Ray with this machine's resources and no dashboard that is stopped
    afterwards. A Ray this process joined already is used as it is. Our progress lines replace
    Tune's tables, and our records files its per-trial result files and error reports.

    Raises:
        UsageError: the cluster cannot be joined (one line).
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        joined = cluster_address(address)
        if ray.is_initialized():  # joined already (nas.search joins before it writes anything)
            if _HEAD is not None and _HEAD.died is not None:
                raise _HEAD.died
            yield
        elif joined:
            with _our_sigterm():
                join_cluster(joined, from_env=not address)
            yield
        else:
            with local_ray():
                yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def cluster_joined(address: str | None) -> Iterator[None]:
    """The Ray cluster at `address` (or an exported RAY_ADDRESS) joined for as long as the block
    runs, so that a cluster that does not answer is one line before a command writes anything;
    without one, nothing (a local Ray starts with the Tune run).

    Raises:
        UsageError: the cluster cannot be joined (one line).
    """
    if cluster_address(address):
        with ray_session(address):
            yield
    else:
        yield


def check_resources(
    resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float, address: str | None
) -> None:
    """A trial that fits nowhere would make Tune wait forever: say so instead."""
    where = f"the Ray cluster at {address}" if address else "this machine"
    if cpus_per_trial > resources.get("CPU", 0):
        raise UsageError(f"--cpus-per-trial {cpus_per_trial:g}: {where} has {resources.get('CPU', 0):g} CPUs")
    if gpus_per_trial > resources.get("GPU", 0):
        raise UsageError(
            f"--gpus-per-trial {gpus_per_trial:g}: {where} has {resources.get('GPU', 0):g} GPUs"
            + ("" if address else "; CUDA is not available to torch here")
        )


def fitting_trials(resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster runs at once. Tune needs this number: without a concurrency
    limit it keeps a single trial pending when a searcher is used, and trials start one by one."""
    fit = int(resources.get("CPU", 1) // cpus_per_trial)
    if gpus_per_trial > 0:
        fit = min(fit, int(resources.get("GPU", 0) // gpus_per_trial))
    return max(1, fit)


def trial_slots(
    resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float, address: str | None, most: int | None
) -> int:
    """How many trials run at once: `most` (--max-concurrent), else as many as fit the cluster.

    Raises:
        UsageError: a trial fits nowhere (`check_resources`).
    """
    check_resources(resources, cpus_per_trial, gpus_per_trial, address)
    return most or fitting_trials(resources, cpus_per_trial, gpus_per_trial)


CUDA_CONTEXT_MB = 600  # what a worker process's CUDA context and kernels take on a GPU, besides tensors
GPU_GRID = 8  # --gpus-per-trial auto hands out GPU fractions in steps of 1/GPU_GRID


def gpu_fraction(need_mb: float, gpu_mb: float, headroom: float = 1.25) -> float:
    """The share of one GPU a trial needing `need_mb` of memory gets under --gpus-per-trial auto:
    its need with `headroom` plus a CUDA context, over the GPU's memory, rounded up to a step of
    1/GPU_GRID, at least one step and at most the whole GPU."""
    steps = math.ceil((need_mb * headroom + CUDA_CONTEXT_MB) / gpu_mb * GPU_GRID - 1e-9)
    return min(GPU_GRID, max(1, steps)) / GPU_GRID
