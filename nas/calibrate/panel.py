"""What a calibration trains: the training settings (`Candidate`), the candidate proxies' grid and
the panel of architectures.

The panel: the space's reference points (all-conv, all-ACmix, the paper's placement), then networks
drawn at random from the space (seeded) and picked evenly over their MACs, from the cheapest to the
most expensive. The candidate proxies: every subset x epochs x image size (sizes below the networks'
input where the space's strides allow them), cheapest first, the rest of the training settings the
space proxy's. The panel's halves (`split_panel`): the networks a pick is made on and those it is
confirmed on, split at random by the calibration's seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from nas.errors import UsageError
from nas.proxy import ProxyConfig

__all__ = ["EVALUATIONS", "HOLDOUT_MIN", "Candidate", "candidate_sizes", "candidate_grid", "pick_panel", "split_panel"]

EVALUATIONS = "evaluations"
POOL = 8  # random architectures drawn per panel slot, to pick the panel's spread from
HOLDOUT_MIN = 8  # the smallest panel split into a pick half and a held-out half


@dataclass(frozen=True)
class Candidate:
    """One training setting: `subset` training images (None: the whole training split) for
    `epochs` at `image_size` pixels; the rest of the training is the space proxy's."""

    subset: int | None
    epochs: int
    image_size: int

    @property
    def key(self) -> str:
        return f"n{self.subset if self.subset is not None else 'all'}-e{self.epochs}-{self.image_size}px"

    @property
    def data_key(self) -> str:
        return f"n{self.subset if self.subset is not None else 'all'}-{self.image_size}px"

    @property
    def file(self) -> str:
        return f"{EVALUATIONS}/{self.key}.jsonl"

    def proxy(self, base: ProxyConfig) -> ProxyConfig:
        return replace(base, subset=self.subset, epochs=self.epochs, image_size=self.image_size)


def candidate_sizes(space: Any, sizes: Sequence[int] | None) -> list[int]:
    """The image sizes to try: `sizes`, or by default the networks' input size and 3/4 of it
    (rounded to a multiple of 4); sizes the space's strides take below one pixel are left out."""
    full = space.input_size[0]
    want = list(sizes) if sizes else [full, 4 * round(0.75 * full / 4)]
    return [s for s in dict.fromkeys(want) if s <= full and space.fits(s)]


def pick_panel(space: Any, n: int, seed: int, num_classes: int) -> list[dict[str, Any]]:
    """The panel: the space's reference points, then architectures drawn at random (seeded) and
    picked evenly over their MACs, cheapest to dearest; each {name, arch_id, arch, macs, params}."""
    import optuna

    from nas.net.cost import measure_cost

    def entry(name: str | None, arch: Any) -> dict[str, Any]:
        cost = measure_cost(arch, num_classes=num_classes, latency=False, memory=False)
        return {"name": name, "arch_id": arch.arch_id, "arch": arch.to_dict(), "macs": cost.macs, "params": cost.params}

    panel = [entry(name, a) for name, a in list(space.reference_points().items())[:n]]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    pool: dict[str, Any] = {}
    for _ in range(POOL * max(0, n - len(panel))):
        arch = space.sample(study.ask())
        if all(p["arch_id"] != arch.arch_id for p in panel):
            pool.setdefault(arch.arch_id, arch)
    drawn = sorted((entry(None, a) for a in pool.values()), key=lambda e: (e["macs"], e["arch_id"]))
    slots = min(n - len(panel), len(drawn))
    if slots > 0:
        panel += [drawn[i] for i in sorted({round(x) for x in np.linspace(0, len(drawn) - 1, slots)})]
    return panel


def candidate_grid(
    space: Any,
    deploy: Candidate,
    train_images: int,
    subsets: Sequence[int],
    epochs: Sequence[int],
    image_sizes: Sequence[int] | None,
) -> list[Candidate]:
    """The candidate proxies, cheapest first (images x epochs x pixels): every subset of `subsets`
    smaller than the `train_images` of the training split x `epochs` x image size the space's strides
    allow (`candidate_sizes`), but deployment's own setting; UsageError when no image size or no
    subset is left."""
    sizes = candidate_sizes(space, image_sizes)
    if not sizes:
        raise UsageError(f"--image-sizes {image_sizes}: none fits the space's strides (input {space.input_size[0]}px)")
    grid = [
        Candidate(n, e, s)
        for n in sorted(set(subsets))
        for e in sorted(set(epochs))
        for s in sizes
        if n < train_images and Candidate(n, e, s) != deploy
    ]
    grid.sort(key=lambda c: (c.subset * c.epochs * c.image_size**2, c.key))
    if not grid:
        raise UsageError(f"--subsets {subsets}: every one is at least the {train_images} training images")
    return grid


def split_panel(networks: int, seed: int) -> tuple[list[int], list[int] | None]:
    """The panel's halves, as indices: the networks the pick is made on (the larger half on an odd
    panel) and the networks it is confirmed on, drawn at random from `seed` (the calibration's: the
    same calibration splits the same way); a panel under `HOLDOUT_MIN` networks is not split (all,
    None)."""
    if networks < HOLDOUT_MIN:
        return list(range(networks)), None
    order = np.random.default_rng([seed, networks]).permutation(networks)
    half = (networks + 1) // 2
    return sorted(int(i) for i in order[:half]), sorted(int(i) for i in order[half:])
