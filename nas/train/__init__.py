"""Training: one loop for proxies and for full retraining, and the command that fully trains one architecture.

The package, bottom to top:

- `nas.train.loop`: `TrainConfig` (a training's hyper-parameters, defaulting to the proxy's),
  `EpochResult`, `train` (a generator of one result per epoch, ending in a `failed` one on a NaN
  loss or out of memory), `accuracy_and_loss` (a model scored on a split), `param_groups` and
  `augment_batch`;
- `nas.train.estimate`: what a training will cost before it runs: `work` (images x epochs x
  pixels) and `time_steps` (a few steps timed with the loop, `StepTimes.seconds` extrapolated);
- `nas.train.cli`: `python -m nas.train --arch ...` trains one architecture (an Arch file or a run
  folder's) and writes a checkpoint folder (`main`).

    >>> for r in train(model, load_dataset('digits'), TrainConfig(epochs=3)):
    ...     print(r.epoch, r.val_acc)
"""

from nas.train.cli import main
from nas.train.loop import EpochResult, TrainConfig, accuracy_and_loss, augment_batch, param_groups, train

__all__ = ["TrainConfig", "EpochResult", "train", "accuracy_and_loss", "param_groups", "augment_batch", "main"]
