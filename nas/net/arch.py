"""`Arch`: a canonical, frozen description of one network.

An Arch says everything needed to build a network except the number of classes (that comes from
the dataset): the input (size and channels), the stem, and for every stage its block kind, width,
stride, bottleneck ratio and one `BlockArch` per block (spatial op and its settings).

It is canonical: widths are resolved integers (no multipliers), and a block keeps only the
settings its op uses (a conv block has no heads, an ACmix block no conv kernel), so two Arches
describing the same network compare equal and share an `arch_id`.

    >>> arch = Arch.from_json(Arch.load('arch.yaml').to_json())
    >>> arch.arch_id          # 12 hex chars of the SHA-256 of the canonical JSON
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from nas.checks import is_int, is_num
from nas.errors import NasError

__all__ = [
    "OPS",
    "ACMIX_DEFAULTS",
    "BLOCK_KINDS",
    "STEM_TYPES",
    "STEM_POOLS",
    "BlockArch",
    "StageArch",
    "StemArch",
    "Arch",
    "ArchError",
    "stem_reduction",
]

OPS = ("conv", "acmix")
BLOCK_KINDS = ("bottleneck", "basic")
STEM_TYPES = ("3x3", "7x7", "deep", "tiered")
STEM_POOLS = (None, "maxpool", "avgpool")
CONV_KERNELS = (1, 3, 5, 7)  # odd sizes timm pads to 'same'; ACmix's k_conv uses the same set
_ACMIX_FIELDS = ("heads", "k_att", "k_conv", "alpha", "beta", "learnable")
ACMIX_DEFAULTS = dict(heads=4, k_att=7, k_conv=3, alpha=0.5, beta=0.5, learnable=True)  # an ACmix block's, everywhere


class ArchError(NasError):
    """An architecture description that cannot describe a network (bad field, type or value)."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ArchError(msg)


