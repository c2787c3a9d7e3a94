"""The network: the ACmix operator, an architecture as data, the timm model built from it, its costs.

The package, bottom to top:

- `nas.net.acmix`: `ACmix`, the operator (shared 1x1 projections, a convolution branch and a local
  attention branch mixed by alpha, beta), computed without the reference's k_a^2 copies;
- `nas.net.acmix_reference`: the paper's unfold formulation and parameter layout, kept to test
  `ACmix` against;
- `nas.net.arch`: `Arch` (stem, stages, blocks; its id), the one place an ACmix block's defaults
  live (`ACMIX_DEFAULTS`), `ArchError`;
- `nas.net.model`: an `Arch` as a timm ByobNet (`create_model`), the registered timm names, the
  learned alpha/beta per block (`block_map`);
- `nas.net.cost`: params, MACs (attention counted explicitly), latency and peak memory (`measure_cost`).

    >>> from nas.net import create_model, measure_cost, default_arch
    >>> cost = measure_cost(default_arch(), num_classes=10, latency=False, memory=False)
"""

from nas.net.acmix import ACmix
from nas.net.arch import ACMIX_DEFAULTS, Arch, ArchError, BlockArch, StageArch, StemArch
from nas.net.cost import Cost, measure_cost
from nas.net.model import block_map, create_model, default_arch, paper_arch

__all__ = [
    "ACmix",
    "ACMIX_DEFAULTS",
    "Arch",
    "ArchError",
    "BlockArch",
    "StageArch",
    "StemArch",
    "Cost",
    "measure_cost",
    "block_map",
    "create_model",
    "default_arch",
    "paper_arch",
]
