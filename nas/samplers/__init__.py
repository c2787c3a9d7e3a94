"""Optuna samplers that propose only points a study has not seen, for any Optuna study.

An evaluation already made (or running) teaches a search nothing new. The samplers here sample
every parameter of a search space in one relative sample and return only a point the study has
not seen, evaluated or in flight:

- `EvolutionSampler`: multi-objective regularized evolution (an aging population, a Pareto
  tournament, one-parameter mutations);
- `UniqueSampler(inner, ...)`: any Optuna sampler (TPE, NSGA-II, GP, random) whose proposals of a
  seen point are repaired to the nearest unseen one.

The space is a dict of Optuna distributions (categorical, int, float, log-scaled or stepped); a
point's id is its parameters, or whatever `Encoding(distributions, key)`'s key says (two
parameter sets with one key are one point). A `nas.space.SearchSpace` is also a space: its full
encoding, keyed by architecture id.

    >>> import optuna
    >>> from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    >>> from nas.samplers import EvolutionSampler
    >>> space = {
    ...     'op': CategoricalDistribution(['conv', 'pool', 'skip']),
    ...     'depth': IntDistribution(1, 8),
    ...     'lr': FloatDistribution(1e-4, 1e-1, log=True),
    ... }
    >>> def objective(trial):
    ...     op, depth = trial.suggest_categorical('op', ['conv', 'pool', 'skip']), trial.suggest_int('depth', 1, 8)
    ...     lr = trial.suggest_float('lr', 1e-4, 1e-1, log=True)
    ...     return (op == 'conv') + 0.1 * depth - abs(lr - 0.01), depth  # maximize, minimize
    >>> study = optuna.create_study(directions=['maximize', 'minimize'], sampler=EvolutionSampler(space, seed=0))
    >>> study.optimize(objective, n_trials=50)
    >>> len({tuple(sorted(t.params.items())) for t in study.trials})  # no point twice
    50

The package, bottom to top:

- `nas.samplers.encoding`: `Encoding` (distributions and the key), drawing values, `Seen`;
- `nas.samplers.unseen`: `UnseenSampler`, what the samplers share (unseen points near a proposal,
  or random ones);
- `nas.samplers.window`: `HistoryWindow`, the recent trials of a study as a study of their own;
- `nas.samplers.unique`: `UniqueSampler`;
- `nas.samplers.evolution`: `EvolutionSampler`;
- `nas.samplers.registry`: the samplers by name (`SAMPLERS`, `make_sampler`), what `--sampler`
  chooses from.
"""

from nas.samplers.encoding import Encoding
from nas.samplers.evolution import EvolutionSampler
from nas.samplers.registry import SAMPLERS, make_sampler
from nas.samplers.unique import UniqueSampler
from nas.samplers.window import HistoryWindow

__all__ = ["Encoding", "EvolutionSampler", "UniqueSampler", "HistoryWindow", "SAMPLERS", "make_sampler"]
