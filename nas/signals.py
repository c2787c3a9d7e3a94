"""Rank signals: what one proxy training scores an architecture by.

A proxy training yields a validation accuracy and a mean training loss per epoch. The search ranks
architectures by one number read off that curve, its *rank signal*; every signal here comes from
the same training run at no extra cost, and a higher score always means a better architecture:

* ``accuracy``: the last epoch's validation accuracy (what the front reports);
* ``mean_acc``: validation accuracy averaged over the last half of the epochs (``ceil(E / 2)``),
  which averages out part of the epoch-to-epoch noise of a short schedule;
* ``train_loss``: minus the sum of the mean training losses of the last half of the epochs, the
  "sum of training losses" estimator of Ru et al. (*Speedy performance estimation for neural
  architecture search*, NeurIPS 2021): a network that fits its training data faster tends to
  generalise better, and the training loss is measured on every image of every epoch.

`nas.calibrate` measures which one ranks like deployment training on the user's data and writes
it into the proxy it picks (`ProxyConfig.rank_by`).

    >>> score([0.5, 0.6, 0.7, 0.8], [1.2, 0.9, 0.7, 0.6], 'mean_acc')
    0.75
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ['SIGNALS', 'score', 'mean_score', 'last_half']

SIGNALS = ('accuracy', 'mean_acc', 'train_loss')


def last_half(epochs: int) -> int:
    """How many final epochs `mean_acc` and `train_loss` read: ceil(epochs / 2), at least 1."""
    return max(1, math.ceil(epochs / 2))


def score(acc_per_epoch: Sequence[float], loss_per_epoch: Sequence[float], signal: str) -> float | None:
    """The `signal` of one training run from its per-epoch validation accuracies and mean training
    losses (higher is better); None for a run with no epochs.

    Raises:
        ValueError: an unknown signal.
    """
    if signal not in SIGNALS:
        raise ValueError(f'unknown rank signal {signal!r}; one of {", ".join(SIGNALS)}')
    values = acc_per_epoch if signal != 'train_loss' else loss_per_epoch
    if not values:
        return None
    tail = [float(v) for v in values[-last_half(len(values)) :]]
    if signal == 'accuracy':
        return float(values[-1])
    if signal == 'mean_acc':
        return sum(tail) / len(tail)
    return -sum(tail)


def mean_score(records: Iterable[Any], signal: str) -> float | None:
    """The mean `signal` over evaluations (objects with `acc_per_epoch` and `loss_per_epoch`, such as
    an architecture's complete `TrialRecord`s, `ArchResult.complete`): what a search ranks an
    architecture by. None when no evaluation has a score."""
    values = [v for v in (score(r.acc_per_epoch, r.loss_per_epoch, signal) for r in records) if v is not None]
    return sum(values) / len(values) if values else None
