"""The fidelity ladder of a run: rung 0 the search's proxy, rung 1 deployment-like training (the
calibration's deployment, or the whole training split at the networks' input size for
DEFAULT_EPOCHS_FACTOR x the proxy's epochs); run.yaml's `ladder`, written once when a run starts so
that a resume keeps its rungs. `nas.search.promote` trains the front at rung 1, and before its first
rung-1 evaluation fits rung 1's epochs down where the proxy's front would not fit in the
promotion's compute (`promote.fit`; not where --promote-epochs or --promote-images set rung 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from nas.proxy import ProxyConfig

if TYPE_CHECKING:
    from nas.run.folder import RunConfig

__all__ = ["DEFAULT_EPOCHS_FACTOR", "Rung", "ladder", "run_ladder", "rung_name", "scored_by"]

DEFAULT_EPOCHS_FACTOR = 2  # rung 1 without a calibration: the whole training split for 2x the proxy's epochs


@dataclass(frozen=True)
class Rung:
    """One rung of the ladder: its training subset (None: the whole training split), epochs and
    image size; where it comes from ('proxy', 'calibration', 'default', 'option'); and, once its
    data was loaded, its training images."""

    rung: int
    subset: int | float | None
    epochs: int
    image_size: int | None
    source: str
    train_images: int | None = None
    fitted_from: int | None = None  # the epochs it had before the promotion fitted it (`promote.fit`)

    def proxy(self, base: ProxyConfig) -> ProxyConfig:
        """The run's proxy trained at this rung."""
        return replace(base, subset=self.subset, epochs=self.epochs, image_size=self.image_size)

    def describe(self) -> str:
        """'all 4,500 training images, 10 epochs, 16px'."""
        n = self.train_images or self.subset
        images = f"{n:,} training images" if isinstance(n, int) else "training images"
        images = f"all {images}" if self.subset is None else images
        epochs = f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        epochs += f" (fitted from {self.fitted_from})" if self.fitted_from else ""
        return f"{images}, {epochs}" + (f", {self.image_size}px" if self.image_size else "")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rung:
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})  # a run.yaml from before a key existed has None


def ladder(
    proxy: ProxyConfig,
    input_size: Sequence[int] | None,
    calibration: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    images: int | None = None,
) -> list[Rung]:
    """The ladder of a run whose proxy is `proxy`, whose networks take `input_size` (h, w) and whose
    proxy came from `calibration` (run.yaml's; {} or None without one): rung 0 the proxy, rung 1
    deployment-like (see the module docstring); `epochs` (--promote-epochs) and `images`
    (--promote-images: a training subset, for data too large to train whole often) override rung 1's."""
    h, w = input_size or (proxy.image_size, proxy.image_size)
    deploy = (calibration or {}).get("deploy") or {}
    if deploy.get("epochs"):
        whole = str(deploy.get("key", "")).startswith("nall")
        subset = None if whole or not deploy.get("train_images") else int(deploy["train_images"])
        subset = images or subset
        source = "option" if epochs or images else "calibration"
        top = Rung(1, subset, int(epochs or deploy["epochs"]), deploy.get("image_size") or h, source)
    else:
        size = h if h == w else proxy.image_size
        source = "option" if epochs or images else "default"
        top = Rung(1, images, int(epochs or DEFAULT_EPOCHS_FACTOR * proxy.epochs), size, source)
    return [Rung(0, proxy.subset, proxy.epochs, proxy.image_size, "proxy"), top]


def run_ladder(
    config: RunConfig, promote_epochs: int | None, promote_images: int | None = None
) -> list[dict[str, Any]]:
    """run.yaml's `ladder`: the one it holds (a resumed run keeps its rungs), else this run's."""
    if config.ladder:
        return list(config.ladder)
    rungs = ladder(config.proxy, config.space.get("input_size"), config.calibration, promote_epochs, promote_images)
    rungs[0] = replace(rungs[0], train_images=config.data.train_images or None)
    return [asdict(r) for r in rungs]


def rung_name(rung: int) -> str:
    """'rung 0, the proxy' or 'rung 1, promoted'."""
    return "rung 0, the proxy" if rung == 0 else f"rung {rung}, promoted"


def scored_by(rungs: Sequence[Mapping[str, Any]], point: Any) -> str:
    """Which training scored `point` (an `ArchResult`: its rung and complete evaluations there) in
    a run with the ladder `rungs` (run.yaml's): 'rung 1, promoted: all 4,500 training images,
    10 epochs, 16px, seeds 0, 1'; a run without a ladder: 'proxy, 5 epochs, seed 0'."""
    rung, done = int(point.rung), point.complete
    seeds = ", ".join(str(r.seed) for r in done if r.seed is not None)
    seeds = f", seed{'s' if len(done) != 1 else ''} {seeds}" if seeds else ""
    if rung < len(rungs):
        return f"{rung_name(rung)}: {Rung.from_dict(rungs[rung]).describe()}{seeds}"
    return f"proxy, {point.epochs} epochs{seeds}" if rung == 0 else f"{rung_name(rung)}{seeds}"
