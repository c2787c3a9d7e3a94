"""`Arch` → a timm ByobNet, and the timm entry points `acmix_nas`, `acmix_resnet26/38/50`.

Mapping (timm.models.byobnet): every block is one `ByoBlockCfg(d=1)`. A conv block is timm's
'bottle' (1×1 → k×k → 1×1) in a bottleneck stage or 'basic' (k×k → k×k) in a basic stage, with
`kernel_size=k` as block kwarg. An ACmix block is timm's 'self_attn' block (1×1 → ACmix(stride) →
BN-ReLU → 1×1, the paper's ACmix bottleneck) with `self_attn_layer=ACmix` and the block's settings
in `self_attn_kwargs`, in either kind of stage. Shortcuts are 1×1 conv + BN ('conv1x1', as in
torchvision/timm ResNet), so the all-conv ResNet-50 point has exactly timm resnet50's parameters.

    >>> import timm, nas
    >>> m = timm.create_model('acmix_nas', arch=arch, num_classes=10)   # an Arch, its dict or JSON
    >>> m = timm.create_model('acmix_resnet50')                         # the paper's network

Every model keeps its Arch as `model.arch`; `model_args(model)` gives the JSON-friendly kwargs
({'arch': arch.to_dict()}) an export writes to config.json's `model_args`, which timm's
`local-dir:` loader passes back to `acmix_nas`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import FeatureListNet, build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.byobnet import ByoBlockCfg, ByobNet, ByoModelCfg

from nas.net.acmix import ACmix
from nas.net.arch import Arch, BlockArch, StageArch, StemArch

__all__ = [
    "arch_to_cfg",
    "coerce_arch",
    "create_model",
    "default_arch",
    "model_args",
    "paper_arch",
    "rates_of",
    "rates_from_weights",
    "block_map",
    "describe_block",
    "acmix_nas",
    "acmix_resnet26",
    "acmix_resnet38",
    "acmix_resnet50",
]

PAPER_DEPTHS = {26: (1, 2, 4, 1), 38: (2, 3, 5, 2), 50: (3, 4, 6, 3)}


def coerce_arch(arch: Arch | dict[str, Any] | str) -> Arch:
    """An Arch from an Arch, its dict (to_dict) or its JSON string."""
    if isinstance(arch, Arch):
        return arch
    if isinstance(arch, str):
        return Arch.from_json(arch)
    if isinstance(arch, dict):
        return Arch.from_dict(arch)
    raise TypeError(f"arch must be an Arch, a dict or a JSON string, got {type(arch).__name__}")


def _block_cfg(stage: StageArch, block: BlockArch) -> ByoBlockCfg:
    common = dict(d=1, c=stage.channels, s=stage.stride, gs=0, br=stage.bottle_ratio)
    if block.op == "acmix":
        return ByoBlockCfg(
            type="self_attn",
            self_attn_layer=ACmix,
            self_attn_kwargs=dict(
                kernel_att=block.k_att,
                head=block.heads,
                kernel_conv=block.k_conv,
                alpha=block.alpha,
                beta=block.beta,
                learnable=block.learnable,
            ),
            **common,
        )
    kind = "bottle" if stage.block == "bottleneck" else "basic"
    return ByoBlockCfg(type=kind, block_kwargs=dict(kernel_size=block.kernel), **common)


def arch_to_cfg(arch: Arch) -> ByoModelCfg:
    """The timm ByoModelCfg of an Arch (one ByoBlockCfg per block, a tuple per stage)."""
    return ByoModelCfg(
        blocks=tuple(tuple(_block_cfg(st, b) for b in st.blocks) for st in arch.stages),
        downsample="conv1x1",
        stem_type=arch.stem.type,
        stem_pool=arch.stem.pool or "",
        stem_chs=arch.stem.channels,
        num_features=arch.num_features,
    )


def model_args(model: ByobNet) -> dict[str, Any]:
    """JSON-friendly kwargs that rebuild `model` with timm.create_model('acmix_nas', **kwargs)."""
    return {"arch": model.arch.to_dict()}


def default_arch() -> Arch:
    """The default space's (search_spaces/digits.yaml) all-ACmix point; built in, so no file is read."""
    acmix = BlockArch(op="acmix", heads=4, k_att=3, k_conv=3)
    return Arch(
        input_size=(16, 16),
        in_chans=1,
        stem=StemArch("3x3", 16, None),
        stages=(
            StageArch("basic", 16, 1, 1.0, (acmix,)),
            StageArch("bottleneck", 64, 2, 0.25, (acmix, acmix)),
        ),
    )


