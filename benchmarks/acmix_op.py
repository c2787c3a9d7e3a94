"""ACmix operator: time and peak memory of ours vs the paper's unfold formulation vs a plain 3×3 conv.

    python benchmarks/acmix_op.py                 # CPU (and CUDA when present), the issue's two shapes
    python benchmarks/acmix_op.py --threads 1 --repeats 10

Forward is timed under torch.no_grad(); forward+backward from a random output gradient. Times are
the median of --repeats runs after --warmup runs. Peak memory is what forward+backward allocates on
top of the inputs and weights: on CUDA the caching allocator's peak; on CPU the peak of the live
bytes of the storages aten ops create (nas.cost.peak_memory_mb, op granularity).
Ratios compare implementations measured in this same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from nas.acmix import ACmix
from nas.acmix_reference import UnfoldACmix
from nas.cost import peak_memory_mb

SHAPES = [(8, 64, 32, 32), (8, 128, 16, 16)]  # (B, C, H, W); heads=4, k_conv=3
K_ATTS = (3, 5, 7)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def implementations(c: int, k_att: int) -> dict[str, nn.Module]:
    return {
        "acmix (ours)": ACmix(c, c, kernel_att=k_att, head=4, kernel_conv=3),
        "acmix unfold": UnfoldACmix(c, c, kernel_att=k_att, head=4, kernel_conv=3),
        "conv 3x3": nn.Conv2d(c, c, 3, padding=1, bias=False),
    }


def run(device: torch.device, dtype: torch.dtype, warmup: int, repeats: int) -> list[dict]:
    rows = []
    for (b, c, h, w), k_att in [(s, k) for s in SHAPES for k in K_ATTS]:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(b, c, h, w, generator=gen).to(device, dtype)
        grad = torch.randn(b, c, h, w, generator=gen).to(device, dtype)
        for name, module in implementations(c, k_att).items():
            module = module.to(device, dtype)
            xg = x.clone().requires_grad_()

            def forward(module=module):
                with torch.no_grad():
                    module(x)

            def forward_backward(module=module, xg=xg):
                module(xg).backward(grad)
                module.zero_grad(set_to_none=True)
                xg.grad = None

            reps = max(3, repeats // 3) if "unfold" in name else repeats  # the reference is slow
            rows.append({
                "shape": f"B={b} C={c} {h}x{w} k{k_att}", "device": device.type, "impl": name,
                "fwd_ms": median_ms(forward, device, warmup, reps),
                "fwd_bwd_ms": median_ms(forward_backward, device, warmup, reps),
                "peak_mib": peak_memory_mb(forward_backward, device),
            })
    return rows


def print_table(rows: list[dict]) -> None:
    header = f"{'device':6} {'shape':22} {'impl':22} {'fwd ms':>9} {'fwd+bwd ms':>11} {'peak MiB':>9}  ratios (same run)"
    print(header)
    print("-" * len(header) + "-" * 40)
    for row in rows:
        group = [r for r in rows if r["shape"] == row["shape"] and r["device"] == row["device"]]
        ref = next(r for r in group if "unfold" in r["impl"])
        conv = next(r for r in group if r["impl"] == "conv 3x3")
        note = ""
        if row["impl"] == "acmix (ours)":
            note = (f"{ref['fwd_bwd_ms'] / row['fwd_bwd_ms']:.1f}x faster fwd+bwd than unfold, "
                    f"{row['peak_mib'] / ref['peak_mib']:.2f}x its memory; "
                    f"{row['fwd_bwd_ms'] / conv['fwd_bwd_ms']:.1f}x the conv's time, "
                    f"{row['peak_mib'] / max(conv['peak_mib'], 1e-9):.1f}x its memory")
        print(f"{row['device']:6} {row['shape']:22} {row['impl']:22} {row['fwd_ms']:9.1f} "
              f"{row['fwd_bwd_ms']:11.1f} {row['peak_mib']:9.1f}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CPU, and CUDA as well when present")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device != "cuda" else []
    if args.device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, {args.threads} CPU threads, {args.dtype}, heads=4 k_conv=3, "
          f"median of {args.repeats} after {args.warmup} warm-up\n")
    rows = []
    for device in devices:
        rows += run(device, dtype, args.warmup, args.repeats)
    print_table(rows)


if __name__ == "__main__":
    main()
