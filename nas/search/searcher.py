"""The search's Tune searcher: `ArchSearcher`, Ray's `Searcher` over the run's Optuna study.

It asks the study (`nas.search.study.RunStudy`) for new architectures through Optuna's ask/tell
API (`SearchSpace.sample(trial, full=True)`), never trains an architecture twice, races the
front's seeds and tells Optuna what happened (see its docstring). Under --gpus-per-trial auto it
gives each architecture the share of a GPU its training memory needs (`nas.tune.session.gpu_fraction`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState
from ray.tune.search import Searcher

from nas.net.arch import Arch
from nas.proxy import mean_score
from nas.run.archive import ArchResult
from nas.run.record import TrialRecord
from nas.search.state import RunState
from nas.search.told import optuna_result
from nas.space.space import SearchSpace
from nas.tune.session import gpu_fraction

if TYPE_CHECKING:
    from nas.search.study import RunStudy

__all__ = ["ArchSearcher"]


def _is_oom(record: TrialRecord) -> bool:
    return record.status == "failed" and "out of memory" in (record.error or "").lower()


class ArchSearcher(Searcher):
    """Ray's Searcher over the run's Optuna study (`nas.search.study.RunStudy`), asked and told through
    Optuna's ask/tell API.

    New architectures (up to `budget` distinct ones): first the queue (architectures a killed run
    left unrecorded, then the space's reference points), then the sampler's proposals. The
    samplers (`nas.samplers`) propose only architectures the study has not seen, evaluated or in
    flight, so nothing is trained twice and the study holds no duplicate trials; how each proposal
    came about ('sampled', 'repaired', 'mutated', 'random') is counted in `proposals` and kept as
    the trial's 'proposal' user attribute. When no unseen architecture is left the space counts as
    exhausted. After `deadline` (time.monotonic(); --time-budget) no trial starts.

    Repeated seeds (`Archive.race_targets`), asked before any new architecture: with `repeats` K
    every architecture is evaluated with K seeds; with `race` K (racing) the front's points get K
    seeds, and so do the points within the noise band of the front while the re-evaluations
    stay within `race_share` x `budget` (the front's own never wait). Evaluation k of an
    architecture (from 0) uses seed `seed + k`.

    What Optuna is told is what the front uses: an architecture's mean over its seeds. Its
    Optuna trial stays open (RUNNING) while it still wants seeds and is then told COMPLETE with
    the mean accuracy (or the proxy's rank signal, `rank_by`) and its costs (an infeasible one with its constraint values set through
    `Trial.set_constraint`, which keeps it off the front and tells constraint-aware samplers).
    An architecture told before and re-evaluated later (the front moved) is told again as a new
    trial with the same parameters and its new mean. A trial stopped early (lower fidelity) is
    told PRUNED; a failed one FAIL.

    Every decision reads the run's in-memory `Archive` (`state`, shared with the recorder: updated
    once per result) and the running trials, never the whole history, so its cost per trial does
    not grow with the run.
    """

    def __init__(
        self,
        study: RunStudy,
        space: SearchSpace,
        state: RunState,
        limits: dict[str, float],
        seed: int,
        budget: int,
        repeats: int = 1,
        race: int = 1,
        race_share: float = 0.0,
        gpu_memory_mb: float | None = None,
        batch_size: int = 64,
        queue: Sequence[dict[str, Any]] = (),
        deadline: float | None = None,
        rank_by: str = "accuracy",
    ):
        super().__init__()  # several objectives: Optuna holds them, Tune needs no metric of ours
        self.study, self.space, self.state, self.limits = study, space, state, limits
        self.archive = state.archive  # every finished evaluation, this run's earlier ones included: the recorder's too
        self.objectives = self.archive.objectives
        self.seed, self.budget, self.repeats, self.race, self.race_share = seed, budget, repeats, race, race_share
        self.queue = list(queue)  # Optuna parameters of architectures to evaluate first
        self.deadline = deadline
        self.rank_by = rank_by  # the proxy's rank signal (nas.proxy): what the sampler is told for accuracy
        self.running: dict[str, dict[str, Any]] = {}  # Ray trial id -> its config (a new arch's has 'optuna_number')
        self.untold: dict[str, int | None] = {}  # arch id -> its open Optuna trial (None: add anew)
        told = {
            t.user_attrs.get("arch_id") for t in study.journal.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        }
        for a in self.archive.architectures:  # a killed run's open trials were failed: tell those anew
            if a.status == "complete" and a.arch_id not in told:
                self.untold[a.arch_id] = None
        self._params = {a.arch_id: a.record.optuna_params for a in self.archive.architectures}  # Optuna's, per arch
        self._oom = {a.arch_id for a in self.archive.architectures if len(a.records) == 1 and _is_oom(a.records[0])}
        self.exhausted = False
        self.proposals: Counter[str] = Counter()  # how new architectures came about, this process's
        self.reevaluations = 0  # this process's
        self.gpu_memory_mb, self.batch_size = gpu_memory_mb, batch_size  # --gpus-per-trial auto
        self._gpus: dict[str, float] = {}  # arch id -> its GPU share under auto

    def gpus_for(self, arch: dict[str, Any], arch_id: str) -> float | None:
        """The GPU share of an architecture's trials under --gpus-per-trial auto (None otherwise)."""
        if self.gpu_memory_mb is None:
            return None
        if arch_id not in self._gpus:
            from nas.net.cost import training_memory_mb
            from nas.net.model import create_model

            a = Arch.from_dict(arch)
            need = training_memory_mb(create_model(a), (a.in_chans, *a.input_size), self.batch_size)
            self._gpus[arch_id] = gpu_fraction(need, self.gpu_memory_mb)
        return self._gpus[arch_id]

    # -- what to run next
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = None
        if self.deadline is None or time.monotonic() < self.deadline:
            config = self._oom_retry() or self._reevaluation()
            if config is None and not self.exhausted and self._new_archs() < self.budget:
                config = self._new_arch()
        if config is not None:
            self.running[trial_id] = config
            if "gpus" not in config and self.gpu_memory_mb is not None:
                config["gpus"] = self.gpus_for(config["arch"], config["arch_id"])
            return config
        if self.running:
            return None  # racing may still want seeds of what is running: ask again later
        self.settle(final=True)
        return Searcher.FINISHED

    def _new_archs(self) -> int:
        return len(self.archive) + sum(c.get("optuna_number") is not None for c in self.running.values())

    def _in_flight(self) -> Counter[str]:
        return Counter(c["arch_id"] for c in self.running.values())

    def _oom_retry(self) -> dict[str, Any] | None:
        """Under --gpus-per-trial auto, a trial that ran out of GPU memory on its share runs once
        more, alone on a whole GPU, with the same seed, before its failure counts."""
        if self.gpu_memory_mb is None:
            return None
        running = self._in_flight()
        for arch_id in sorted(self._oom - set(running), key=lambda a: self.archive.archs[a].number):
            a = self.archive.archs[arch_id]
            return {"arch": a.arch, "arch_id": a.arch_id, "seed": a.records[0].seed, "gpus": 1.0}
        return None

    def _targets(self) -> list[tuple[ArchResult, int]]:
        extra = len(self.archive.records) + len(self.running) - self._new_archs()
        return self.archive.race_targets(
            repeats=self.repeats, race=self.race, band=extra < self.race_share * self.budget
        )

    def _reevaluation(self) -> dict[str, Any] | None:
        pending = self._in_flight()
        for a, target in self._targets():
            n = pending.get(a.arch_id, 0)
            if a.seeds + n < target and len(a.records) + n < target + 2:  # + 2: failed seeds are retried twice
                self.reevaluations += 1
                return {"arch": a.arch, "arch_id": a.arch_id, "seed": self.seed + len(a.records) + n}
        return None

    def _new_arch(self) -> dict[str, Any] | None:
        flying = self._in_flight()

        def known(arch_id: str) -> bool:
            return arch_id in self.archive.archs or arch_id in flying

        while self.queue and known(self.space.point(self.queue[0]).arch_id):
            self.queue.pop(0)  # evaluated meanwhile (a queued reference point found by the sampler)
        number, arch, params, kind = self.study.ask(self.queue.pop(0) if self.queue else None)
        if known(arch.arch_id):  # the sampler found nothing unseen: the space is exhausted
            self.study.end(number, TrialState.FAIL, {"duplicate_of": arch.arch_id})
            self.exhausted = True
            return None
        self.proposals[kind or "queued"] += 1
        self._params[arch.arch_id] = params
        return {
            "arch": arch.to_dict(),
            "arch_id": arch.arch_id,
            "seed": self.seed,
            "optuna_number": number,
            "optuna_params": params,
        }

    # -- what happened
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.running:
            return
        config = self.running.pop(trial_id)
        arch_id, number = config["arch_id"], config.get("optuna_number")
        # in the archive from here on, numbered (Tune hands no result of a trial that raised)
        record, _ = self.state.finished(trial_id, {} if error else result or {}, config, error=error)
        a = self.archive.archs[arch_id]
        if len(a.records) == 1 and _is_oom(record):
            self._oom.add(arch_id)
        else:
            self._oom.discard(arch_id)
        try:
            if number is not None:
                if record.status in ("stopped", "failed"):  # told PRUNED, FAIL
                    self.study.tell(number, optuna_result(record, self.objectives, self.limits))
                else:
                    self.untold[arch_id] = number  # told below, once it wants no more seeds
            elif record.status == "complete" and arch_id not in self.untold:
                self.untold[arch_id] = None  # a re-evaluation moved its mean: tell the new mean
            self.settle()
        except OSError:  # the study's journal cannot be written: the run ends with it (nas.tune.runner.TuneRun)
            raise
        except Exception as e:  # Optuna refuses e.g. NaN values: the trial is still recorded by us
            logging.getLogger(__name__).warning("Optuna did not take trial %s: %s", trial_id, e)

    def settle(self, final: bool = False) -> None:
        """Tell Optuna the mean of every architecture that wants no more seeds (every one, if final)."""
        if not self.untold:
            return
        wanting = set() if final else {a.arch_id for a, target in self._targets() if a.seeds < target}
        for arch_id in [a for a in self.untold if a not in wanting]:
            self._tell(self.archive.archs[arch_id], self.untold.pop(arch_id))

    def _tell(self, a: ArchResult, number: int | None) -> None:
        """Tell Optuna an architecture's mean: as its open trial `number`, or as a new trial."""
        told = optuna_result(a, self.objectives, self.limits, score=self._score(a), seeds=a.seeds)
        if number is not None:
            self.study.tell(number, told)
            return
        params = self._params.get(a.arch_id) or self.space.params_of(Arch.from_dict(a.arch))
        self.study.add(params, told, a.arch_id)

    def _score(self, a: ArchResult) -> float:
        """What the sampler is told for accuracy: the mean of the proxy's rank signal over the
        architecture's complete evaluations (its mean accuracy for the default signal). The front,
        racing and every report stay on accuracy."""
        if self.rank_by == "accuracy":
            return float(a.accuracy or 0.0)
        score = mean_score(a.complete, self.rank_by)
        return float(score) if score is not None else float(a.accuracy or 0.0)

    def save(self, checkpoint_path: str) -> None:
        """Tune's experiment checkpoint: the study lives in the run's journal and the record of
        what is done in trials.jsonl, so only the counters are kept."""
        Path(checkpoint_path).write_text(json.dumps(dict(self.proposals)) + "\n")

    def restore(self, checkpoint_path: str) -> None:
        self.proposals = Counter(json.loads(Path(checkpoint_path).read_text()))
