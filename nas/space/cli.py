"""`python -m nas.space FILE`: describe a search space (its decisions, size and reference points' costs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from nas.cli import ArgumentParser, command
from nas.net.arch import ArchError
from nas.space.decision import Decision, SpaceError
from nas.space.space import SearchSpace, load_space


def _fmt_count(n: int | float) -> str:
    """A size for people: thousands separated, or 'infinite'."""
    return "infinite (continuous ranges)" if math.isinf(n) else f"{n:,}"


def describe(space: SearchSpace, costs: bool = True, num_classes: int = 1000) -> str:
    """A human-readable description (what `python -m nas.space` prints)."""
    lines = [f"space {space.name} ({space.path or 'dict'}), fingerprint {space.fingerprint}"]
    if space.description:
        lines.append(f"  {space.description}")
    lines.append(
        f"input {space.input_size[0]}x{space.input_size[1]}x{space.in_chans}, stem {space.stem.type} "
        f"{space.stem.channels}ch{' + ' + space.stem.pool if space.stem.pool else ''}"
    )
    for i, st in enumerate(space.stages):
        lines.append(
            f"  stage {i}: {st.block}, stride {st.stride}, bottle_ratio {st.bottle_ratio}, "
            f"depth {_fmt_dec(st.depth)}, channels {_fmt_dec(st.channels)}"
        )
    lines.append("decisions:")
    for where, d in space.decisions():
        lines.append(f"  {where:28s} {_fmt_dec(d)} (per {d.per}, default {d.default})")
    lines.append(f"architectures: {_fmt_count(space.size)}")
    lines.append("reference points:")
    refs = space.reference_points()
    corners = {
        f"{p}_{op}": space.point(prefer=p, op=op)
        for p in ("min", "max")
        for op in ("conv", "acmix")
        if _try(lambda: space.point(prefer=p, op=op))
    }
    if costs:
        from nas.net.cost import measure_cost  # the CLI only: the space itself never needs the model
    for name, arch in refs.items():
        extra = ""
        if costs:
            c = measure_cost(arch, num_classes=num_classes, latency=False, memory=False)
            extra = f"  {c.params / 1e6:.3f} M params, {c.macs / 1e6:.2f} M MACs"
        lines.append(f"  {name:10s} {arch.arch_id}{extra}  {arch.summary()}")
    if costs and corners:
        cs = {k: measure_cost(a, num_classes=num_classes, latency=False, memory=False) for k, a in corners.items()}
        p = sorted(c.params for c in cs.values())
        m = sorted(c.macs for c in cs.values())
        lines.append(
            f"cost range at {num_classes} classes over the corners (min/max depth, width, kernels; all conv "
            f"or all ACmix): params {p[0] / 1e6:.3f}-{p[-1] / 1e6:.3f} M, "
            f"MACs {m[0] / 1e6:.2f}-{m[-1] / 1e6:.2f} M"
        )
    lines.append("proxy: " + ", ".join(f"{k}={v}" for k, v in space.proxy.to_dict().items()))
    return "\n".join(lines)


def _try(f: Callable[[], Any]) -> bool:
    """Whether `f()` builds (a point outside the space or an invalid network does not)."""
    try:
        f()
        return True
    except (SpaceError, ArchError):
        return False


def _fmt_dec(d: Decision) -> str:
    """A decision in one word: its value, {choices} or [low, high, step, log]."""
    if d.is_fixed:
        return str(d.choices[0])
    if d.choices is not None:
        return "{" + ", ".join(str(c) for c in d.choices) + "}"
    return f"[{d.low}, {d.high}{', step ' + str(d.step) if d.step else ''}{', log' if d.log else ''}]"


@command
def main(argv: list[str]) -> None:
    """`python -m nas.space SPACE.yaml`: print `describe`; exit 2 for a bad space."""
    ap = ArgumentParser(prog="python -m nas.space", description="Describe a search space YAML file.")
    ap.add_argument("space", type=Path, help="search space YAML, e.g. search_spaces/digits.yaml")
    ap.add_argument("--num-classes", type=int, default=1000, help="classes for the parameter counts (default: 1000)")
    ap.add_argument("--no-costs", action="store_true", help="skip building models for params/MACs (default: off)")
    args = ap.parse_args(argv)
    space = load_space(args.space)
    import torch

    torch.set_num_threads(min(4, torch.get_num_threads()))
    print(describe(space, costs=not args.no_costs, num_classes=args.num_classes))
