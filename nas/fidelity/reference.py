"""The reference training a proxy is checked against: deployment-like, or the proxy's own subset longer.

`deployment` turns a proxy into deployment-like training of its networks (what nas.fidelity checks
a run against and nas.calibrate fits a proxy to); `default_epochs` is how long a run's reference
trains; `long_label` says in words what a report's reference was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nas.proxy import ProxyConfig

if TYPE_CHECKING:
    from nas.run.folder import RunConfig

__all__ = ["DEPLOYMENT", "SAME_SUBSET", "deployment", "default_epochs", "long_label"]

DEPLOYMENT, SAME_SUBSET = "deployment", "same subset"  # what the long training is (fidelity.json 'reference')


def deployment(proxy: ProxyConfig, input_size: Sequence[int], epochs: int) -> ProxyConfig:
    """Deployment-like training of a proxy's networks: the whole training split (no `subset`) at the
    networks' input size (the proxy's image size when the input is not square), for `epochs`,
    scored on the proxy's validation split (same `val_fraction`; the same seed gives the same split)."""
    h, w = input_size
    return replace(proxy, subset=None, image_size=h if h == w else proxy.image_size, epochs=epochs)


def default_epochs(config: RunConfig) -> int:
    """The reference training's epochs when --epochs is not given: the deployment the run's proxy
    was calibrated against (run.yaml `calibration`, from `nas.search --proxy`), else 4x the proxy's."""
    deploy = (config.calibration or {}).get("deploy") or {}
    return int(deploy["epochs"]) if deploy.get("epochs") else 4 * config.proxy.epochs


def long_label(summary: Mapping[str, Any]) -> str:
    """What the long training of a report is, in words."""
    if summary.get("reference") == DEPLOYMENT:
        images = summary.get("long_train_images")
        return (
            f"deployment-like training ({'all ' + format(images, ',') if images else 'all'} training images"
            f"{', %dpx' % summary['long_image_size'] if summary.get('long_image_size') else ''}, "
            f"{summary['long_epochs']} epochs)"
        )
    return (
        f"longer training on the proxy's own subset ({summary['long_epochs']} epochs; not deployment: "
        f"python -m nas.fidelity without --same-subset checks that)"
    )
