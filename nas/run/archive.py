"""The run's architectures in memory: each one's evaluations over seeds and rungs, and the Pareto
front of their means kept up to date as evaluations arrive.

`ArchResult` is one architecture over its evaluations (what the front, the knee, exports and the
hypervolume use); `aggregate` groups records into them. `Archive` holds them all and answers what a
search driver asks after every trial at a cost that does not grow with the run's history: the
front, the points within its noise (racing), the seeds each wants, the pooled seed noise and the
pareto.json summary. It agrees with the batch functions of `nas.run.pareto` (tested on random runs):

    >>> archive = Archive(['accuracy', 'macs'])
    >>> for record in run.trials():
    ...     archive.add(record)            # True when the front (or a point's place on it) changed
    >>> archive.front(), archive.summary(scales)

Rungs (`nas.run.ladder`). An evaluation is trained at a rung of the fidelity ladder: 0 the proxy,
1 and up the longer training of promoted architectures. An architecture's accuracy (its mean,
standard error and seeds) is taken at the highest rung it reached; its costs are the same at every
rung. `Archive` keeps one `RungArchive` per rung, each the front of its rung's means with that
rung's noise: the front, the knee, the hypervolume and pareto.json are the highest rung's (an
architecture not promoted ranks below the promoted ones), racing and the noise band work within a
rung (`race_targets(rung=0)` is the search's), and pareto.json says each point's rung and how the
proxy ranks the promoted architectures against the rung above it (`rank_agreement`).

How the front stays cheap. Losses of every candidate (complete, feasible, every objective measured)
live in one array. A point that arrives or improves off the front is compared with the front only.
A front point whose mean gets worse (another seed) may free points it alone dominated: the points
not dominated by the rest of the front are found in one vectorised pass, and the front is taken
among those few. The noise band and the separability flags compare every candidate with the front
in one vectorised pass (n x |front|), done at most once per change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.run import pareto
from nas.run.ladder import rank_agreement, rung_of
from nas.run.pareto import NOISE_Z, OBJECTIVES
from nas.run.reproduce import reproduction

if TYPE_CHECKING:
    from nas.run.record import TrialRecord

__all__ = ["ArchResult", "aggregate", "seed_std", "Archive", "RungArchive"]

REPRODUCE_SEEDS = 2  # the retraining a front's reproduction is predicted for: nas.fidelity's default seeds
REPRODUCE_Z = 4.0  # points this many standard errors behind the front are left out (their chance is ~3e-5)
REPRODUCE_POINTS = 64  # and at most this many points with the front (the closest)


@dataclass
class ArchResult:
    """One architecture over all its evaluations (one per seed and rung): what the front, the knee,
    exports, pareto.json and the hypervolume use. Accuracy is the mean over its complete
    evaluations at its rung (the highest it reached, or `at` where given), with its standard
    error (None below 2 seeds); costs are its first complete evaluation's, at any rung (params
    and MACs are exact; latency and memory are measured once). It has `number`, `status`,
    `feasible` and `value(objective)`, so every nas.run.pareto function takes it."""

    records: list[TrialRecord]  # its evaluations, in the order they finished
    at: int | None = None  # the rung it is seen at; None: the highest at which it has a complete evaluation
    _complete: tuple[int, list[TrialRecord], int, list[TrialRecord]] = field(
        default=(-1, [], 0, []), init=False, repr=False, compare=False
    )

    def _state(self) -> tuple[int, list[TrialRecord], int, list[TrialRecord]]:
        """(records seen, complete evaluations at any rung, its rung, complete ones at its rung),
        remembered until another is added: records are appended only."""
        if self._complete[0] != len(self.records):
            done = [r for r in self.records if r.status == "complete" and r.accuracy is not None]
            rung = self.at if self.at is not None else max((rung_of(r) for r in done), default=0)
            self._complete = (len(self.records), done, rung, [r for r in done if rung_of(r) == rung])
        return self._complete

    @property
    def rung(self) -> int:
        """The rung its accuracy is taken at."""
        return self._state()[2]

    @property
    def complete(self) -> list[TrialRecord]:
        """Its complete evaluations at its rung."""
        return self._state()[3]

    @property
    def record(self) -> TrialRecord:
        """The evaluation that stands for it: its first complete one at any rung (its weights, its
        costs), else its first."""
        return (self._state()[1] or self.records)[0]

    @property
    def number(self) -> int:
        return self.record.number

    @property
    def arch_id(self) -> str:
        return self.records[0].arch_id

    @property
    def arch(self) -> dict[str, Any]:
        return self.records[0].arch

    @property
    def reference(self) -> str | None:
        return self.records[0].reference

    @property
    def status(self) -> str:
        if self.complete:
            return "complete"
        at_rung = [r for r in self.records if rung_of(r) == self.rung]
        return (at_rung or self.records)[-1].status

    @property
    def feasible(self) -> bool:
        return self.records[0].feasible

    @property
    def seeds(self) -> int:
        """Complete evaluations (distinct seeds)."""
        return len(self.complete)

    @property
    def accuracies(self) -> list[float]:
        return [float(r.accuracy) for r in self.complete]

    @property
    def accuracy(self) -> float | None:
        """The mean over complete evaluations at its rung; for one never complete, its last accuracy
        (a stopped trial's, at a lower fidelity) or None."""
        accs = self.accuracies
        if accs:
            return sum(accs) / len(accs)
        at_rung = [r for r in self.records if rung_of(r) == self.rung]
        return (at_rung or self.records)[-1].accuracy

    @property
    def accuracy_std(self) -> float | None:
        """Sample standard deviation over seeds (None below 2 seeds)."""
        accs = self.accuracies
        if len(accs) < 2:
            return None
        mean = sum(accs) / len(accs)
        return (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5

    @property
    def accuracy_se(self) -> float | None:
        """Standard error of the mean accuracy (None below 2 seeds)."""
        std = self.accuracy_std
        return None if std is None else std / len(self.accuracies) ** 0.5

    # the exact costs and what the weights file was trained with: its standing evaluation's
    params = property(lambda self: self.record.params)
    macs = property(lambda self: self.record.macs)
    latency_ms = property(lambda self: self.record.latency_ms)
    memory_mb = property(lambda self: self.record.memory_mb)
    epochs = property(lambda self: self.record.epochs)
    weights = property(lambda self: self.record.weights)
    error = property(lambda self: self.records[-1].error)
    seconds = property(lambda self: sum(r.seconds for r in self.records))  # all its evaluations

    def value(self, objective: str) -> float | None:
        if objective == "accuracy":
            return self.accuracy
        return self.record.value(objective)

    def summary(self) -> dict[str, Any]:
        """Its pareto.json entry."""
        return {
            "number": self.number,
            "arch_id": self.arch_id,
            "reference": self.reference,
            "rung": self.rung,
            "accuracy": self.accuracy,
            "accuracy_se": self.accuracy_se,
            "accuracy_std": self.accuracy_std,
            "seeds": self.seeds,
            "accuracies": self.accuracies,
            **{o: self.value(o) for o in OBJECTIVES if o != "accuracy"},
            "weights": self.record.weights,
        }


def aggregate(records: Sequence[TrialRecord]) -> list[ArchResult]:
    """One ArchResult per architecture, in the order each was first evaluated."""
    by_id: dict[str, list[TrialRecord]] = {}
    for r in records:
        by_id.setdefault(r.arch_id, []).append(r)
    return [ArchResult(rs) for rs in by_id.values()]


def seed_std(archs: Sequence[ArchResult]) -> float | None:
    """The seed-to-seed standard deviation of accuracy at the highest rung an architecture completed
    (the proxy's, without promotion), pooled over the architectures there with at least 2 seeds
    (the root of the mean variance); None when there is none."""
    top = max((a.rung for a in archs if a.status == "complete"), default=0)
    variances = [a.accuracy_std**2 for a in archs if a.accuracy_std is not None and a.rung == top]
    return (sum(variances) / len(variances)) ** 0.5 if variances else None


class RungArchive:
    """The architectures evaluated at one rung and the Pareto front of their means there, updated
    one evaluation at a time (see the module docstring). Architectures are kept in the order first
    evaluated at the rung; each is an `ArchResult` seen at the rung, sharing its records with the
    architecture's own (`Archive.archs`)."""

    def __init__(self, objectives: Sequence[str], rung: int = 0):
        self.objectives = list(objectives)
        self.rung = rung
        self.records: list[TrialRecord] = []
        self.archs: dict[str, ArchResult] = {}
        self._order: list[ArchResult] = []  # by index
        self._index: dict[str, int] = {}
        m = len(self.objectives)
        self._loss = np.zeros((16, m))
        self._valid = np.zeros(16, dtype=bool)
        self._own_se = np.full(16, np.nan)  # an architecture's own standard error (nan below 2 seeds)
        self._seeds = np.zeros(16)
        self._variances: dict[int, float] = {}  # index -> seed variance, for the pooled std
        self._front: set[int] = set()
        self._short: dict[int, None] = {}  # candidates with fewer seeds than `repeats` asks (ordered)
        self._repeats = 1
        self._cache: dict[tuple[Any, ...], Any] = {}  # band, flags: valid until the next change
        self._acc_col = self.objectives.index("accuracy")

    def __len__(self) -> int:
        return len(self._order)

    @property
    def architectures(self) -> list[ArchResult]:
        return list(self._order)

    # -- adding evaluations
    def add(self, record: TrialRecord, records: list[TrialRecord]) -> bool:
        """Count one evaluation at this rung, already appended to `records` (its architecture's, at
        every rung); True when the front's membership changed or one of its points got another
        evaluation."""
        self.records.append(record)
        i = self._index.get(record.arch_id)
        if i is None:
            i = self._index[record.arch_id] = len(self._order)
            a = ArchResult(records, at=self.rung)
            self._order.append(a)
            self.archs[record.arch_id] = a
            self._grow(i + 1)
        before = set(self._front)
        self._update(i)
        self._cache.clear()
        return before != self._front or i in self._front

    def _grow(self, n: int) -> None:
        if n <= len(self._valid):
            return
        size = max(n, 2 * len(self._valid))
        self._loss = np.vstack([self._loss, np.zeros((size - len(self._loss), self._loss.shape[1]))])
        self._valid = np.concatenate([self._valid, np.zeros(size - len(self._valid), dtype=bool)])
        self._own_se = np.concatenate([self._own_se, np.full(size - len(self._own_se), np.nan)])
        self._seeds = np.concatenate([self._seeds, np.zeros(size - len(self._seeds))])

    def _update(self, i: int) -> None:
        a = self._order[i]
        valid = bool(pareto.candidates([a], self.objectives))
        self._valid[i] = valid
        if valid:
            self._loss[i] = pareto.losses_of([a], self.objectives)[0]
        std = a.accuracy_std
        self._own_se[i] = np.nan if std is None else std / a.seeds**0.5
        self._seeds[i] = a.seeds
        if std is None:
            self._variances.pop(i, None)
        else:
            self._variances[i] = std**2
        if valid and a.seeds < self._repeats:
            self._short[i] = None
        else:
            self._short.pop(i, None)
        self._update_front(i)

    def _update_front(self, i: int) -> None:
        n = len(self._order)
        if i in self._front:  # its losses changed (or it is no candidate now): points it held down may rise
            rest = np.fromiter(self._front - {i}, dtype=int)
            loss, valid = self._loss[:n], self._valid[:n]
            free = valid & ~self._dominated_by(loss, rest)
            idx = np.flatnonzero(free)
            ranks = pareto.nondominated_ranks(loss[idx])
            self._front = {int(j) for j, r in zip(idx, ranks) if r == 0}
            return
        if not self._valid[i]:
            return
        front = np.fromiter(self._front, dtype=int)
        if self._dominated_by(self._loss[i : i + 1], front)[0]:
            return
        mine = self._loss[i]
        beaten = {int(f) for f in front if (mine <= self._loss[f]).all() and (mine < self._loss[f]).any()}
        self._front = (self._front - beaten) | {i}

    def _dominated_by(self, losses: np.ndarray, by: np.ndarray) -> np.ndarray:
        """For each row of `losses`: whether a point of `by` (indices) dominates it."""
        if len(by) == 0:
            return np.zeros(len(losses), dtype=bool)
        b = self._loss[by][None, :, :]
        x = losses[:, None, :]
        return ((b <= x).all(axis=2) & (b < x).any(axis=2)).any(axis=1)

    # -- what the run is now
    @property
    def sigma(self) -> float | None:
        """The pooled seed standard deviation (see `seed_std`)."""
        v = self._variances
        return (sum(v.values()) / len(v)) ** 0.5 if v else None

    def front(self) -> list[ArchResult]:
        """The front of architecture means, by increasing first cost (then number), as `pareto.front`."""
        key = self.objectives[1] if len(self.objectives) > 1 else self.objectives[0]
        return sorted((self._order[i] for i in self._front), key=lambda a: (float(a.value(key)), a.number))

    def _errors(self) -> np.ndarray:
        """Each candidate's accuracy standard error, as `pareto.accuracy_errors`."""
        n = len(self._order)
        sigma = self.sigma
        fallback = np.full(n, np.nan) if sigma is None else sigma / np.sqrt(np.maximum(1, self._seeds[:n]))
        return np.where(np.isnan(self._own_se[:n]), fallback, self._own_se[:n])

    def _noise(self, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """front indices, dominated candidate indices, dom[d, f] (front point f dominates d) and
        the noise margin[d, f] of their accuracy difference."""
        key = ("noise", z)
        if key not in self._cache:
            n = len(self._order)
            valid = np.flatnonzero(self._valid[:n])
            front = np.array(sorted(self._front), dtype=int)
            others = np.setdiff1d(valid, front)
            se = self._errors()
            lf, ld = self._loss[front], self._loss[others]
            dom = (lf[None] <= ld[:, None]).all(axis=2) & (lf[None] < ld[:, None]).any(axis=2)
            margin = z * np.sqrt(se[others][:, None] ** 2 + se[front][None, :] ** 2)
            self._cache[key] = (front, others, dom, margin)
        return self._cache[key]

    def _acc(self, idx: np.ndarray) -> np.ndarray:
        return -self._loss[idx, self._acc_col]

    def band(self, z: float = NOISE_Z) -> list[ArchResult]:
        """Dominated points that could be on the front within the noise (see `pareto.noise_band`),
        closest to the front first."""
        front, others, dom, margin = self._noise(z)
        if len(others) == 0 or len(front) == 0:
            return []
        gap = self._acc(front)[None, :] - self._acc(others)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            behind = np.where(dom, gap / margin, -np.inf).max(axis=1)
        keep = np.flatnonzero(behind < 1.0)  # nan (noise unknown) compares False
        rows = sorted((float(behind[k]), self._order[others[k]].number, int(others[k])) for k in keep)
        return [self._order[i] for *_, i in rows]

    def _unseparable(self, z: float) -> dict[int, list[int]]:
        """front index -> indices of the dominated points that may truly dominate it."""
        front, others, _, margin = self._noise(z)
        if len(others) == 0 or len(front) == 0:
            return {}
        costs = np.delete(self._loss, self._acc_col, axis=1)
        cheaper = (costs[others][:, None, :] <= costs[front][None, :, :]).all(axis=2)
        gap = self._acc(front)[None, :] - self._acc(others)[:, None]
        near = cheaper & (gap < margin)
        return {
            int(f): [int(others[d]) for d in np.flatnonzero(near[:, j])]
            for j, f in enumerate(front)
            if near[:, j].any()
        }

    def unseparable(self, z: float = NOISE_Z) -> dict[int, list[int]]:
        """Front point number -> numbers of the dominated points that may truly dominate it
        (see `pareto.unseparable`)."""
        return {self._order[f].number: [self._order[d].number for d in ds] for f, ds in self._unseparable(z).items()}

    def race_targets(self, *, repeats: int = 1, race: int = 1, band: bool = True) -> list[tuple[ArchResult, int]]:
        """The seeds each point should have, most urgent first, as `pareto.race_targets`, except
        that points that already have their `repeats` seeds are left out (they want nothing)."""
        if repeats != self._repeats:
            self._repeats = repeats
            self._short = {
                i: None for i in np.flatnonzero(self._valid[: len(self)]).tolist() if self._seeds[i] < repeats
            }
        out: dict[int, tuple[ArchResult, int]] = {}
        if race > 1:
            for a in sorted((self._order[i] for i in self._front), key=lambda a: (a.seeds, a.number)):
                out[a.number] = (a, max(race, repeats))
            if band:
                for a in self.band():
                    out.setdefault(a.number, (a, max(race, repeats)))
        if repeats > 1:
            for i in self._short:
                a = self._order[i]
                out.setdefault(a.number, (a, repeats))
        return list(out.values())

    def hypervolume(self, scales: Mapping[str, float]) -> float:
        """As `pareto.hypervolume` of every point (only the front adds to it)."""
        return pareto.hypervolume(self.front(), self.objectives, scales)

    def reproduction(
        self, retrain_seeds: int = REPRODUCE_SEEDS, measured_seeds: int | None = None
    ) -> dict[str, Any] | None:
        """How the front would reproduce in a retraining with `retrain_seeds` seeds per network, and
        each point's probability of being on the front (`nas.run.reproduce.reproduction` over the
        front and the points within REPRODUCE_Z standard errors of it, at most REPRODUCE_POINTS,
        closest first; `measured_seeds` as there); None without a pooled seed std or a front.
        `p_front` maps arch ids."""
        key = ("reproduction", retrain_seeds, measured_seeds)
        if key not in self._cache:
            sigma = self.sigma
            front = sorted(self._front)
            out = None
            if sigma and front:
                idx = [*front, *(self._index[a.arch_id] for a in self.band(REPRODUCE_Z))]
                idx = np.array(idx[: max(REPRODUCE_POINTS, len(front))], dtype=int)
                costs = np.delete(self._loss[idx], self._acc_col, axis=1)
                r = reproduction(
                    self._acc(idx), self._seeds[idx], costs, sigma, retrain_seeds, measured_seeds=measured_seeds
                )
                out = {k: r[k] for k in ("retrain_seeds", "precision", "recall")}
                out["points"] = len(idx)
                out["p_front"] = {self._order[i].arch_id: round(float(p), 3) for i, p in zip(idx, r["p_front"])}
            self._cache[key] = out
        return self._cache[key]

    def summary(self, scales: Mapping[str, float] | None, reproduce: bool = True) -> dict[str, Any]:
        """pareto.json: the front of architecture means with standard errors, noise flags and
        probabilities of being on the front, the pooled seed std, how the front would reproduce in a
        retraining (`reproduction`; a Monte Carlo of ~0.1 s, so the search leaves it out of the
        pareto.json it writes while running: `reproduce` False) and the hypervolume."""
        near = {
            self._order[f].arch_id: [self._order[d].arch_id for d in ds] for f, ds in self._unseparable(NOISE_Z).items()
        }
        again = dict((reproduce and self.reproduction()) or {})
        p_front = again.pop("p_front", {})
        return {
            "objectives": self.objectives,
            "directions": pareto.directions(self.objectives),
            "hypervolume": self.hypervolume(scales) if scales else None,
            "hypervolume_scale": dict(scales or {}),
            "trials": len(self.records),
            "architectures": len(self._order),
            "seed_std": self.sigma,
            "reproduction": again or None,
            "front": [
                {
                    **a.summary(),
                    "separable": not near.get(a.arch_id),
                    "unseparable_from": near.get(a.arch_id, []),
                    "p_front": p_front.get(a.arch_id),
                }
                for a in self.front()
            ],
        }


class Archive:
    """Every architecture of a run over the rungs of the fidelity ladder, and the front that ranks
    the highest rung first, updated one evaluation at a time (see the module docstring). Its
    `archs` and `architectures` are whole (accuracy at the highest rung each reached), in the order
    first evaluated; the front and everything on noise are the highest rung's `RungArchive`'s, and
    racing asks a rung's (the search's: rung 0). With every evaluation at rung 0 it is that rung's
    `RungArchive`, and pareto.json is what it was before rungs."""

    def __init__(self, objectives: Sequence[str]):
        self.objectives = list(objectives)
        self.records: list[TrialRecord] = []
        self.archs: dict[str, ArchResult] = {}
        self._rungs: dict[int, RungArchive] = {}

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def architectures(self) -> list[ArchResult]:
        return list(self.archs.values())

    def at(self, rung: int) -> RungArchive:
        """The architectures evaluated at `rung` (none yet: an empty one)."""
        if rung not in self._rungs:
            self._rungs[rung] = RungArchive(self.objectives, rung)
        return self._rungs[rung]

    @property
    def rung(self) -> int:
        """The highest rung with a front (0 when none has one): the rung of the front."""
        return max((r for r, archive in self._rungs.items() if archive._front), default=0)

    def add(self, record: TrialRecord) -> bool:
        """Count one evaluation; True when the front's membership changed, one of its points got
        another evaluation, or the front moved up a rung."""
        self.records.append(record)
        a = self.archs.get(record.arch_id)
        if a is None:
            a = self.archs[record.arch_id] = ArchResult([])
        a.records.append(record)
        top, rung = self.rung, rung_of(record)
        changed = self.at(rung).add(record, a.records)
        return self.rung != top or (changed and rung == top)

    def _whole(self, points: Sequence[ArchResult]) -> list[ArchResult]:
        return [self.archs[p.arch_id] for p in points]

    # -- the front's rung
    @property
    def sigma(self) -> float | None:
        """The pooled seed standard deviation at the front's rung (see `seed_std`)."""
        return self.at(self.rung).sigma

    def front(self) -> list[ArchResult]:
        """The front of the highest rung's architecture means, by increasing first cost (then
        number), as `pareto.front`."""
        return self._whole(self.at(self.rung).front())

    def band(self, z: float = NOISE_Z) -> list[ArchResult]:
        """The front rung's points that could be on the front within its noise (`pareto.noise_band`)."""
        return self._whole(self.at(self.rung).band(z))

    def unseparable(self, z: float = NOISE_Z) -> dict[int, list[int]]:
        """Front point number -> numbers of the points of its rung that may truly dominate it."""
        return self.at(self.rung).unseparable(z)

    def race_targets(
        self, *, repeats: int = 1, race: int = 1, band: bool = True, rung: int = 0
    ) -> list[tuple[ArchResult, int]]:
        """The seeds each point of `rung` (the search's proxy by default) should have, most urgent
        first, seen at that rung (`RungArchive.race_targets`)."""
        return self.at(rung).race_targets(repeats=repeats, race=race, band=band)

    def hypervolume(self, scales: Mapping[str, float]) -> float:
        """As `pareto.hypervolume` of every point (only the front adds to it)."""
        return self.at(self.rung).hypervolume(scales)

    def summary(self, scales: Mapping[str, float] | None, reproduce: bool = True) -> dict[str, Any]:
        """pareto.json: the front of the highest rung's architecture means with standard errors,
        rungs and noise flags, that rung's pooled seed std, how its front would reproduce
        (`RungArchive.reproduction`, unless `reproduce` is False) and the hypervolume; per rung its
        architectures, evaluations and seed std; and, once a rung above the proxy has a front, how
        the proxy ranks the architectures trained at both (`fidelity`: `rank_agreement`)."""
        top = self.rung
        return {
            **self.at(top).summary(scales, reproduce),
            "trials": len(self.records),
            "architectures": len(self.archs),
            "rung": top,
            "rungs": [
                {
                    "rung": r,
                    "architectures": sum(a.status == "complete" for a in archive._order),
                    "evaluations": len(archive.records),
                    "seed_std": archive.sigma,
                }
                for r, archive in sorted(self._rungs.items())
            ],
            "fidelity": self.agreement(top) if top > 0 else None,
        }

    def agreement(self, rung: int) -> dict[str, Any]:
        """How the proxy (rung 0) ranks the architectures complete at both it and `rung` like
        `rung` does (see `rank_agreement`), with `rung`'s own test-retest; and of those on the
        proxy's front (`proxy_front`), how many stay on `rung`'s (`kept`). Along a front accuracy
        rises with cost, so a τ over front points is high by construction; `kept` says more."""
        lower, upper = self.at(0).archs, self.at(rung)
        both = [
            (lower[a.arch_id], a)
            for a in upper._order
            if a.complete and a.arch_id in lower and lower[a.arch_id].complete
        ]
        on_proxy_front = {a.arch_id for a in self.at(0).front()} & {q.arch_id for _, q in both}
        return {
            "rung": rung,
            "proxy_front": len(on_proxy_front),
            "kept": len(on_proxy_front & {a.arch_id for a in upper.front()}),
            **rank_agreement(
                [float(p.accuracy) for p, _ in both],
                [float(q.accuracy) for _, q in both],
                [{int(r.seed or 0): float(r.accuracy) for r in q.complete} for _, q in both],
            ),
        }
