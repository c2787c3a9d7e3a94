"""A search from its options to its report: `run()` (the Python API) and `search()` (its CLI's too).

`search` resolves the run folder and claims it (`nas.search.setup`), then `_search` runs the
session's steps: set up, open the study and say what is starting (`_start`), evaluate on Ray Tune
(`nas.search.tuning`), then say how it ended and show the front (`_report`). An interruption,
a full disk or a bad option leaves one line and, where there is one, the command that continues.
"""

from __future__ import annotations

import errno
import math
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.cli import Terminated
from nas.data.dataset import DataError
from nas.errors import UsageError
from nas.run.folder import RunConfig, RunError, RunFolder
from nas.run.ladder import rung_of
from nas.search.options import SearchOptions
from nas.search.promote import check_lines, promote
from nas.search.report import front_report, start_notes
from nas.search.setup import Claim, SetUp, resolve_run, resume_command, set_up
from nas.search.state import RunState
from nas.search.study import open_study
from nas.space.decision import SpaceError

if TYPE_CHECKING:
    from nas.search.study import RunStudy
    from nas.search.tuning import TuneOutcome

__all__ = ["run", "search", "proposals_line"]

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a fault the user fixes by freeing space


def run(space: str | Path | None = None, **options: Any) -> RunFolder:
    """Run (or, with `resume=RUN`, continue) a search and return its run folder.

    Args:
        space: the search-space YAML (default: search_spaces/symmetry.yaml); not needed with `resume`.
        **options: any field of `SearchOptions` (budget, objectives, sampler, seed, epochs, ...),
            as the command line's flags without their dashes.

    Raises:
        UsageError: a bad option, space, dataset or run folder (the message is one line).
    """
    if space is not None:
        options["space"] = Path(space)
    opts = SearchOptions.from_dict(options)
    return search(opts, explicit=set(options), command=f"nas.search.run({space!r}, **{options!r})")


def search(opts: SearchOptions, explicit: set[str], command: str) -> RunFolder:
    """The search behind the CLI and `run()`; `explicit` names the options given (not defaults)."""
    try:
        opts.checked()  # every option given, before a folder is made or Ray starts
        run_folder, opts, stored = resolve_run(opts, explicit)
    except (SpaceError, DataError, RunError) as e:
        raise UsageError(str(e)) from None
    claim = Claim(run_folder, stored is not None, command)
    try:
        if claim.existed:  # a run folder in use is refused at once, before anything loads
            claim()
        return _search(run_folder, opts.checked(), stored, command, claim)
    except (UsageError, SpaceError, DataError, RunError) as e:
        claim.undo()
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        if run_folder.exists() and claim.made:
            signal_name = "SIGTERM" if isinstance(sys.exc_info()[1], Terminated) else "Ctrl-C"
            print(
                f"\ninterrupted ({signal_name}); nothing recorded is lost; continue with: "
                f"{resume_command(run_folder.path)}",
                file=sys.stderr,
            )
        raise
    except OSError as e:  # a full disk, a folder gone read-only: the run's fault, not a trial's
        where = e.filename if e.filename and e.filename != str(run_folder.path) else run_folder.path
        if claim.undo():  # a new run that recorded nothing: nothing to continue
            raise UsageError(f"{where}: {e.strerror or e}; nothing was recorded") from None
        e.filename = str(where)
        notes = getattr(e, "__notes__", [])
        if not any("the search stopped" in n for n in notes):
            e.__notes__ = ["the search stopped", *notes]
            notes = e.__notes__
        if not any("continue with" in n for n in notes):
            fix = "free some space" if e.errno in NO_SPACE else "fix that"
            e.add_note(f"{fix}, then continue with: {resume_command(run_folder.path)}")
        raise
    finally:
        try:
            claim.stack.close()  # a local Ray stopped (a second SIGTERM is raised once it is down)
        finally:
            claim.lock.release()


