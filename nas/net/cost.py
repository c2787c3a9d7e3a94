"""What a network costs: parameters, MACs, latency and peak memory.

MACs (multiply-accumulates of one image's forward pass, at batch 1):
  * everything but ACmix's attention comes from `torch.utils.flop_counter.FlopCounterMode`
    (convolutions, matmuls, linear layers; MACs = counted FLOPs / 2). Normalisation, activations,
    pooling, softmax and additions are not MACs and are not counted (the usual convention).
  * every ACmix module counts as the operator of the paper's reference module as docs/network.md describes it (`acmix_macs`), whatever the
    counter saw inside it (ACmix runs fused and folded equivalents of these parts, and the
    attention's fused kernels are counted on some backends and missed on others):
        q, k, v projections:            3·C_in·C · H·W
        positional encoding:            2·d · H·W
        fc:                             3·C·k_c² · H·W                   (at the input resolution)
        dep_conv:                       C·k_c⁴ · H_out·W_out
        attention:                      2·C·k_a² · H_out·W_out           (`acmix_attention_macs`)
    with C the ACmix width, k_a its window, H_out×W_out its output map. The attention term is the
    logits (one d-dimensional dot product per head per window position: C·k_a² per output pixel)
    plus the weighted sum of values (C·k_a² again); the positional term q·(k − pe) only adds and is
    not counted. This is the mathematical operator's cost, not the blocked kernel's (whose masked
    padding computes more).

Latency: `model.eval()`, `torch.no_grad()`, `warmup` untimed runs, then the median of
`repeats` timed forward passes (CUDA synchronised), at the stated batch size and dtype.

Peak memory (`peak_memory_mb`): the most memory held by tensors created during one inference
forward pass, above what was held before it (weights and the input excluded), at the stated
batch size. CUDA: `torch.cuda.max_memory_allocated()` minus the allocation before the call.
CPU: the live bytes of every tensor created by an aten op during the pass, tracked with a
TorchDispatchMode (a storage counts from the op that creates it until its last tensor is freed),
so it is the activation + temporary high-water mark the CUDA number also measures (allocator
rounding and library-internal scratch buffers excluded).
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from nas.net.acmix import ACmix
from nas.net.arch import Arch

__all__ = [
    "Cost",
    "measure_cost",
    "count_macs",
    "acmix_attention_macs",
    "acmix_macs",
    "count_params",
    "measure_latency",
    "measure_peak_memory",
]


@dataclass(frozen=True)
class Cost:
    """The cost of one network at one input size (MACs and params per image, batch-independent)."""

    params: int
    macs: int
    attention_macs: int  # the analytic ACmix attention part of `macs`
    latency_ms: float | None  # median forward time of one batch
    peak_memory_mb: float | None  # see the module docstring
    input_size: tuple[int, int, int]  # (C, H, W)
    batch_size: int
    dtype: str
    device: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


def acmix_attention_macs(C: int, heads: int, k_att: int, H_out: int, W_out: int) -> int:
    """MACs of ACmix's attention for one image: logits + weighted sum = 2·C·k_att²·H_out·W_out.

    Each of the `heads` heads has d = C / heads channels; per output pixel and head the logits take
    k_att² dot products of length d and the weighted sum k_att² multiply-adds of length d, so the
    head count cancels: 2·heads·d·k_att² = 2·C·k_att² per output pixel.
    """
    if C % heads:
        raise ValueError(f"heads={heads} must divide C={C}")
    return 2 * C * k_att * k_att * H_out * W_out


def acmix_macs(m: ACmix, H: int, W: int) -> dict[str, int]:
    """The analytic MACs of one ACmix module on an H×W input (batch 1), by part."""
    C, cin, d, kc = m.out_planes, m.in_planes, m.head_dim, m.kernel_conv
    ho, wo = -(-H // m.stride), -(-W // m.stride)
    return dict(
        qkv=3 * cin * C * H * W,
        pos=2 * d * H * W,
        fc=3 * C * kc * kc * H * W,
        dep_conv=C * kc**4 * ho * wo,
        attention=acmix_attention_macs(C, m.head, m.kernel_att, ho, wo),
    )


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[int, int]:
    """(total MACs, analytic attention MACs) of one image; see the module docstring."""
    p = next(model.parameters())
    x = torch.zeros(1, *input_size, device=p.device, dtype=p.dtype)
    acmix = {name: m for name, m in model.named_modules() if isinstance(m, ACmix)}
    in_sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, n=n: in_sizes.__setitem__(n, tuple(args[0].shape[-2:])))
        for n, m in acmix.items()
    ]
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    counts = counter.get_flop_counts()
    root = type(model).__name__

    def flops(fqn: str) -> int:
        return sum(counts.get(f"{root}.{fqn}" if fqn else root, {}).values())

    total = sum(counts.get("Global", {}).values())
    attention = 0
    for name, m in acmix.items():
        H, W = in_sizes[name]
        # ACmix runs its projections as one matmul and fc + dep_conv as one folded grouped conv
        # (nas.net.acmix), so what the counter sees is the implementation, not the operator: the whole
        # module is replaced by the operator's analytic count, part by part.
        analytic = acmix_macs(m, H, W)
        total += 2 * sum(analytic.values()) - flops(name)
        attention += analytic["attention"]
    return total // 2, attention


class _LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of storages created by aten ops while active; `peak` is the high-water mark."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage data_ptr -> [nbytes, live tensors]
        self.now = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.now -= entry[0]
                del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # Storages of the inputs: an output on one of them is a view (or in-place), not an allocation, and
        # one that this tracker did not see created was there before the call (x.flatten(), weight.t()).
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and t.device.type != "meta"
        }
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                ptr = st.data_ptr()
                if ptr == 0 or (ptr in inputs and ptr not in self.live):
                    continue
                if ptr in self.live:
                    self.live[ptr][1] += 1
                else:
                    self.live[ptr] = [st.nbytes(), 1]
                    self.now += st.nbytes()
                    self.peak = max(self.peak, self.now)
                weakref.finalize(t, self._release, ptr)
        return out


def peak_memory_mb(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Peak MB held by tensors created while `fn` runs, above what was held before it.

    CUDA: the caching allocator's peak (`max_memory_allocated`) minus the allocation before the call.
    CPU: the live bytes of every storage an aten op creates, tracked from creation until its last
    tensor is freed (a TorchDispatchMode), at op granularity.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    tracker = _LiveTensorBytes()
    with tracker:
        fn()
    return tracker.peak / 2**20


def training_memory_mb(model: nn.Module, input_size: tuple[int, int, int], batch_size: int) -> float:
    """An estimate of the memory one training step of `model` needs at `batch_size`, in MB:
    the activations and gradients of a forward and backward pass measured on the CPU at batch 2
    (`peak_memory_mb`) and scaled to `batch_size`, plus the weights, their gradients and two
    optimizer moments (4x the parameters). What `--gpus-per-trial auto` packs GPUs by."""
    model.train()
    x = torch.randn(2, *input_size)

    def step() -> None:
        model(x).float().sum().backward()

    activations = peak_memory_mb(step, "cpu") * batch_size / 2
    model.zero_grad(set_to_none=True)
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return activations + 4 * weights


def measure_peak_memory(model: nn.Module, x: torch.Tensor) -> float:
    """Peak MB held by tensors created during one inference forward (see `peak_memory_mb`)."""
    model.eval()

    def forward() -> None:
        with torch.no_grad():
            model(x)

    return peak_memory_mb(forward, x.device)


def measure_latency(model: nn.Module, x: torch.Tensor, warmup: int = 3, repeats: int = 10) -> float:
    """Median milliseconds of one inference forward of batch `x` after `warmup` untimed runs."""
    model.eval()
    cuda = x.device.type == "cuda"
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize(x.device)
            t0 = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize(x.device)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure_cost(
    model_or_arch: nn.Module | Arch,
    input_size: tuple[int, int, int] | None = None,
    device: str | torch.device = "cpu",
    *,
    num_classes: int = 1000,
    batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    latency: bool = True,
    memory: bool = True,
    warmup: int = 3,
    repeats: int = 10,
) -> Cost:
    """Params, MACs, latency and peak memory of a model (or an Arch, built with `num_classes`).

    Args:
        model_or_arch: a model (moved to `device`/`dtype` in place) or an Arch.
        input_size: (C, H, W); default: the Arch's, else the model's pretrained_cfg input_size.
        device: where latency and memory are measured ('cpu', 'cuda', 'cuda:1', ...).
        num_classes: classifier size when an Arch is given (timm's default 1000).
        batch_size, dtype: of the latency and memory measurements (MACs are per image).
        latency, memory: measure them (else None).
        warmup, repeats: latency runs (median of `repeats` after `warmup`).

    Example:
        >>> measure_cost(nas.net.model.default_arch(), num_classes=10).macs
    """
    if isinstance(model_or_arch, Arch):
        from nas.net.model import create_model  # cost sits beside the model: an Arch needs building

        model = create_model(model_or_arch, num_classes=num_classes)
        input_size = input_size or (model_or_arch.in_chans, *model_or_arch.input_size)
    else:
        model = model_or_arch
    if input_size is None:
        arch = getattr(model, "arch", None)
        input_size = (
            (arch.in_chans, *arch.input_size) if arch is not None else tuple(model.pretrained_cfg["input_size"])
        )
    input_size = tuple(int(v) for v in input_size)
    device = torch.device(device)
    model = model.to(device=device, dtype=dtype).eval()
    macs, att = count_macs(model, input_size)
    x = torch.randn(batch_size, *input_size, device=device, dtype=dtype)
    lat = measure_latency(model, x, warmup, repeats) if latency else None
    mem = measure_peak_memory(model, x) if memory else None
    return Cost(
        params=count_params(model),
        macs=int(macs),
        attention_macs=int(att),
        latency_ms=lat,
        peak_memory_mb=mem,
        input_size=input_size,
        batch_size=batch_size,
        dtype=str(dtype).replace("torch.", ""),
        device=str(device),
    )