def paper_arch(depth: int = 50, op: str = "acmix") -> Arch:
    """ResNet-26/38/50 (timm resnet layout: 7×7/2 stem + max-pool, 4 bottleneck stages,
    widths 64/128/256/512 × 4) with every bottleneck's 3×3 conv replaced by ACmix(k_att=7, head=4,
    k_conv=3) when op='acmix' (Pan et al., 2022), or kept as conv when op='conv'."""
    block = BlockArch(op=op) if op == "conv" else BlockArch(op="acmix", heads=4, k_att=7, k_conv=3)
    stages = tuple(
        StageArch("bottleneck", c * 4, 1 if i == 0 else 2, 0.25, (block,) * d)
        for i, (c, d) in enumerate(zip((64, 128, 256, 512), PAPER_DEPTHS[depth]))
    )
    return Arch(input_size=(224, 224), in_chans=3, stem=StemArch("7x7", 64, "maxpool"), stages=stages)


def _norm_stats(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if in_chans == 3:
        return IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    return (0.5,) * in_chans, (0.5,) * in_chans


def _arch_cfg_overlay(arch: Arch) -> dict[str, Any]:
    h, w = arch.input_size
    (fh, fw) = arch.feature_sizes()[-1][1]
    return dict(input_size=(arch.in_chans, h, w), pool_size=(fh, fw), fixed_input_size=False)


def _create(variant: str, arch: Arch, pretrained: bool, **kwargs: Any) -> ByobNet:
    in_chans = kwargs.pop("in_chans", arch.in_chans)
    if in_chans != arch.in_chans:
        raise ValueError(f"in_chans={in_chans} contradicts the arch's in_chans={arch.in_chans}")
    overlay = _arch_cfg_overlay(arch)
    if not kwargs.get("pretrained_cfg") and variant == "acmix_nas":
        mean, std = _norm_stats(arch.in_chans)  # the dataset's stats belong in an export's pretrained_cfg
        overlay.update(mean=mean, std=std)
    overlay.update(kwargs.pop("pretrained_cfg_overlay", None) or {})
    if kwargs.get("features_only") and "out_indices" not in kwargs:
        # timm's default (0..4) assumes five feature levels; an Arch has as many as `_feature_info` gives
        with torch.device("meta"):
            n = len(_feature_info(ByobNet(arch_to_cfg(arch), num_classes=0, in_chans=arch.in_chans)))
        kwargs["out_indices"] = tuple(range(n))
    model = build_model_with_cfg(
        ByobNet,
        variant,
        pretrained,
        model_cfg=arch_to_cfg(arch),
        pretrained_cfg_overlay=overlay,
        feature_cfg=dict(feature_cls=_feature_net),
        in_chans=arch.in_chans,
        **kwargs,
    )
    model.arch = arch
    return model


def _feature_info(model: ByobNet) -> list[dict[str, Any]]:
    """timm's feature levels of a ByobNet (one per reduction), with the stem's output added in front
    when a network has fewer than three: the digits space downsamples only twice (/2, /4), and timm's
    feature extraction contract expects at least three levels. The stem (/2) and the first stage's
    end (/2 when it does not downsample) are then both levels, of equal reduction."""
    info = list(model.feature_info)
    if len(info) < 3 and info[0]["module"] == "stages.0":
        # stage 0 keeps the stem's resolution, so the stem's output is a level of the same reduction
        stem_chs = [m for m in model.stem.modules() if isinstance(m, torch.nn.Conv2d)][-1].out_channels
        info.insert(0, dict(num_chs=stem_chs, reduction=info[0]["reduction"], module="stem", stage=0))
    return info


def _feature_net(model: ByobNet, **kwargs: Any) -> FeatureListNet:
    """timm's FeatureListNet over `_feature_info`'s levels (build_model_with_cfg's feature_cls)."""
    model.feature_info = _feature_info(model)
    return FeatureListNet(model, flatten_sequential=True, **kwargs)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv1.conv",
        "classifier": "head.fc",
        "license": "mit",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "acmix_nas": _cfg(
            num_classes=10,
            input_size=(1, 16, 16),
            pool_size=(2, 2),
            crop_pct=1.0,
            mean=(0.5,),
            std=(0.5,),
            first_conv="stem.conv",
        ),
        "acmix_resnet26": _cfg(paper_ids="arXiv:2111.14556"),
        "acmix_resnet38": _cfg(paper_ids="arXiv:2111.14556"),
        "acmix_resnet50": _cfg(paper_ids="arXiv:2111.14556"),
    }
)


@register_model
def acmix_nas(pretrained: bool = False, arch: Arch | dict[str, Any] | str | None = None, **kwargs: Any) -> ByobNet:
    """A network of the acmix-nas search: `arch` is an Arch, its dict or its JSON; with none, the
    default digits space's all-ACmix point (1×16×16 input, 10 classes)."""
    arch = default_arch() if arch is None else coerce_arch(arch)
    return _create("acmix_nas", arch, pretrained, **kwargs)


