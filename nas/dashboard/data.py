"""The dashboard's data model: a run read and aggregated once, for the page and the PNG alike.

`RunData.read` reads a run folder (run.yaml, trials.jsonl) and aggregates it: the `Archive` of
every architecture over its seeds, pareto.json's summary, the hypervolume after each evaluation, a
`TrialView` per architecture (front rank, kind, per-block map, knee) and, per cost objective, the
`CostPlot` both renderers draw (their styles: `nas.dashboard.style`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nas.net.arch import Arch
from nas.run import pareto
from nas.run.archive import Archive, ArchResult
from nas.run.folder import RunConfig, RunFolder, TrialRecord
from nas.run.ladder import rung_of
from nas.run.pareto import COSTS
from nas.search.rungs import scored_by


@dataclass
class TrialView:
    """One architecture (all its evaluations, one per seed) as the dashboard shows it."""

    record: ArchResult
    kind: str  # 'ranked' (on some front), or a key of KINDS
    rank: int | None  # non-domination rank over the run's objectives (0 = Pareto front)
    blocks: list[dict[str, Any]] = field(default_factory=list)  # RunFolder.block_map
    is_knee: bool = False
    summary: str = ""  # the architecture in one line (Arch.summary)
    scored: str = ""  # which training scored it, in a promoted run (`nas.search.rungs.scored_by`); '' otherwise

    @property
    def y(self) -> float:
        """Accuracy as plotted: the mean over seeds (0 for an architecture that has none)."""
        return float(self.record.accuracy) if self.record.accuracy is not None else 0.0


def _kind(r: ArchResult, ranks: dict[int, int]) -> str:
    """How an architecture is drawn: 'ranked' (it has a front rank), else a key of KINDS."""
    if r.number in ranks:
        return "ranked"
    if r.status == "infeasible" or (r.status == "complete" and not r.feasible):
        return "infeasible"
    if r.status in ("stopped", "failed"):
        return r.status
    return "unranked"


def trial_views(run: RunFolder, archive: Archive, rungs: Sequence[dict[str, Any]] = ()) -> list[TrialView]:
    """A TrialView per architecture of `archive`: rank, kind, per-block map (learned α/β), knee
    flag, all on the means over seeds; in a promoted run (a front above rung 0), which training of
    the ladder `rungs` (run.yaml's) scored each."""
    objectives = archive.objectives
    promoted = archive.rung > 0
    archs = archive.architectures
    ranks = pareto.ranks(archs, objectives)
    k = pareto.knee(archive.front(), objectives)
    views = []
    for r in archs:
        try:
            arch = Arch.from_dict(r.arch)
            blocks, summary = run.block_map(r.record, arch), arch.summary()
        except (ValueError, TypeError):  # an arch this version cannot read: show the record anyway
            blocks, summary = [], ""
        views.append(
            TrialView(
                r,
                _kind(r, ranks),
                ranks.get(r.number),
                blocks,
                is_knee=k is not None and k.number == r.number,
                summary=summary,
                scored=scored_by(rungs, r) if promoted else "",
            )
        )
    return views


@dataclass
class CostPlot:
    """One accuracy-vs-cost plot as the page and the PNG both draw it: the architectures with
    that cost measured, the 2-D front of accuracy against that cost, and the axis scale."""

    cost: str
    points: list[TrialView]  # the architectures with this cost measured, in the run's order
    front: list[ArchResult]  # the 2-D front of accuracy against this cost (the step line)
    missing: int  # architectures without this cost (not drawn)

    def of_kind(self, kind: str) -> list[TrialView]:
        """The points of one kind ('ranked' or a key of KINDS)."""
        return [v for v in self.points if v.kind == kind]

    def promoted(self) -> list[TrialView]:
        """The ranked points scored at a rung above the proxy (none in a run without promotion)."""
        return [v for v in self.of_kind("ranked") if v.record.rung > 0]

    def proxy_xy(self, views: Sequence[TrialView]) -> tuple[list[float], list[float]]:
        """Where the proxy (rung 0) put each of `views` that it scored: its cost and proxy mean."""
        pairs = [(x, _proxy_mean(v.record)) for x, v in zip(self.xs(views), views)]
        return [x for x, y in pairs if y is not None], [y for _, y in pairs if y is not None]

    def xs(self, views: Sequence[TrialView]) -> list[float]:
        """The cost of each of `views` (points of this plot), as plotted."""
        return [float(v.record.value(self.cost)) for v in views]

    def front_xy(self) -> tuple[list[float], list[float]]:
        """The 2-D front's costs and accuracies, in the front's order (increasing cost)."""
        return [float(r.value(self.cost)) for r in self.front], [float(r.accuracy) for r in self.front]

    @property
    def log(self) -> bool:
        """Whether the cost axis is logarithmic: the nonzero costs span more than a factor of 20."""
        vals = [float(v.record.value(self.cost)) for v in self.points if v.record.value(self.cost)]
        return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > 20


def _proxy_mean(a: ArchResult) -> float | None:
    accs = [
        float(r.accuracy) for r in a.records if rung_of(r) == 0 and r.status == "complete" and r.accuracy is not None
    ]
    return sum(accs) / len(accs) if accs else None


@dataclass
class RunData:
    """A run as the dashboard shows it, read once for the page and the PNG: its records, every
    architecture over its seeds with the front (`Archive`) and pareto.json's summary of it, the
    hypervolume after each evaluation, a view per architecture and, per cost, what its plot
    shows (`plot`, computed once for both files)."""

    config: RunConfig
    records: list[TrialRecord]
    archive: Archive
    hypervolumes: list[float]
    scales: dict[str, float]
    scales_from_data: bool
    views: list[TrialView]
    summary: dict[str, Any]  # pareto.json's content (`Archive.summary`; its hypervolume on `scales`)
    costs: list[str]  # the cost objectives plotted (`measured_costs`)
    _plots: dict[str, CostPlot] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def read(cls, run: RunFolder) -> RunData:
        """Read the run folder (run.yaml, trials.jsonl) and aggregate it, once."""
        config = run.config()
        records = run.trials()
        objectives = list(config.objectives)
        scales, from_data = _scales(config, records, objectives)
        archive = Archive(objectives)
        hypervolumes: list[float] = []
        for record in records:  # the hypervolume moves only when the front does
            changed = archive.add(record)
            hypervolumes.append(archive.hypervolume(scales) if changed or not hypervolumes else hypervolumes[-1])
        views = trial_views(run, archive, config.ladder)
        summary = archive.summary(scales)
        return cls(
            config,
            records,
            archive,
            hypervolumes,
            scales,
            from_data,
            views,
            summary,
            measured_costs(records, objectives),
        )

    @property
    def hypervolume(self) -> float:
        """The hypervolume after the last evaluation (0 before any)."""
        return self.hypervolumes[-1] if self.records else 0.0

    @property
    def max_rank(self) -> int:
        """The highest front rank of any architecture (0 when none is ranked)."""
        return max([v.rank for v in self.views if v.rank is not None], default=0)

    def plot(self, cost: str) -> CostPlot:
        """What the accuracy-vs-`cost` plot shows, computed on the first call and kept."""
        if cost not in self._plots:
            points = [v for v in self.views if v.record.value(cost) is not None]
            self._plots[cost] = CostPlot(cost, points, self._front_2d(cost), len(self.views) - len(points))
        return self._plots[cost]

    def _front_2d(self, cost: str) -> list[ArchResult]:
        """The front of accuracy against `cost` alone, over every architecture's means: the
        Archive's own front when those are the run's objectives."""
        if self.archive.objectives == ["accuracy", cost]:
            return self.archive.front()
        return pareto.front(self.archive.architectures, ["accuracy", cost])


def measured_costs(records: Sequence[TrialRecord], objectives: Sequence[str]) -> list[str]:
    """The cost objectives to plot: the run's own first, then any other that some trial measured."""
    own = [o for o in objectives if o != "accuracy"]
    return own + [c for c in COSTS if c not in own and any(r.value(c) is not None for r in records)]


def _scales(
    run_config: RunConfig, records: Sequence[TrialRecord], objectives: Sequence[str]
) -> tuple[dict[str, float], bool]:
    """run.yaml's hypervolume_scale, or (when it lacks one) twice the largest measured cost."""
    scales = dict(run_config.hypervolume_scale)
    from_data = False
    for o in objectives:
        if o != "accuracy" and not scales.get(o):
            vals = [float(r.value(o)) for r in records if r.value(o) is not None]
            scales[o] = 2.0 * max(vals) if vals else 1.0
            from_data = True
    return scales, from_data
