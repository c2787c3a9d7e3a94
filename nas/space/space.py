"""Search spaces: a YAML file → a validated `SearchSpace` that samples `Arch`es with Optuna.

A space fixes the macro structure (input, stem, stages with block kind, stride, bottleneck ratio)
and lets any of these be a *decision*: stage depth and width, a width multiplier, and per block
the spatial op (conv | acmix) with the conv kernel, or ACmix's heads, k_att, k_conv, α/β initial
values and whether α/β are learnable. A decision is written as

    key: 3                                   # fixed
    key: {choices: [3, 5, 7]}                # chosen per block (the default scope)
    key: {choices: [3, 5, 7], per: stage}    # one value shared by the stage's blocks
    key: {choices: [3, 5, 7], per: network}  # one value for the whole network (top level only)
    key: {low: 0.0, high: 1.0, step: 0.25}   # a range (int or float, optional step / log)
    key: {choices: [...], default: 5}        # the value reference points use (default: first choice)

`SearchSpace.sample(trial)` calls one `trial.suggest_*` per decision that matters for the network
being built (define-by-run: ACmix settings are asked only for ACmix blocks; fixed values are never
asked), with primitive values only. Parameter names: `width_mult`, `s{i}.depth`, `s{i}.channels`,
`s{i}.b{j}.<key>` (per block), `s{i}.<key>` (per stage), `net.<key>` (per network).

The file is read and checked key by key in `nas.space.file`; the decisions and stages a space is
made of are `nas.space.decision`'s; this module is the space itself (sampling, building, counting,
serialising). `nas.space.cli` describes one: `python -m nas.space search_spaces/digits.yaml`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from nas.net.arch import Arch, ArchError, BlockArch, StageArch, StemArch, make_divisible
from nas.proxy import ProxyConfig
from nas.space.decision import ACMIX_KEYS, BLOCK_DECISIONS, CONV_KEYS, Decision, SpaceError, StageSpace
from nas.space.file import read_yaml, space_fields

__all__ = ["SpaceError", "Decision", "StageSpace", "SearchSpace", "load_space", "BLOCK_DECISIONS"]

Picker = Callable[[Decision, str, int | None, int | None], Any]  # (decision, name, stage, block)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space (see the module docstring for the YAML)."""

    name: str
    input_size: tuple[int, int]
    in_chans: int
    stem: StemArch
    width_mult: Decision
    num_features: int
    stages: tuple[StageSpace, ...]
    proxy: ProxyConfig
    description: str = ""
    path: str | None = field(default=None, compare=False)

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """Load and validate a YAML space. Raises SpaceError naming the file and key path."""
        path = Path(path)
        return cls.from_dict(read_yaml(path), file=str(path), name=path.stem)

    @classmethod
    def from_dict(cls, raw: Any, file: str | None = None, name: str = "space") -> SearchSpace:
        """Validate a parsed YAML mapping (also accepts the output of `to_dict`): its keys
        (`nas.space.file`), then the geometry of the space they make."""
        space = cls(**space_fields(raw, file, name))
        space._check_geometry(file)
        return space

    def _too_small(self, h: int, w: int) -> tuple[int | None, int, int] | None:
        """Where an h x w input runs out of pixels: (None, h, w) when the stem's reduction exceeds
        it, (i, map h, map w) when stage i strides its map below 1 pixel; None when it fits."""
        r = self.stem.reduction
        if min(h, w) < r:
            return None, h, w
        for _ in range(int(math.log2(r))):
            h, w = -(-h // 2), -(-w // 2)
        for i, st in enumerate(self.stages):
            if min(h, w) < st.stride:
                return i, h, w
            h, w = -(-h // st.stride), -(-w // st.stride)
        return None

    def fits(self, size: int) -> bool:
        """Whether a square input of `size` pixels leaves every stage at least one pixel (a proxy's
        smaller image size, `nas.calibrate`)."""
        return size >= 1 and self._too_small(size, size) is None

    def _check_geometry(self, file: str | None) -> None:
        """Every reachable width admits every reachable head count; no stage strides a 1-pixel map."""
        small = self._too_small(*self.input_size)
        if small is not None:
            i, h, w = small
            if i is None:
                raise SpaceError(
                    file, "input_size", f"the stem downsamples by {self.stem.reduction}: input {h}x{w} is too small"
                )
            raise SpaceError(
                file,
                f"stages[{i}].stride",
                f"stage {i} downsamples a {h}x{w} map by "
                f"{self.stages[i].stride}, below 1 pixel; allowed here: 1 (or a larger input_size)",
            )
        for i, st in enumerate(self.stages):
            if "acmix" not in st.decisions["op"].values():
                continue
            heads = st.decisions["heads"].values()
            for wm in self.width_mult.values() or (self.width_mult.low, self.width_mult.high):
                for c in st.channels.values() or (st.channels.low, st.channels.high):
                    mid = make_divisible(self._width(c, wm) * st.bottle_ratio)
                    for n in heads:
                        if mid % n:
                            ok = [d for d in range(1, min(mid, 64) + 1) if mid % d == 0]
                            raise SpaceError(
                                file,
                                f"stages[{i}].blocks.heads",
                                (
                                    f"heads={n} does not divide the block width {mid} of stage {i} (channels {c} x "
                                    f"bottle_ratio {st.bottle_ratio} x width_mult {wm}); allowed here: {ok}"
                                ),
                            )

    @staticmethod
    def _width(c: int, wm: float) -> int:
        """A width `c` times the multiplier `wm`, rounded as timm rounds (unchanged at 1)."""
        return c if wm == 1 else make_divisible(c * wm)

    # -- building architectures --------------------------------------------------------------------
    def _build(self, pick: Picker) -> Arch:
        """The architecture whose every decision's value `pick` gives (asked once per block, stage
        or network, as the decision's scope says; a block's op first, then the settings it uses)."""
        wm = pick(self.width_mult, "width_mult", None, None)
        net: dict[str, Any] = {}
        stages = []
        for si, st in enumerate(self.stages):
            depth = pick(st.depth, f"s{si}.depth", si, None)
            channels = self._width(pick(st.channels, f"s{si}.channels", si, None), wm)
            tied: dict[str, Any] = {}
            blocks = []
            for bi in range(depth):

                def get(key: str) -> Any:
                    """Block `bi`'s value of `key`: picked per block, or once per stage or network."""
                    d = st.decisions[key]
                    if d.per == "block":
                        return pick(d, f"s{si}.b{bi}.{key}", si, bi)
                    cache, name = (tied, f"s{si}.{key}") if d.per == "stage" else (net, f"net.{key}")
                    if key not in cache:
                        cache[key] = pick(d, name, si, bi)
                    return cache[key]

                op = get("op")
                keys = CONV_KEYS if op == "conv" else ACMIX_KEYS
                blocks.append(BlockArch(op=op, **{k: get(k) for k in keys}))
            stages.append(
                StageArch(
                    block=st.block,
                    channels=channels,
                    stride=st.stride,
                    bottle_ratio=st.bottle_ratio,
                    blocks=tuple(blocks),
                )
            )
        stem = replace(self.stem, channels=self._width(self.stem.channels, wm))
        return Arch(
            input_size=self.input_size,
            in_chans=self.in_chans,
            stem=stem,
            stages=tuple(stages),
            num_features=self.num_features,
        )

    def sample(self, trial: Any, full: bool = False) -> Arch:
        """Sample an architecture with an Optuna trial, one suggest_* per decision.

        Define-by-run (`full=False`): only the decisions the network being built uses are asked
        (a conv block has no heads, a stage of depth 1 no second block). `full=True`: every
        parameter of `encoding()` is asked in every trial, in one fixed order, and the network is
        built from those it uses (the others are ignored, so its id is the same): samplers that
        model a fixed set of parameters jointly (multivariate TPE, GP, evolution) see all of them.
        """
        if full:
            return self.point({name: d.suggest(trial, name) for name, d in self.encoding.items()})
        return self._build(lambda d, name, si, bi: d.suggest(trial, name))

    @cached_property
    def encoding(self) -> dict[str, Decision]:
        """Every Optuna parameter of the space, by name, in a fixed order: `width_mult`, then per
        stage its depth, channels and the decisions of every block up to its largest depth (or
        the stage's or network's shared ones). Fixed decisions are not parameters."""
        out: dict[str, Decision] = {}

        def add(name: str, d: Decision) -> None:
            """A parameter, unless fixed or already there (a shared decision is one parameter)."""
            if not d.is_fixed and name not in out:
                out[name] = d

        add("width_mult", self.width_mult)
        for si, st in enumerate(self.stages):
            add(f"s{si}.depth", st.depth)
            add(f"s{si}.channels", st.channels)
            for bi in range(int(st.depth.max)):
                for key in BLOCK_DECISIONS:
                    d = st.decisions[key]
                    add({"block": f"s{si}.b{bi}.{key}", "stage": f"s{si}.{key}", "network": f"net.{key}"}[d.per], d)
        return out

    def distributions(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The Optuna distribution of each of `params` (a trial's parameters, of either sampling
        mode), as `sample` suggests them: for `optuna.trial.create_trial`.

        Raises:
            ValueError: a parameter this space does not have.
        """
        unknown = [k for k in params if k not in self.encoding]
        if unknown:
            raise ValueError(f"parameter {unknown[0]!r} is not in this space")
        return {k: self._distributions[k] for k in params}

    @cached_property
    def _distributions(self) -> dict[str, Any]:
        """The Optuna distribution of every parameter of the encoding."""
        return {name: d.distribution() for name, d in self.encoding.items()}

    def point(self, params: Mapping[str, Any] | None = None, *, prefer: str = "default", **fixed: Any) -> Arch:
        """One architecture of the space without a trial.

        Args:
            params: Optuna-style parameter values by name (e.g. a trial's `params`); missing ones
                fall back to `fixed`, then to `prefer`.
            prefer: 'default' (each decision's default), 'min' or 'max' (its smallest/largest value).
            **fixed: a value per decision key for every block/stage (op='acmix', heads=4, depth=2), a
                list with one value per stage (depth=[1, 2, 4, 1]), or a function (stage_index,
                StageSpace) -> value.
        Raises:
            SpaceError: a value outside its decision's values.
        """
        params = dict(params or {})
        for k in fixed:
            if k not in BLOCK_DECISIONS + ("depth", "channels", "width_mult"):
                raise TypeError(f"point(): unknown decision {k!r}")

        def pick(d: Decision, name: str, si: int | None, bi: int | None) -> Any:
            """`params`, then `fixed`, then `prefer`; checked against the decision."""
            if name in params:
                v = params[name]
            elif d.key in fixed:
                v = fixed[d.key]
                if callable(v):
                    v = v(si, self.stages[si])
                elif isinstance(v, (list, tuple)):
                    v = v[si]
            else:
                return {"default": d.default, "min": d.min, "max": d.max}[prefer]
            if not d.contains(v):
                raise SpaceError(
                    self.path,
                    name,
                    f"{v!r} is not in this space; allowed: "
                    f"{list(d.values()) if d.values() is not None else f'[{d.low}, {d.high}]'}",
                )
            return v

        return self._build(pick)

    def params_of(self, arch: Arch) -> dict[str, Any]:
        """The Optuna parameters that rebuild `arch` (for `study.enqueue_trial`).

        Raises:
            SpaceError: `arch` is not a point of this space.
        """
        if len(arch.stages) == len(self.stages):
            for wm in self.width_mult.values() or (self.width_mult.default,):
                seen: dict[str, Any] = {}

                def pick(d: Decision, name: str, si: int | None, bi: int | None) -> Any:
                    """The value `arch` has for this decision (LookupError: none of its values)."""
                    if name == "width_mult":
                        v = wm
                    elif name.endswith(".depth"):
                        v = arch.stages[si].depth
                    elif name.endswith(".channels"):
                        v = next(
                            (c for c in (d.values() or ()) if self._width(c, wm) == arch.stages[si].channels),
                            arch.stages[si].channels,
                        )
                    else:
                        v = getattr(arch.stages[si].blocks[bi], d.key)
                    if not d.contains(v):
                        raise LookupError(name)
                    if not d.is_fixed:
                        seen[name] = v
                    return v

                try:
                    if self._build(pick) == arch:
                        return seen
                except (LookupError, ArchError):
                    continue
        raise SpaceError(self.path, "", f"architecture {arch.arch_id} is not a point of this space")

    def reference_points(self) -> dict[str, Arch]:
        """Fixed points to seed a search (those inside the space): 'all_conv', 'all_acmix' and 'paper'
        (the paper's placement: ACmix in every bottleneck block, conv in basic blocks); other decisions
        at their defaults. Every point is a different network: a point that equals an earlier one is
        left out ('paper' is all-conv in a space of basic blocks only, and all-ACmix in one of
        bottlenecks only, as ACmix-ResNet is)."""
        cands: dict[str, Callable[[], Arch]] = {
            "all_conv": lambda: self.point(op="conv"),
            "all_acmix": lambda: self.point(op="acmix"),
            "paper": lambda: self.point(op=lambda si, st: "acmix" if st.block == "bottleneck" else "conv"),
        }
        out: dict[str, Arch] = {}
        for k, f in cands.items():
            try:
                arch = f()
            except (SpaceError, ArchError):
                continue
            if all(a.arch_id != arch.arch_id for a in out.values()):
                out[k] = arch
        return out

    # -- description ---------------------------------------------------------------------------
    def decisions(self) -> list[tuple[str, Decision]]:
        """(where, decision) for every non-fixed decision: 'width_mult', 'stages[i].depth', ..."""
        out = []
        if not self.width_mult.is_fixed:
            out.append(("width_mult", self.width_mult))
        for i, st in enumerate(self.stages):
            for k, d in (("depth", st.depth), ("channels", st.channels), *st.decisions.items()):
                if not d.is_fixed:
                    out.append((f"stages[{i}].{k}", d))
        return out

    @property
    def conditional(self) -> bool:
        """Whether some searched parameter exists in some architectures only: the blocks of a stage
        whose depth is searched, or the settings of one op when the op is searched (a conv block
        has no heads). Samplers that model one fixed set of parameters (GP) draw these at random."""
        for st in self.stages:
            searched = [d for d in st.decisions.values() if not d.is_fixed]
            if not st.depth.is_fixed and any(d.per == "block" for d in searched):
                return True
            if not st.decisions["op"].is_fixed and any(d.key != "op" for d in searched):
                return True
        return False

    @property
    def size(self) -> int | float:
        """Number of distinct architectures (math.inf when a continuous range matters).

        Settings that a block's op does not use are not counted (a conv block has no heads), nor
        are width multipliers that round to the same widths.
        """
        net_op = next((st.decisions["op"] for st in self.stages if st.decisions["op"].per == "network"), None)
        if net_op is not None:
            return _add(*(self._size(force_op=op) for op in net_op.values()))
        return self._size(None)

    def _size(self, force_op: str | None) -> int | float:
        """The number of distinct networks, with the op decided per network forced to `force_op`
        (`size` sums over its values), or math.inf when a continuous range matters.

        A network is its widths times its blocks' settings, and the two multiply:

        * widths: the distinct tuples (stem, stage 1, ...) over width multipliers x channel choices,
          after rounding (two multipliers that round to the same widths count once);
        * blocks, stage by stage: a block counts the product of the choices of the settings its op
          uses (`CONV_KEYS` or `ACMIX_KEYS`) that are decided per block; settings decided per stage
          multiply once per stage that has a block of that op; settings decided per network once per
          network that has a block using them. So each stage's ways are kept by the network-wide
          settings its blocks use (`_stage_ways`: a stage of depth d has c^d all-conv and a^d
          all-ACmix ways, c and a the per-block counts, and (c + a)^d - c^d - a^d mixed ones when
          the op is decided per block); the stages combine (`_combine`: ways multiply, the used
          settings unite), and each network-wide setting multiplies the ways that use it.

        `tests/test_space.py` checks it against enumerating every combination of the full encoding.
        """
        widths = self._distinct_widths()
        if math.isinf(widths):
            return math.inf
        ways: Ways = {frozenset(): 1}
        for st in self.stages:
            ways = _combine(ways, _stage_ways(st, force_op))
        total = _add(*(_mul(n, math.prod(d.count for d in used)) for used, n in ways.items()))
        return _mul(total, widths)

    def _distinct_widths(self) -> int | float:
        """The number of distinct width tuples (stem, stage 1, ...) over the width multipliers and
        the stages' channel choices, after rounding; math.inf when either is a continuous range."""
        mults = self.width_mult.values()
        channels = [st.channels.values() for st in self.stages]
        if mults is None or any(v is None for v in channels):
            return math.inf
        widths = set()
        for wm in mults:
            for combo in itertools.islice(itertools.product(*channels), 100_000):
                widths.add((self._width(self.stem.channels, wm),) + tuple(self._width(c, wm) for c in combo))
        return len(widths)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The resolved space (defaults filled in), loadable again with `from_dict`."""
        return dict(
            name=self.name,
            description=self.description,
            input_size=list(self.input_size),
            in_chans=self.in_chans,
            stem=self.stem.to_dict(),
            width_mult=self.width_mult.to_dict(),
            num_features=self.num_features,
            blocks={k: d.to_dict() for st in self.stages for k, d in st.decisions.items() if d.per == "network"},
            stages=[s.to_dict() for s in self.stages],
            proxy=self.proxy.to_dict(),
        )

    @property
    def fingerprint(self) -> str:
        """16 hex chars of the SHA-256 of the resolved space (structure, decisions and proxy)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


# -- counting (SearchSpace.size) ------------------------------------------------------------------
_OP_KEYS = {"conv": CONV_KEYS, "acmix": ACMIX_KEYS}  # the block settings each op uses
Ways = dict[frozenset[Decision], int | float]  # the decisions per network used -> the ways


def _stage_ways(st: StageSpace, force_op: str | None) -> Ways:
    """The ways to set one stage's blocks (its depth, ops and their settings decided per block or
    per stage), by the decisions per network that those blocks use."""
    op = st.decisions["op"]
    ops = [force_op] if op.per == "network" else list(op.values())

    def factor(name: str, per: str) -> int | float:
        """The product of the counts of op `name`'s settings decided `per` block or stage."""
        return math.prod(st.decisions[k].count for k in _OP_KEYS[name] if st.decisions[k].per == per)

    def uses(name: str) -> frozenset[Decision]:
        """The decisions per network that the blocks of op `name` use in this stage."""
        return frozenset(st.decisions[k] for k in _OP_KEYS[name] if st.decisions[k].per == "network")

    c = factor("conv", "block") if "conv" in ops else 0
    a = factor("acmix", "block") if "acmix" in ops else 0
    only_c = only_a = both = 0
    for depth in st.depth.values():
        only_c, only_a = _add(only_c, _pow(c, depth)), _add(only_a, _pow(a, depth))
        if op.per == "block" and c and a:  # the blocks of one stage may differ in op
            either = math.inf if math.isinf(c + a) else _pow(c + a, depth) - _pow(c, depth) - _pow(a, depth)
            both = _add(both, either)
    conv_stage, acmix_stage = factor("conv", "stage"), factor("acmix", "stage")
    return _gather(
        [
            (uses("conv"), _mul(only_c, conv_stage)),
            (uses("acmix"), _mul(only_a, acmix_stage)),
            (uses("conv") | uses("acmix"), _mul(both, _mul(conv_stage, acmix_stage))),
        ]
    )


def _combine(first: Ways, second: Ways) -> Ways:
    """Two independent parts of a network together: the ways multiply, the decisions used unite."""
    return _gather((u1 | u2, _mul(n1, n2)) for u1, n1 in first.items() for u2, n2 in second.items())


def _gather(pairs: Iterable[tuple[frozenset[Decision], int | float]]) -> Ways:
    """(decisions used, ways) pairs as Ways, the ways of equal keys added."""
    out: Ways = {}
    for used, n in pairs:
        out[used] = _add(out.get(used, 0), n)
    return out


def _mul(a: int | float, b: int | float) -> int | float:
    """a x b, where 0 x math.inf is 0 (no way to build is no way, however many settings)."""
    return 0 if a == 0 or b == 0 else a * b


def _add(*xs: int | float) -> int | float:
    """The sum."""
    return sum(xs)


def _pow(a: int | float, n: int) -> int | float:
    """a^n, where 0^n is 0 (and math.inf^n math.inf)."""
    return 0 if a == 0 else a**n


def load_space(path: str | Path) -> SearchSpace:
    """`SearchSpace.from_yaml(path)`."""
    return SearchSpace.from_yaml(path)