@register_model
def acmix_resnet26(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """ACmix-ResNet-26 (Pan et al., 2022): ResNet-26 with ACmix in every bottleneck."""
    return _create("acmix_resnet26", paper_arch(26), pretrained, **kwargs)


@register_model
def acmix_resnet38(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """ACmix-ResNet-38 (Pan et al., 2022): ResNet-38 with ACmix in every bottleneck."""
    return _create("acmix_resnet38", paper_arch(38), pretrained, **kwargs)


@register_model
def acmix_resnet50(pretrained: bool = False, **kwargs: Any) -> ByobNet:
    """ACmix-ResNet-50 (Pan et al., 2022): ResNet-50 with ACmix in every bottleneck."""
    return _create("acmix_resnet50", paper_arch(50), pretrained, **kwargs)


def create_model(arch: Arch | dict[str, Any] | str, num_classes: int = 10, **kwargs: Any) -> ByobNet:
    """timm.create_model('acmix_nas', arch=arch, num_classes=num_classes, **kwargs)."""
    import timm

    return timm.create_model("acmix_nas", arch=coerce_arch(arch), num_classes=num_classes, **kwargs)


_BLOCK_RE = re.compile(r"(?:^|\.)stages\.(\d+)\.(\d+)\.")


def rates_of(model: torch.nn.Module) -> list[dict[str, Any]]:
    """The learned mixing weights of every ACmix block: [{'stage', 'index', 'alpha', 'beta'}], in
    block order (alpha = rate1, the attention branch; beta = rate2, the convolution branch)."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, ACmix):
            loc = _BLOCK_RE.search(name + ".")
            out.append(
                dict(
                    stage=int(loc.group(1)) if loc else None,
                    index=int(loc.group(2)) if loc else None,
                    alpha=float(m.rate1.detach().float().reshape(-1)[0]),
                    beta=float(m.rate2.detach().float().reshape(-1)[0]),
                )
            )
    return out


# ---------------------------------------------------------------------------------- per-block map


def rates_from_weights(path: str | Path) -> list[dict[str, Any]]:
    """rates_of() read straight from a safetensors file (only the rate tensors are read)."""
    from safetensors import safe_open

    found: dict[tuple[int, int], dict[str, Any]] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            m = re.search(r"stages\.(\d+)\.(\d+)\.self_attn\.rate([12])$", key)
            if m:
                row = found.setdefault(
                    (int(m.group(1)), int(m.group(2))), dict(stage=int(m.group(1)), index=int(m.group(2)))
                )
                row["alpha" if m.group(3) == "1" else "beta"] = float(f.get_tensor(key).float().reshape(-1)[0])
    return [found[k] for k in sorted(found)]


def block_map(arch: Arch, rates: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """`arch.block_map()` with the learned α/β of `rates` (rates_of format; entries without
    'stage'/'index' are matched to the ACmix blocks in order). Each row gets 'rates': 'learned',
    'initial' (an ACmix block with no learned value, or not learnable) or None (a conv block).
    Also reads entries that name their module instead ('stages.1.0.self_attn')."""
    rows = arch.block_map()
    located: list[tuple[tuple[int, int] | None, dict[str, Any]]] = []
    for r in rates or []:
        if r.get("stage") is not None and r.get("index") is not None:
            located.append(((int(r["stage"]), int(r["index"])), r))
        else:  # {'module': 'stages.1.0.self_attn', 'alpha', 'beta'}
            m = _BLOCK_RE.search(str(r.get("module") or r.get("name") or "") + ".")
            located.append(((int(m.group(1)), int(m.group(2))) if m else None, r))
    by_loc = {loc: r for loc, r in located if loc is not None}
    positional = iter([r for loc, r in located if loc is None])
    for row in rows:
        row["rates"] = None
        if row["op"] != "acmix":
            continue
        learned = by_loc.get((row["stage"], row["index"])) or next(positional, None)
        if learned and learned.get("alpha") is not None and row["learnable"]:
            row["alpha"], row["beta"], row["rates"] = float(learned["alpha"]), float(learned["beta"]), "learned"
        else:
            row["rates"] = "initial"
    return rows


def describe_block(row: dict[str, Any]) -> str:
    """One short line per block, e.g. 's1.b0 ACmix h4 k7 c3 α0.61 β0.44' or 's0.b0 conv 3x3'."""
    head = f"s{row['stage']}.b{row['index']}"
    if row["op"] == "acmix":
        tag = "" if row["rates"] == "learned" else " (init)"
        return (
            f"{head} ACmix h{row['heads']} k{row['k_att']} c{row['k_conv']} α{row['alpha']:.2f} β{row['beta']:.2f}{tag}"
        )
    return f"{head} conv {row['kernel']}x{row['kernel']}"
