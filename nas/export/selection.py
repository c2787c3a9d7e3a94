"""Which trial of a run to export: `select` by arch id, by a pick on the Pareto front, or within limits.

Selection (among complete, feasible trials with every objective measured, see `pareto.candidates`):
  * knee: on the Pareto front, each objective is rescaled to [0, 1] over the front as a loss
    (1 − accuracy; costs as they are), and the knee is the front point closest (Euclidean) to the
    ideal point (0, …, 0), i.e. to "best accuracy at the lowest cost at once". Ties: higher
    accuracy, then lower trial number. A one- or two-point front gives its most accurate point.
  * max-accuracy / min-cost: the front's most accurate point / the front's point of lowest first
    cost objective (run.yaml `objectives[1]`).
  * --max-macs/--max-params/--max-latency-ms/--max-memory-mb keep the trials within the limits
    first; then the pick (default max-accuracy) applies to the front of what is left.

Ranks, the front and the knee come from nas.run.pareto. Picks compare architectures by their mean
accuracy over seeds (nas.run.folder.aggregate), at the highest rung of the fidelity ladder each
reached; the weights exported are that rung's where it kept some (`shipped`: a promoted
architecture ships its promoted training's weights), else the proxy's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nas.export.folder import ExportError
from nas.run import pareto
from nas.run.folder import ArchResult, RunError, TrialRecord, aggregate, records_of
from nas.run.pareto import OBJECTIVES

PICKS = ("knee", "max-accuracy", "min-cost")
# CLI limit -> objective name (nas.run.pareto.OBJECTIVES)
LIMITS = {o.limit: name for name, o in OBJECTIVES.items() if o.limit}


# ---------------------------------------------------------------------------------- picks


def _max_accuracy(front: Sequence[ArchResult], cost: str | None) -> ArchResult:
    """The front's most accurate point; ties: lower `cost`, then lower trial number."""
    return min(front, key=lambda r: (-float(r.value("accuracy")), float(r.value(cost)) if cost else 0.0, r.number))


def _min_cost(front: Sequence[ArchResult], cost: str) -> ArchResult:
    """The front's point of lowest `cost`; ties: higher accuracy, then lower trial number."""
    return min(front, key=lambda r: (float(r.value(cost)), -float(r.value("accuracy")), r.number))


@dataclass
class Selection:
    """A selected architecture and why: `record` is the evaluation whose weights are exported,
    `arch` the architecture over all its seeds (its mean accuracy and standard error); `how` is
    'arch id', 'knee', 'max-accuracy' or 'min-cost' (with limits); `front` the front of
    architecture means it was picked from (empty for an arch id)."""

    record: TrialRecord
    how: str
    front: list[ArchResult] = field(default_factory=list)
    arch: ArchResult | None = None


def select(
    records: Sequence[TrialRecord],
    objectives: Sequence[str],
    *,
    arch_id: str | None = None,
    pick: str | None = None,
    limits: dict[str, float] | None = None,
    has_weights: Callable[[TrialRecord], bool] = lambda r: True,
) -> Selection:
    """Choose the trial to export (see the module docstring).

    Args:
        records: the run's trials (RunFolder.trials()); picks compare architectures by their
            mean accuracy over seeds (nas.run.folder.aggregate).
        objectives: the run's objectives, accuracy first.
        arch_id: an architecture id or a unique prefix of one; excludes `pick` and `limits`.
        pick: 'knee', 'max-accuracy' or 'min-cost'; None: knee, or max-accuracy under limits.
        limits: objective name ('macs', 'params', 'latency', 'memory') -> largest allowed value.
        has_weights: whether a record's trained weights exist.

    Raises:
        ExportError: no such arch id, no trial within the limits, no weights.
    """
    limits = {k: v for k, v in (limits or {}).items() if v is not None}
    if arch_id is not None:
        if pick or limits:
            raise ExportError("--arch-id selects one trial: give it without --pick or --max-* limits")
        return _select_arch_id(records, arch_id, has_weights)
    if pick is not None and pick not in PICKS:
        raise ExportError(f"--pick must be one of {', '.join(PICKS)}, got {pick!r}")
    pick = pick or ("max-accuracy" if limits else "knee")
    cands = _within_limits(pareto.candidates(aggregate(records), objectives), limits)
    if not cands:
        raise ExportError(f"no complete, feasible trial{_limits_text(limits)} in this run ({len(records)} trials)")
    front = pareto.front(cands, objectives)
    chosen = _pick_on_front(front, objectives, pick)
    record = shipped(chosen, has_weights)
    if not has_weights(record):
        raise ExportError(
            f"the {pick} trial {chosen.arch_id} (#{chosen.number}) has no trained weights "
            f"(pruned?); pick another with --arch-id"
        )
    return Selection(record, pick + _limits_text(limits), front, arch=chosen)


def _select_arch_id(
    records: Sequence[TrialRecord], arch_id: str, has_weights: Callable[[TrialRecord], bool]
) -> Selection:
    """The architecture named by `arch_id` (or a unique prefix): its first complete evaluation
    with weights, else its first evaluation with weights."""
    try:
        same = records_of(records, arch_id)
    except RunError as e:
        raise ExportError(str(e)) from None
    usable = [r for r in same if has_weights(r)]
    if not usable:
        raise ExportError(f"trial {same[0].arch_id} ({same[-1].status}) has no trained weights to export")
    best = [r for r in usable if r.status == "complete"] or usable
    arch = ArchResult(same)
    return Selection(shipped(arch, has_weights, best[0]), "arch id", arch=arch)


def shipped(
    a: ArchResult, has_weights: Callable[[TrialRecord], bool], fallback: TrialRecord | None = None
) -> TrialRecord:
    """The evaluation whose weights an export of `a` ships: the first complete one at the rung its
    accuracy is taken at (a promoted architecture: its promoted weights) that kept weights of its
    own, else `fallback` (default: `a.record`, its first complete evaluation, the proxy's)."""
    own = [r for r in a.complete if r.weights and has_weights(r)]
    return own[0] if own else fallback or a.record


def _within_limits(cands: list[ArchResult], limits: dict[str, float]) -> list[ArchResult]:
    """The candidates whose every limited objective is measured and at most its limit.

    Raises:
        ExportError: a limit on an unknown objective, or on one no candidate has measured.
    """
    for obj, limit in limits.items():
        if obj not in OBJECTIVES or obj == "accuracy":
            raise ExportError(f"unknown limit objective {obj!r}")
        measured = [r for r in cands if r.value(obj) is not None]
        if cands and not measured:
            raise ExportError(f"no trial of this run has {obj} measured; cannot apply a --max-{obj} limit")
        cands = [r for r in measured if float(r.value(obj)) <= limit]
    return cands


def _limits_text(limits: dict[str, float]) -> str:
    """' within macs <= 2e+06, params <= 5000' (what the selection says of its limits), or ''."""
    return f" within {', '.join(f'{k} <= {v:g}' for k, v in limits.items())}" if limits else ""


def _pick_on_front(front: list[ArchResult], objectives: Sequence[str], pick: str) -> ArchResult:
    """The front point `pick` names ('knee', 'max-accuracy' or 'min-cost'); the cost of
    max-accuracy's tie-break and of min-cost is the first cost objective."""
    costs = [o for o in objectives if o != "accuracy"]
    if pick == "knee":
        return pareto.knee(front, objectives)
    if pick == "max-accuracy":
        return _max_accuracy(front, costs[0] if costs else None)
    if not costs:
        raise ExportError("--pick min-cost needs a cost objective; this run only has accuracy")
    return _min_cost(front, costs[0])
