"""The proxy: which data, and how long and how to train, for every trial of a search.

`ProxyConfig` is the search-space YAML's `proxy:` section and run.yaml's `proxy:`, with the one set
of proxy defaults (`nas.train.TrainConfig` takes its training defaults from here) and the rules a
value must meet. It knows the datasets (`nas.data`) and the rank signals (`nas.signals`) and
nothing above them, so the space, the options, the run folder and the training loop can all use it.

    >>> ProxyConfig.from_dict({'epochs': 3}).epochs
    3
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from nas.checks import is_int, is_num
from nas.data import DATASETS, VAL_FRACTION, Dataset, dataset_name, load_dataset
from nas.signals import SIGNALS

__all__ = ["ProxyConfig", "ProxyError"]


class ProxyError(ValueError):
    """A bad proxy setting: `key` names it, str(error) says what is allowed."""

    def __init__(self, key: str, msg: str):
        self.key, self.msg = key, msg
        super().__init__(f"{key}: {msg}")


# key -> (check, what is allowed); the checks of `ProxyConfig.checked`
_PROXY_CHECKS = dict(
    dataset=(lambda v: isinstance(v, str) and dataset_name(v) is not None, f"one of {', '.join(DATASETS)}"),
    image_size=(lambda v: v is None or (is_int(v) and v >= 1), "an int >= 1"),
    val_fraction=(lambda v: is_num(v) and 0 < v < 1, "a number in (0, 1)"),
    subset=(
        lambda v: v is None or (is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1),
        "null, an int count >= 1 or a fraction in (0, 1]",
    ),
    epochs=(lambda v: is_int(v) and v >= 1, "an int >= 1"),
    batch_size=(lambda v: is_int(v) and v >= 1, "an int >= 1"),
    optimizer=(lambda v: v in ("sgd", "adamw"), "one of ['sgd', 'adamw']"),
    lr=(lambda v: is_num(v) and v > 0, "a number > 0"),
    weight_decay=(lambda v: is_num(v) and v >= 0, "a number >= 0"),
    warmup_epochs=(lambda v: is_int(v) and v >= 0, "an int >= 0"),
    label_smoothing=(lambda v: is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    rank_by=(lambda v: v in SIGNALS, f"one of {list(SIGNALS)}"),
)


@dataclass(frozen=True)
class ProxyConfig:
    """The proxy every trial of a search trains: which data, and how long and how to train.

    This is the search-space YAML's `proxy:` section and run.yaml's `proxy:`. Its one set of
    defaults: the training ones (`nas.train.TrainConfig` takes them from here; on the digits space
    they train a proxy in seconds on a CPU), the split is `nas.data.VAL_FRACTION`;
    `image_size` None means the space's input size. `rank_by` is the rank signal the search reads off
    each training (`nas.signals`; 'accuracy' by default, set by `nas.calibrate`). The search's
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
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    rank_by: str = "accuracy"  # the rank signal read off each training (nas.signals); not a training setting

    @classmethod
    def from_dict(cls, d: dict) -> "ProxyConfig":
        """A checked ProxyConfig from a mapping (missing keys take the defaults).

        Raises:
            ProxyError: an unknown key, or a value that is not allowed (its `key` says which).
        """
        if not isinstance(d, dict):
            raise ProxyError("", f"expected a mapping with keys {list(_PROXY_CHECKS)}, got {d!r}")
        unknown = sorted(set(d) - set(_PROXY_CHECKS))
        if unknown:
            raise ProxyError(unknown[0], f"unknown key; allowed: {list(_PROXY_CHECKS)}")
        return cls(**d).checked()

    def checked(self) -> "ProxyConfig":
        """This config if every value is allowed (numbers made floats where they are floats).

        Raises:
            ProxyError: the first value that is not allowed.
        """
        for key, (ok, allowed) in _PROXY_CHECKS.items():
            if not ok(getattr(self, key)):
                raise ProxyError(key, f"expected {allowed}, got {getattr(self, key)!r}")
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