def _search(folder: RunFolder, opts: SearchOptions, stored: RunConfig | None, command: str, claim: Claim) -> RunFolder:
    """Search in `folder` (resumed: `stored` is its run.yaml): set it up, evaluate architectures up
    to the budget, promote its front up the fidelity ladder (`nas.search.promote`), then say how it
    ended."""
    setup = set_up(folder, opts, stored, command, claim)
    deadline = None if opts.time_budget is None else time.monotonic() + opts.time_budget  # the proxy's and promotion's
    promoted = any(rung_of(r) > 0 for r in setup.records)
    setup = replace(setup, records=[r for r in setup.records if rung_of(r) == 0])  # the proxy's: the search's own rung
    state = RunState(opts.objectives, setup.records)  # the searcher's and the recorder's
    archive = state.archive
    remaining = opts.budget - len(archive)
    wanting = [a for a, n in archive.race_targets(repeats=opts.repeats, race=opts.race, band=False) if a.seeds < n]
    finished = remaining <= 0 and not wanting
    if finished:
        print(f"{folder.path}: {len(archive)} architectures done, budget {opts.budget} reached")
    else:
        study, queue, references = _start(folder, opts, setup, stored is not None, len(archive), remaining)
        proxy_opts = opts
        if opts.promote:  # one Ray for the search and its promotion
            from nas.tune.session import ray_session

            claim.stack.enter_context(ray_session(setup.address))
            proxy_opts = _time_shared(opts)
        outcome = _tune(folder, proxy_opts, setup, state, study, queue, references)
        finished = _report(folder, opts, setup, state, outcome)
        finished = finished or _timed_out(proxy_opts, outcome, len(archive))  # promoted in what the budget kept
    if finished:
        promoted = promote(folder, opts, setup.gpus, setup.address, deadline) is not None or promoted
    print(_front(folder, setup, state, promoted))
    for line in check_lines(folder):
        print(line)
    return folder


def _time_shared(opts: SearchOptions) -> SearchOptions:
    """The proxy search's options when a promotion follows: of a --time-budget T, the proxy search
    gets T / (1 + --promote-share), so that a promotion of its share fits in the rest (it says so)."""
    if opts.time_budget is None:
        return opts
    proxy = opts.time_budget / (1 + opts.promote_share)
    print(
        f"--time-budget {opts.time_budget:g} s: the proxy search starts trials for {proxy:.0f} s, the promotion "
        f"gets what is left ({opts.promote_share:g} of the proxy's share, --promote-share)",
        flush=True,
    )
    return replace(opts, time_budget=proxy)


def _timed_out(opts: SearchOptions, outcome: TuneOutcome, done: int) -> bool:
    """Whether --time-budget, not the budget, the space or failures, ended the proxy search."""
    failed = opts.max_failures is not None and outcome.failures > opts.max_failures
    return opts.time_budget is not None and done < opts.budget and not outcome.exhausted and not failed


def _start(
    folder: RunFolder,
    opts: SearchOptions,
    setup: SetUp,
    resumed: bool,
    done: int,
    remaining: int,
) -> tuple[RunStudy, list[dict[str, Any]], dict[str, str]]:
    """The run's study, the architectures to evaluate first and the reference points' names (arch id
    -> name), with the lines that open the session."""
    space = setup.space
    study, stale, queue, notes = open_study(folder, opts, space, setup.records)
    references = {a.arch_id: name for name, a in space.reference_points().items()}
    again = sum(space.point(params).arch_id not in references for params in queue)
    for line in notes:
        print(line, flush=True)
    if resumed:
        print(
            f"resuming {folder.path}: {done} architectures done, {max(0, remaining)} to go"
            + (f" ({stale} interrupted trials marked failed in the study)" if stale else "")
            + (f"; {again} architectures started but not recorded are evaluated first" if again else "")
        )
    size = "infinitely many" if not math.isfinite(space.size) else f"{int(space.size):,}"
    print(
        f"{folder.path}: {setup.data.summary()}; space {space.name} ({size} architectures); objectives "
        f"{', '.join(opts.objectives)}; sampler {opts.sampler}, seed {opts.seed}",
        flush=True,
    )
    for line in start_notes(space, setup.data, setup.proxy, opts, setup.calibration):
        print(line, flush=True)
    return study, queue, references