def _check_mapping(d: Any, what: str, allowed: Iterable[str]) -> None:
    """`d` is a mapping whose keys are all in `allowed` (else an ArchError naming `what`)."""
    _check(isinstance(d, dict), f"{what} must be a mapping, got {type(d).__name__}")
    unknown = set(d) - set(allowed)
    _check(not unknown, f"unknown {what} keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def make_divisible(v: float, divisor: int = 8) -> int:
    """timm's channel rounding (timm.layers.make_divisible), used for a block's inner width."""
    from timm.layers import make_divisible as _md

    return int(_md(v, divisor))


def stem_reduction(stem_type: str, pool: str | None) -> int:
    """Downsampling factor of a timm ByobNet stem: 2 for one strided conv, 4 with a pool or a
    multi-conv stem ('deep', 'tiered' downsample twice even without a pool)."""
    if stem_type in ("3x3", "7x7"):
        return 4 if pool else 2
    return 4


@dataclass(frozen=True)
class BlockArch:
    """One block's spatial op and its settings.

    op='conv': a k×k convolution (`kernel`). op='acmix': an ACmix operator with `heads`, `k_att`
    (attention window), `k_conv` (its convolution branch kernel), `alpha`/`beta` (initial values of
    the attention/convolution mixing weights) and `learnable` (whether those weights train).
    Settings the op does not use are None (filled or cleared by the constructor).
    """

    op: str = "conv"
    kernel: int | None = None
    heads: int | None = None
    k_att: int | None = None
    k_conv: int | None = None
    alpha: float | None = None
    beta: float | None = None
    learnable: bool | None = None

    def __post_init__(self) -> None:
        _check(self.op in OPS, f"op must be one of {list(OPS)}, got {self.op!r}")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.op == "conv":
            set_("kernel", 3 if self.kernel is None else self.kernel)
            _check(
                is_int(self.kernel) and self.kernel in CONV_KERNELS,
                f"kernel must be one of {list(CONV_KERNELS)}, got {self.kernel!r}",
            )
            for k in _ACMIX_FIELDS:
                set_(k, None)
            return
        set_("kernel", None)
        for k, v in ACMIX_DEFAULTS.items():
            if getattr(self, k) is None:
                set_(k, v)
        _check(is_int(self.heads) and self.heads >= 1, f"heads must be an int >= 1, got {self.heads!r}")
        _check(
            is_int(self.k_att) and self.k_att >= 1 and self.k_att % 2 == 1,
            f"k_att must be an odd int >= 1, got {self.k_att!r}",
        )
        _check(
            is_int(self.k_conv) and self.k_conv in CONV_KERNELS,
            f"k_conv must be one of {list(CONV_KERNELS)}, got {self.k_conv!r}",
        )
        for k in ("alpha", "beta"):
            v = getattr(self, k)
            _check(is_num(v, finite=False), f"{k} must be a number, got {v!r}")
            set_(k, float(v))
        _check(isinstance(self.learnable, bool), f"learnable must be true or false, got {self.learnable!r}")

    def to_dict(self) -> dict[str, Any]:
        """Only the settings the op uses."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BlockArch:
        _check_mapping(d, "block", [f.name for f in fields(cls)])
        d = dict(d)
        if d.get("op", "conv") == "conv":  # tolerate (and drop) ACmix settings on a conv block
            d = {k: v for k, v in d.items() if k not in _ACMIX_FIELDS}
        elif d.get("op") == "acmix":
            d.pop("kernel", None)
        return cls(**d)


@dataclass(frozen=True)
class StageArch:
    """One stage: `len(blocks)` blocks of one kind; the first block strides.

    `channels` is the stage's output width (timm's `c`); a block's inner width is
    `make_divisible(channels * bottle_ratio)` (ResNet-50 stage 1: 256 × 0.25 = 64).
    A 'bottleneck' block is 1×1 → op → 1×1; a 'basic' block is op → 3×3 when op is a conv (timm
    'basic'); an ACmix block is always timm's 'self_attn' block 1×1 → ACmix → BN-ReLU → 1×1.
    """

    block: str
    channels: int
    stride: int
    bottle_ratio: float
    blocks: tuple[BlockArch, ...]

    def __post_init__(self) -> None:
        _check(self.block in BLOCK_KINDS, f"block must be one of {list(BLOCK_KINDS)}, got {self.block!r}")
        _check(is_int(self.channels) and self.channels >= 1, f"channels must be an int >= 1, got {self.channels!r}")
        _check(is_int(self.stride) and self.stride in (1, 2), f"stride must be 1 or 2, got {self.stride!r}")
        _check(
            is_num(self.bottle_ratio, finite=False) and self.bottle_ratio > 0,
            f"bottle_ratio must be a number > 0, got {self.bottle_ratio!r}",
        )
        object.__setattr__(self, "bottle_ratio", float(self.bottle_ratio))
        object.__setattr__(self, "blocks", tuple(self.blocks))
        _check(len(self.blocks) >= 1, "a stage needs at least one block")
        _check(all(isinstance(b, BlockArch) for b in self.blocks), "blocks must be BlockArch")
        mid = self.mid_channels
        for i, b in enumerate(self.blocks):
            if b.op == "acmix":
                _check(
                    mid % b.heads == 0,
                    f"block {i}: heads={b.heads} does not divide the block width {mid} "
                    f"(channels {self.channels} x bottle_ratio {self.bottle_ratio})",
                )

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def mid_channels(self) -> int:
        """The width the spatial op works at (timm: make_divisible(channels * bottle_ratio))."""
        return make_divisible(self.channels * self.bottle_ratio)

    def to_dict(self) -> dict[str, Any]:
        return dict(
            block=self.block,
            channels=self.channels,
            stride=self.stride,
            bottle_ratio=self.bottle_ratio,
            blocks=[b.to_dict() for b in self.blocks],
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageArch:
        _check_mapping(d, "stage", ["block", "channels", "stride", "bottle_ratio", "blocks"])
        _check(isinstance(d.get("blocks"), (list, tuple)), "stage 'blocks' must be a list")
        return cls(
            block=d.get("block", "bottleneck"),
            channels=d.get("channels"),
            stride=d.get("stride", 1),
            bottle_ratio=d.get("bottle_ratio", 1.0),
            blocks=tuple(BlockArch.from_dict(b) for b in d["blocks"]),
        )


@dataclass(frozen=True)
class StemArch:
    """timm ByobNet stem: '3x3' or '7x7' (one strided conv), 'deep' (three 3×3, ResNet-D) or
    'tiered'; optional pool ('maxpool'/'avgpool'). Downsamples by `stem_reduction(type, pool)`."""

    type: str = "3x3"
    channels: int = 32
    pool: str | None = None

    def __post_init__(self) -> None:
        _check(self.type in STEM_TYPES, f"stem type must be one of {list(STEM_TYPES)}, got {self.type!r}")
        _check(
            is_int(self.channels) and self.channels >= 1, f"stem channels must be an int >= 1, got {self.channels!r}"
        )
        _check(self.pool in STEM_POOLS, f"stem pool must be one of {list(STEM_POOLS)}, got {self.pool!r}")

    @property
    def reduction(self) -> int:
        return stem_reduction(self.type, self.pool)

    def to_dict(self) -> dict[str, Any]:
        return dict(type=self.type, channels=self.channels, pool=self.pool)


@dataclass(frozen=True)
class Arch:
    """One network: input, stem, stages. No number of classes (that comes from the dataset).

    Build it with `nas.net.model.create_model(arch, num_classes=...)`; describe it with
    `to_dict()`/`to_json()`/`save()`; identify it with `arch_id`.
    """

    input_size: tuple[int, int]
    in_chans: int
    stem: StemArch
    stages: tuple[StageArch, ...]
    num_features: int = 0  # width of a final 1×1 conv before the head; 0 = none (ResNet)

    def __post_init__(self) -> None:
        size = tuple(self.input_size) if isinstance(self.input_size, (list, tuple)) else self.input_size
        _check(
            isinstance(size, tuple) and len(size) == 2 and all(is_int(s) and s >= 1 for s in size),
            f"input_size must be [H, W] of ints >= 1, got {self.input_size!r}",
        )
        object.__setattr__(self, "input_size", size)
        _check(is_int(self.in_chans) and self.in_chans >= 1, f"in_chans must be an int >= 1, got {self.in_chans!r}")
        _check(isinstance(self.stem, StemArch), "stem must be a StemArch")
        object.__setattr__(self, "stages", tuple(self.stages))
        _check(all(isinstance(s, StageArch) for s in self.stages), "stages must be a list of StageArch")
        _check(len(self.stages) >= 2, f"a network needs at least 2 stages (timm ByobNet), got {len(self.stages)}")
        _check(
            is_int(self.num_features) and self.num_features >= 0,
            f"num_features must be an int >= 0, got {self.num_features!r}",
        )
        h, w = self.input_size
        r = self.stem.reduction
        _check(h >= r and w >= r, f"the stem downsamples by {r}: input {h}x{w} is too small")
        for i, (hw_in, _) in enumerate(self.feature_sizes()):
            s = self.stages[i].stride
            _check(min(hw_in) >= s, f"stage {i} downsamples a {hw_in[0]}x{hw_in[1]} map by {s}, below 1 pixel")

    # -- geometry ---------------------------------------------------------------------------
    def feature_sizes(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """(input (H, W), output (H, W)) of every stage; each stride-s op gives ceil(H / s)."""
        h, w = self.input_size
        r = self.stem.reduction
        while r > 1:  # the stem is a chain of stride-2 layers, each ceil(H / 2)
            h, w, r = -(-h // 2), -(-w // 2), r // 2
        out = []
        for st in self.stages:
            ho, wo = -(-h // st.stride), -(-w // st.stride)
            out.append(((h, w), (ho, wo)))
            h, w = ho, wo
        return out

    @property
    def depth(self) -> int:
        return sum(s.depth for s in self.stages)

    def blocks(self) -> Iterator[tuple[int, int, StageArch, BlockArch]]:
        """(stage index, block index, stage, block) for every block."""
        for si, st in enumerate(self.stages):
            for bi, b in enumerate(st.blocks):
                yield si, bi, st, b

    @property
    def num_acmix(self) -> int:
        return sum(b.op == "acmix" for *_, b in self.blocks())

    def block_map(self) -> list[dict[str, Any]]:
        """One row per block (for dashboards and model cards): stage, index, op, widths, stride,
        feature size, kernel / heads / k_att / k_conv / alpha / beta / learnable (None if unused)."""
        rows = []
        sizes = self.feature_sizes()
        for si, bi, st, b in self.blocks():
            (hi, wi), (ho, wo) = sizes[si]
            rows.append(
                dict(
                    stage=si,
                    index=bi,
                    block=st.block,
                    op=b.op,
                    channels=st.channels,
                    width=st.mid_channels,
                    stride=st.stride if bi == 0 else 1,
                    feat_size=[ho, wo],
                    kernel=b.kernel,
                    heads=b.heads,
                    k_att=b.k_att,
                    k_conv=b.k_conv,
                    alpha=b.alpha,
                    beta=b.beta,
                    learnable=b.learnable,
                )
            )
        return rows

    def summary(self) -> str:
        """One short line, e.g. '16x16x1 3x3/16 | s0 basic 32x1 [C] | s1 bottleneck 64x2 [A4/7 C3]'."""
        parts = [
            f"{self.input_size[0]}x{self.input_size[1]}x{self.in_chans} "
            f"{self.stem.type}/{self.stem.channels}{'+' + self.stem.pool if self.stem.pool else ''}"
        ]
        for si, st in enumerate(self.stages):
            ops = " ".join(f"A{b.heads}/{b.k_att}" if b.op == "acmix" else f"C{b.kernel}" for b in st.blocks)
            parts.append(f"s{si} {st.block} {st.channels}x{st.depth}/{st.stride} [{ops}]")
        return " | ".join(parts)

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly primitives only (ints, floats, bools, str, None, lists, dicts)."""
        return dict(
            input_size=list(self.input_size),
            in_chans=self.in_chans,
            stem=self.stem.to_dict(),
            stages=[s.to_dict() for s in self.stages],
            num_features=self.num_features,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        """Inverse of to_dict. Raises ArchError (a ValueError) on a bad description."""
        _check_mapping(d, "arch", ["input_size", "in_chans", "stem", "stages", "num_features"])
        missing = {"input_size", "stages"} - set(d)
        _check(not missing, f"arch is missing {sorted(missing)}")
        stem = d.get("stem", {})
        _check_mapping(stem, "stem", ["type", "channels", "pool"])
        _check(isinstance(d["stages"], (list, tuple)), "stages must be a list")
        size = d["input_size"]
        if is_int(size):
            size = (size, size)
        return cls(
            input_size=tuple(size) if isinstance(size, (list, tuple)) else size,
            in_chans=d.get("in_chans", 3),
            stem=StemArch(**stem),
            stages=tuple(StageArch.from_dict(s) for s in d["stages"]),
            num_features=d.get("num_features", 0),
        )

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON (sorted keys); `arch_id` hashes the compact form."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=None if indent else (",", ":"))

    @classmethod
    def from_json(cls, s: str) -> Arch:
        return cls.from_dict(json.loads(s))

    @property
    def arch_id(self) -> str:
        """Stable short id: the first 12 hex chars of the SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def save(self, path: str | Path) -> Path:
        """Write as .json, or .yaml/.yml."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(self.to_json(indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Arch:
        """Read a .json or .yaml/.yml file written by `save` (or by hand)."""
        path = Path(path)
        text = path.read_text()
        d = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        return cls.from_dict(d)
