"""What Optuna is told of an architecture: one function, `optuna_result`, for the searcher's tells
and for a journal rebuilt from trials.jsonl (`nas.search.study`), so both say the same."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from nas.run.archive import ArchResult
from nas.run.record import TrialRecord

if TYPE_CHECKING:
    from nas.space.space import SearchSpace

__all__ = ["OptunaResult", "optuna_result"]

# A finished evaluation's status -> the state of its Optuna trial (any other status: FAIL).
_STATES = {"complete": TrialState.COMPLETE, "infeasible": TrialState.COMPLETE, "stopped": TrialState.PRUNED}


@dataclass(frozen=True)
class OptunaResult:
    """What Optuna is told of an architecture: its trial's state, and for a COMPLETE one its
    objective values and constraint values (limit name -> value, <= 0 where it holds); the user
    attributes go with every state."""

    state: TrialState
    values: list[float] | None
    constraints: dict[str, float]
    attrs: dict[str, Any]

    def frozen(self, space: SearchSpace, params: dict[str, Any], arch_id: str, **more: Any) -> Any:
        """As a finished Optuna trial (a FrozenTrial) of `params`, with the architecture's id first
        among its user attributes and `more` after them."""
        return optuna.trial.create_trial(
            state=self.state,
            params=params,
            distributions=space.distributions(params),
            values=self.values,
            constraints=self.constraints or None,
            user_attrs={"arch_id": arch_id, **self.attrs, **more},
        )


def optuna_result(
    point: TrialRecord | ArchResult,
    objectives: list[str],
    limits: Mapping[str, float],
    score: float | None = None,
    seeds: int | None = None,
) -> OptunaResult:
    """What Optuna is told of an architecture's result `point` (one evaluation, or the architecture
    over its seeds): the one place the searcher and a rebuilt journal turn a result into Optuna's.

    Args:
        point: its result; costs and constraint values are its standing evaluation's.
        objectives: the run's, in order; a missing value is told as 0.
        limits: the hard limits (their names, sorted, name the constraint values).
        score: told for accuracy instead of the point's own (the proxy's rank signal).
        seeds: its complete evaluations, kept as the 'seeds' user attribute (left out if None).
    """
    state = _STATES.get(point.status, TrialState.FAIL)
    constraints = list((point.record if isinstance(point, ArchResult) else point).constraints)
    complete = state == TrialState.COMPLETE
    attrs: dict[str, Any] = {"status": point.status, "epochs": point.epochs}
    if seeds is not None:
        attrs["seeds"] = seeds
    attrs["constraints"] = constraints
    if not complete:
        return OptunaResult(state, None, {}, attrs)
    values = [float(score if o == "accuracy" and score is not None else point.value(o) or 0.0) for o in objectives]
    return OptunaResult(state, values, dict(zip(sorted(limits), constraints)), attrs)