def _tune(
    folder: RunFolder,
    opts: SearchOptions,
    setup: SetUp,
    state: RunState,
    study: RunStudy,
    queue: list[dict[str, Any]],
    references: dict[str, str],
) -> TuneOutcome:
    """The session's evaluations on Ray Tune (run.yaml records the cluster once it is known)."""
    from nas.search.tuning import SearchTuning, run_tune
    from nas.trial import TrialSettings

    def on_cluster(cluster: dict[str, Any]) -> None:
        setup.config.ray = cluster
        folder.write_config(setup.config)

    settings = TrialSettings(
        proxy=setup.proxy,
        num_classes=setup.data.num_classes,
        limits=opts.limits,
        device="cuda" if setup.gpus > 0 else "cpu",
    )
    job = SearchTuning(
        opts=opts,
        run=folder,
        study=study,
        space=setup.space,
        data=setup.data,
        settings=settings,
        state=state,
        scales=setup.config.hypervolume_scale,
        references=references,
        queue=queue,
        gpus_per_trial=setup.gpus,
        gpu_memory_mb=setup.gpu_memory,
        address=setup.address,
    )
    return run_tune(job, on_cluster=on_cluster)


def _report(folder: RunFolder, opts: SearchOptions, setup: SetUp, state: RunState, outcome: TuneOutcome) -> bool:
    """How the session ended; True when the search is done (its budget reached, or the space
    exhausted). A stop by a signal is raised again (KeyboardInterrupt, Terminated: `run` says how
    to continue), a full disk as the OSError it is."""
    if outcome.interrupted:  # after Tune's clean stop
        raise Terminated() if outcome.signal == signal.SIGTERM else KeyboardInterrupt()
    if outcome.disk_error is not None:
        e = outcome.disk_error
        e.filename = e.filename or str(folder.path)
        e.__notes__ = getattr(e, "__notes__", [])  # first: what happened to the search, then what was kept
        e.__notes__.insert(
            0,
            "the search stopped"
            + (
                f" ({outcome.unrecorded} trained but not recorded: --resume evaluates it again)"
                if outcome.unrecorded
                else ""
            ),
        )
        raise e
    done = len(state.archive)
    if outcome.reevaluations:
        print(f"{outcome.reevaluations} re-evaluations with new seeds (the front and the points within its noise)")
    if outcome.proposals:
        print(proposals_line(outcome.proposals))
    if outcome.exhausted:
        print("the space is exhausted: no architecture is left that has not been evaluated")
    elif opts.max_failures is not None and outcome.failures > opts.max_failures:
        print(f"stopped: {outcome.failures} failed trials, more than --max-failures {opts.max_failures}")
        return False
    elif done < opts.budget:
        print(f"stopped at {done}/{opts.budget} architectures; continue with: {resume_command(folder.path)}")
        return False
    return True


def _front(folder: RunFolder, setup: SetUp, state: RunState, promoted: bool) -> str:
    """pareto.json rewritten from the run's archive (which brings the counts and the noise flags of
    points off the front up to date), and the front in words; a promoted run's archive holds every
    rung (read once more, after the promotion appended to trials.jsonl)."""
    archive = RunState(state.archive.objectives, folder.trials()).archive if promoted else state.archive
    summary = folder.write_summary(archive.summary(setup.config.hypervolume_scale))
    return front_report(summary, archive.records, folder.path)


def proposals_line(proposals: dict[str, int]) -> str:
    """How this session's new architectures came about, in one line."""
    words = {
        "queued": "queued (reference points, unfinished ones)",
        "sampled": "proposed by the sampler",
        "mutated": "mutated from a front parent",
        "repaired": "repaired (the sampler proposed one already seen; its nearest unseen neighbour was taken)",
        "random": "random (the evolution's first population)",
        "fill-in": "random fill-ins (no unseen neighbour of the proposal)",
    }
    total = sum(proposals.values())
    return f"{total} new architectures: " + ", ".join(
        f"{n} {words.get(k, k)}" for k, n in sorted(proposals.items(), key=lambda kv: -kv[1])
    )
