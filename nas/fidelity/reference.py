"""The reference training a proxy is checked against: deployment-like, or the proxy's own subset longer.

`deployment` turns a proxy into deployment-like training of its networks (what nas.fidelity checks
a run against and nas.calibrate fits a proxy to); `scored_on_test` makes its data train on every
training image and score on the official test split (`nas.fidelity --score-on test`: a final
measurement, never a selection); `default_epochs` is how long a run's reference trains;
`long_label` says in words what a report's reference was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from nas.proxy import ProxyConfig

if TYPE_CHECKING:
    from nas.data.dataset import Dataset
    from nas.run.folder import RunConfig

__all__ = ["DEPLOYMENT", "SAME_SUBSET", "SCORED_ON", "deployment", "scored_on_test", "default_epochs", "long_label"]

DEPLOYMENT, SAME_SUBSET = "deployment", "same subset"  # what the long training is (fidelity.json 'reference')
SCORED_ON = ("val", "test")  # where the deployment-like training is scored (--score-on)


def deployment(proxy: ProxyConfig, input_size: Sequence[int], epochs: int) -> ProxyConfig:
    """Deployment-like training of a proxy's networks: the whole training split (no `subset`) at the
    networks' input size (the proxy's image size when the input is not square), for `epochs`,
    scored on the proxy's validation split (same `val_fraction`; the same seed gives the same split)."""
    h, w = input_size
    return replace(proxy, subset=None, image_size=h if h == w else proxy.image_size, epochs=epochs)


def scored_on_test(data: Dataset, with_val: bool = True) -> Dataset:
    """Deployment-like data scored on the official test split: training on every training image
    (`with_val`: the validation split too, as a deployed network would; off for a training subset)
    and scoring on images no search saw. A measurement only, never a selection: the search and the
    calibration score on `val_*`."""
    if not with_val:
        return replace(data, val_x=data.test_x, val_y=data.test_y)
    return replace(
        data,
        train_x=torch.cat([data.train_x, data.val_x]),
        train_y=torch.cat([data.train_y, data.val_y]),
        val_x=data.test_x,
        val_y=data.test_y,
    )


def default_epochs(config: RunConfig) -> int:
    """The reference training's epochs when --epochs is not given: the deployment the run's proxy
    was calibrated against (run.yaml `calibration`, from `nas.search --proxy`), else 4x the proxy's."""
    deploy = (config.calibration or {}).get("deploy") or {}
    return int(deploy["epochs"]) if deploy.get("epochs") else 4 * config.proxy.epochs


def long_label(summary: Mapping[str, Any]) -> str:
    """What the long training of a report is, in words."""
    if summary.get("reference") == DEPLOYMENT:
        images = summary.get("long_train_images")
        test = summary.get("scored_on") == "test"
        count = format(images, ",") if images else ""
        count = f"a subset of {count}" if summary.get("long_subset") else f"all {count}".rstrip()
        return (
            f"deployment-like training ({count} training images"
            f"{', %dpx' % summary['long_image_size'] if summary.get('long_image_size') else ''}, "
            f"{summary['long_epochs']} epochs"
            f"{', scored on the test split, which no search saw' if test else ''})"
        )
    return (
        f"longer training on the proxy's own subset ({summary['long_epochs']} epochs; not deployment: "
        f"python -m nas.fidelity without --same-subset checks that)"
    )
