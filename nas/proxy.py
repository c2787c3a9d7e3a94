"""The proxy: which data, and how long and how to train, for every trial of a search.

`ProxyConfig` is the search-space YAML's `proxy:` section and run.yaml's `proxy:`, with the one set
of proxy defaults (`nas.train.TrainConfig` takes its training defaults from here). `TRAINING_CHECKS`
holds the rules a training setting must meet wherever it is given (a proxy, the search's flags,
`python -m nas.train`'s flags), and `check_setting` says what is wrong in one form. It knows the
datasets (`nas.data`) and the rank signals (below) and nothing above them, so the space, the
options, the run folder and the training loop can all use it.

    >>> ProxyConfig.from_dict({'epochs': 3}).epochs
    3
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from nas.checks import is_int, is_num
from nas.data.dataset import DATASETS, MAX_IMAGE_SIZE, VAL_FRACTION, Dataset, dataset_name, load_dataset
from nas.errors import NasError, UsageError

__all__ = [
    "ProxyConfig",
    "ProxyError",
    "TRAINING_CHECKS",
    "check_setting",
    "load_proxy_file",
    "SIGNALS",
    "score",
    "mean_score",
    "last_half",
]

# --------------------------------------------------------------------------- rank signals
# Rank signals: what one proxy training scores an architecture by.
#
# A proxy training yields a validation accuracy and a mean training loss per epoch. The search ranks
# architectures by one number read off that curve, its *rank signal*; every signal here comes from
# the same training run at no extra cost, and a higher score always means a better architecture:
#
# * ``accuracy``: the last epoch's validation accuracy (what the front reports);
# * ``mean_acc``: validation accuracy averaged over the last half of the epochs (``ceil(E / 2)``),
#   which averages out part of the epoch-to-epoch noise of a short schedule;
# * ``train_loss``: minus the sum of the mean training losses of the last half of the epochs, the
#   "sum of training losses" estimator of Ru et al. (*Speedy performance estimation for neural
#   architecture search*, NeurIPS 2021): a network that fits its training data faster tends to
#   generalise better, and the training loss is measured on every image of every epoch.
#
# nas.calibrate measures which one ranks like deployment training on the user's data and writes
# it into the proxy it picks (`ProxyConfig.rank_by`).
#
#     >>> score([0.5, 0.6, 0.7, 0.8], [1.2, 0.9, 0.7, 0.6], 'mean_acc')
#     0.75

SIGNALS = ("accuracy", "mean_acc", "train_loss")


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
        raise ValueError(f"unknown rank signal {signal!r}; one of {', '.join(SIGNALS)}")
    values = acc_per_epoch if signal != "train_loss" else loss_per_epoch
    if not values:
        return None
    tail = [float(v) for v in values[-last_half(len(values)) :]]
    if signal == "accuracy":
        return float(values[-1])
    if signal == "mean_acc":
        return sum(tail) / len(tail)
    return -sum(tail)


def mean_score(records: Iterable[Any], signal: str) -> float | None:
    """The mean `signal` over evaluations (objects with `acc_per_epoch` and `loss_per_epoch`, such as
    an architecture's complete `TrialRecord`s, `ArchResult.complete`): what a search ranks an
    architecture by. None when no evaluation has a score."""
    values = [v for v in (score(r.acc_per_epoch, r.loss_per_epoch, signal) for r in records) if v is not None]
    return sum(values) / len(values) if values else None


# --------------------------------------------------------------------------- the proxy


class ProxyError(NasError):
    """A bad proxy setting: `key` names it, str(error) says what is allowed."""

    def __init__(self, key: str, msg: str):
        self.key, self.msg = key, msg
        super().__init__(f"{key}: {msg}")


# setting -> (check, what is allowed): the one set of rules for a training setting wherever it is
# given (a space file's or run.yaml's `proxy:`, the search's flags, python -m nas.train's flags), all
# refused in one form, `check_setting`'s "expected <what is allowed>, got <value>".
TRAINING_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = dict(
    dataset=(lambda v: isinstance(v, str) and dataset_name(v) is not None, f"one of {', '.join(DATASETS)}"),
    image_size=(
        lambda v: v is None or (is_int(v) and 1 <= v <= MAX_IMAGE_SIZE),
        f"an int in 1..{MAX_IMAGE_SIZE}",
    ),
    val_fraction=(lambda v: is_num(v) and 0 <= v < 1, "a number in [0, 1)"),  # 0: no validation split
    subset=(
        lambda v: v is None or (is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1),
        "null, an int count >= 1 or a fraction in (0, 1]",
    ),
    epochs=(lambda v: is_int(v) and v >= 1, "an int >= 1"),
    batch_size=(lambda v: is_int(v) and v >= 1, "an int >= 1"),
    optimizer=(lambda v: v in ("sgd", "adamw"), "one of ['sgd', 'adamw']"),
    lr=(lambda v: is_num(v) and v > 0, "a number > 0"),
    momentum=(lambda v: is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    weight_decay=(lambda v: is_num(v) and v >= 0, "a number >= 0"),
    warmup_epochs=(lambda v: is_num(v) and v >= 0, "a number >= 0"),  # fractional epochs allowed
    label_smoothing=(lambda v: is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    rank_by=(lambda v: v in SIGNALS, f"one of {list(SIGNALS)}"),
)
# A proxy is scored on its validation split, so it needs one (a full training may do without).
_PROXY_RULES = {**TRAINING_CHECKS, "val_fraction": (lambda v: is_num(v) and 0 < v < 1, "a number in (0, 1)")}


def check_setting(
    key: str, value: Any, rules: Mapping[str, tuple[Callable[[Any], bool], str]] = TRAINING_CHECKS
) -> str | None:
    """None when `value` is allowed for the training setting `key` (one of `TRAINING_CHECKS`), else
    what is wrong, in the one form every caller puts after the setting's name: "expected <what is
    allowed>, got <value>"."""
    ok, allowed = rules[key]
    return None if ok(value) else f"expected {allowed}, got {value!r}"


@dataclass(frozen=True)
class ProxyConfig:
    """The proxy every trial of a search trains: which data, and how long and how to train.

    This is the search-space YAML's `proxy:` section and run.yaml's `proxy:`. Its one set of
    defaults: the training ones (`nas.train.TrainConfig` takes them from here; on the digits space
    they train a proxy in seconds on a CPU), the split is `nas.data.VAL_FRACTION`;
    `image_size` None means the space's input size. `rank_by` is the rank signal the search reads off
    each training (`nas.proxy`; 'accuracy' by default, set by `nas.calibrate`). The search's
    `--proxy FILE` (a calibrated proxy) replaces it and `--dataset`, `--epochs`, `--batch-size` and
    `--subset` override it (`replace`), checked by the same rules.
    """

    dataset: str = "digits"
    image_size: int | None = None
    val_fraction: float = VAL_FRACTION
    subset: int | float | None = None  # None: all; a count (int >= 1) or a fraction of the training split
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.4
    weight_decay: float = 5e-4
    warmup_epochs: int | float = 1  # fractional epochs allowed
    label_smoothing: float = 0.1
    rank_by: str = "accuracy"  # the rank signal read off each training (nas.proxy); not a training setting

    @classmethod
    def from_dict(cls, d: dict) -> "ProxyConfig":
        """A checked ProxyConfig from a mapping (missing keys take the defaults).

        Raises:
            ProxyError: an unknown key, or a value that is not allowed (its `key` says which).
        """
        keys = [f.name for f in fields(cls)]
        if not isinstance(d, dict):
            raise ProxyError("", f"expected a mapping with keys {keys}, got {d!r}")
        unknown = sorted(set(d) - set(keys))
        if unknown:
            raise ProxyError(unknown[0], f"unknown key; allowed: {keys}")
        return cls(**d).checked()

    def checked(self) -> "ProxyConfig":
        """This config if every value is allowed (numbers made floats where they are floats).

        Raises:
            ProxyError: the first value that is not allowed.
        """
        for f in fields(self):
            wrong = check_setting(f.name, getattr(self, f.name), _PROXY_RULES)
            if wrong:
                raise ProxyError(f.name, wrong)
        if self.warmup_epochs > self.epochs:
            raise ProxyError("warmup_epochs", f"expected at most epochs ({self.epochs}), got {self.warmup_epochs}")
        return replace(
            self, **{k: float(getattr(self, k)) for k in ("lr", "weight_decay", "val_fraction", "label_smoothing")}
        )

    def to_dict(self) -> dict:
        """Its fields; `rank_by` only when it is not the default, so that spaces and runs written before it
        existed keep their fingerprints (a resumed run must not look like a changed space)."""
        d = asdict(self)
        if d["rank_by"] == "accuracy":
            del d["rank_by"]
        return d

    def load_data(
        self, data_dir: Path | str | None = None, seed: int = 0, device: torch.device | str = "cpu"
    ) -> Dataset:
        """The proxy's dataset (a seeded split of the training images; raises DataError)."""
        return load_dataset(
            self.dataset,
            data_dir=data_dir,
            image_size=self.image_size,
            val_fraction=self.val_fraction,
            subset=self.subset,
            seed=seed,
            device=device,
        )


def load_proxy_file(path: Path) -> tuple[ProxyConfig, dict[str, Any]]:
    """The proxy of a `proxy:` file (nas.calibrate's proxy.yaml, or any YAML with a `proxy:` section
    as a space file has) and its `calibration:` section ({} when it has none).

    Raises:
        UsageError: a missing or unreadable file, or a proxy that is not allowed (naming the key).
    """
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise UsageError(f"--proxy {path}: cannot read it ({' '.join(str(e).split())})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("proxy"), dict):
        raise UsageError(
            f"--proxy {path}: expected a YAML file with a proxy: section (python -m nas.calibrate writes one)"
        )
    try:
        proxy = ProxyConfig.from_dict(raw["proxy"])
    except ProxyError as e:
        raise UsageError(f"--proxy {path}: proxy.{e.key}: {e.msg}") from None
    calibration = raw.get("calibration")
    return proxy, dict(calibration) if isinstance(calibration, dict) else {}
