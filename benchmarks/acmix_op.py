"""ACmix operator: time and peak memory of ours vs the paper's unfold formulation vs a plain 3×3 conv.

    python benchmarks/acmix_op.py                 # CPU (and CUDA when present), the issue's two shapes
    python benchmarks/acmix_op.py --threads 1 --repeats 10
    python benchmarks/acmix_op.py --models        # also the model level (slow on a CPU: minutes)
    python benchmarks/acmix_op.py --parts         # also ACmix's parts alone: projections, conv branch, attention
    python benchmarks/acmix_op.py --device cuda --dtype bfloat16 --shapes resnet50 --models --model-batch 64
                                                  # a GPU: ACmix-ResNet-50's stage shapes, tiles vs FlexAttention

Forward is timed under torch.no_grad(); forward+backward from a random output gradient. Times are
medians of --repeats runs after --warmup runs, taken round-robin (one run of each implementation in
turn), so that load from other processes falls on all of them alike and the ratios stay comparable.
Peak memory is what forward+backward allocates on top of the inputs and weights: on CUDA the caching
allocator's peak; on CPU the peak of the live bytes of the storages aten ops create
(nas.net.cost.peak_memory_mb, op granularity). Ratios compare implementations measured in this same run.

--models adds the model level, training steps (forward, cross-entropy, backward, SGD step) timed the
same way: all-ACmix vs all-conv (the reference points of search_spaces/symmetry.yaml, at its proxy's
batch size and input) and timm's acmix_resnet50 vs resnet50 at --model-batch (8), 224² (images/s).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from nas.net.acmix import ACmix, local_attention, set_attention_impl
from nas.net.acmix_reference import UnfoldACmix
from nas.net.cost import peak_memory_mb

# (B, C, H, W); heads=4, k_conv=3. "issue": the two CPU shapes; "resnet50": ACmix-ResNet-50's stages at B=64.
SHAPE_SETS = {
    "issue": [(8, 64, 32, 32), (8, 128, 16, 16)],
    "resnet50": [(64, 64, 56, 56), (64, 128, 28, 28), (64, 256, 14, 14), (64, 512, 7, 7)],
}
K_ATTS = (3, 5, 7)


def flex_runs_on(device: torch.device) -> bool:
    """FlexAttention has a backward (a compiled kernel) on CUDA only; on a CPU it is forward-only and eager."""
    return device.type == "cuda"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def round_robin_ms(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: dict[str, int]
) -> dict[str, float]:
    """Median milliseconds of each function, timed in turn (one run of each per round)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(max(repeats.values())):
        for name, fn in fns.items():
            if i >= repeats[name]:
                continue
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def implementations(c: int, k_att: int, stride: int, flex: bool) -> dict[str, nn.Module]:
    impls = {"acmix (ours)": ACmix(c, c, kernel_att=k_att, head=4, kernel_conv=3, stride=stride)}
    if flex:
        impls["acmix (flex)"] = ACmix(
            c, c, kernel_att=k_att, head=4, kernel_conv=3, stride=stride, attention_impl="flex"
        )
    impls["acmix unfold"] = UnfoldACmix(c, c, kernel_att=k_att, head=4, kernel_conv=3, stride=stride)
    impls["conv 3x3"] = nn.Conv2d(c, c, 3, stride=stride, padding=1, bias=False)
    return impls


def run(
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    repeats: int,
    strides: list[int],
    shapes: list[tuple[int, int, int, int]],
    k_atts: list[int],
) -> list[dict]:
    rows = []
    for (b, c, h, w), k_att, stride in [(s, k, st) for s in shapes for k in k_atts for st in strides]:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(b, c, h, w, generator=gen).to(device, dtype)
        grad = torch.randn(b, c, -(-h // stride), -(-w // stride), generator=gen).to(device, dtype)
        modules = {
            name: m.to(device, dtype) for name, m in implementations(c, k_att, stride, flex_runs_on(device)).items()
        }
        forwards, steps = {}, {}
        for name, module in modules.items():
            xg = x.clone().requires_grad_()

            def forward(module=module):
                with torch.no_grad():
                    module(x)

            def forward_backward(module=module, xg=xg):
                module(xg).backward(grad)
                module.zero_grad(set_to_none=True)
                xg.grad = None

            forwards[name], steps[name] = forward, forward_backward
        reps = {
            name: max(3, repeats // 3) if "unfold" in name else repeats for name in modules
        }  # the reference is slow
        fwd = round_robin_ms(forwards, device, warmup, reps)
        fwd_bwd = round_robin_ms(steps, device, warmup, reps)
        for name in modules:
            rows.append(
                {
                    "shape": f"B={b} C={c} {h}x{w} k{k_att} s{stride}",
                    "device": device.type,
                    "impl": name,
                    "fwd_ms": fwd[name],
                    "fwd_bwd_ms": fwd_bwd[name],
                    "peak_mib": peak_memory_mb(steps[name], device),
                }
            )
    return rows


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'device':6} {'shape':25} {'impl':22} {'fwd ms':>9} {'fwd+bwd ms':>11} {'peak MiB':>9}  ratios (same run)"
    )
    print(header)
    print("-" * len(header) + "-" * 40)
    for row in rows:
        group = [r for r in rows if r["shape"] == row["shape"] and r["device"] == row["device"]]
        ref = next(r for r in group if "unfold" in r["impl"])
        conv = next(r for r in group if r["impl"] == "conv 3x3")
        note = ""
        if row["impl"].startswith("acmix ("):
            note = (
                f"{ref['fwd_bwd_ms'] / row['fwd_bwd_ms']:.1f}x faster fwd+bwd than unfold, "
                f"{row['peak_mib'] / ref['peak_mib']:.2f}x its memory; "
                f"{row['fwd_bwd_ms'] / conv['fwd_bwd_ms']:.1f}x the conv's time, "
                f"{row['peak_mib'] / max(conv['peak_mib'], 1e-9):.1f}x its memory"
            )
        print(
            f"{row['device']:6} {row['shape']:25} {row['impl']:22} {row['fwd_ms']:9.1f} "
            f"{row['fwd_bwd_ms']:11.1f} {row['peak_mib']:9.1f}  {note}"
        )


def run_parts(
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    repeats: int,
    strides: list[int],
    shapes: list[tuple[int, int, int, int]],
    k_atts: list[int],
) -> list[dict]:
    """ACmix's parts timed alone (forward+backward), against the whole module and the conv, in one run:
    the projections (one batched matmul), the conv branch (one grouped conv on the projections) and the
    attention (gathers and SDPA on tiles, `local_attention`). The glue between them is the remainder."""
    rows = []
    for (b, c, h, w), k_att, stride in [(s, k, st) for s in shapes for k in k_atts for st in strides]:
        gen = torch.Generator().manual_seed(0)
        module = ACmix(c, c, kernel_att=k_att, head=4, kernel_conv=3, stride=stride).to(device, dtype)
        conv = nn.Conv2d(c, c, 3, stride=stride, padding=1, bias=False).to(device, dtype)
        n, d, ho, wo = module.head, module.head_dim, -(-h // stride), -(-w // stride)

        def rand(*shape, grad=True):
            return torch.randn(*shape, generator=gen).to(device, dtype).requires_grad_(grad)

        x, grad = rand(b, c, h, w), rand(b, c, ho, wo, grad=False)
        maps = rand(b, h * w, 3 * c).transpose(1, 2).view(b, 3 * c, h, w)  # channels-last, as in forward
        one = torch.ones(1, device=device, dtype=dtype)
        q, k, v = rand(b, h * w, n, d), rand(b, h * w, n, d), rand(b, h * w, n, d)
        grads = {"projections": rand(b, h * w, d, 3, n, grad=False), "attention": rand(b, ho, wo, n, d, grad=False)}
        steps = {
            "acmix (whole)": lambda: module(x).backward(grad),
            "projections": lambda: module.projections(x).backward(grads["projections"]),
            "conv branch": lambda: module._conv_branch_maps(maps, one).backward(grad),
            "attention": lambda: local_attention(q, k, v, [h, w], k_att, stride, 1, None, d**-0.5).backward(
                grads["attention"]
            ),
            "conv 3x3": lambda: conv(x).backward(grad),
        }
        ms = round_robin_ms(steps, device, warmup, {name: repeats for name in steps})
        rows.append({"shape": f"B={b} C={c} {h}x{w} k{k_att} s{stride}", "device": device.type, **ms})
    return rows


def print_parts(rows: list[dict]) -> None:
    names = ["acmix (whole)", "projections", "conv branch", "attention"]
    header = f"{'device':6} {'shape':25} {'conv ms':>8}  " + "  ".join(f"{n + ' ×conv':>19}" for n in names)
    print("\n" + header)
    print("-" * len(header))
    for row in rows:
        conv = row["conv 3x3"]
        print(f"{row['device']:6} {row['shape']:25} {conv:8.1f}  " + "  ".join(f"{row[n] / conv:19.2f}" for n in names))


def training_step(model: nn.Module, x: torch.Tensor, num_classes: int) -> Callable[[], None]:
    """One SGD training step of `model` on batch `x` with fixed random labels."""
    model.train()
    labels = torch.randint(0, num_classes, (x.shape[0],), generator=torch.Generator().manual_seed(0)).to(x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()

    return step


def run_models(device: torch.device, dtype: torch.dtype, warmup: int, repeats: int, batch_r50: int) -> list[dict]:
    """Training steps: the default space's all-ACmix vs all-conv proxies, and ACmix-ResNet-50 vs ResNet-50
    at batch `batch_r50` (on CUDA also ACmix-ResNet-50 with the FlexAttention path)."""
    import timm

    from nas.net.model import create_model
    from nas.space import SearchSpace

    space = SearchSpace.from_yaml(Path(__file__).resolve().parents[1] / "search_spaces" / "symmetry.yaml")
    refs = space.reference_points()
    size, batch = space.proxy.image_size, space.proxy.batch_size
    x = torch.randn(batch, space.in_chans, size, size, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    groups = [
        (
            f"symmetry proxy B={batch} {size}x{size}",
            4,
            x,
            {
                "all-acmix": create_model(refs["all_acmix"], num_classes=4),
                "all-conv": create_model(refs["all_conv"], num_classes=4),
            },
            repeats,
        )
    ]
    x = torch.randn(batch_r50, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    r50 = {"acmix_resnet50": timm.create_model("acmix_resnet50")}
    if flex_runs_on(device):
        r50["acmix_resnet50 (flex)"] = set_attention_impl(timm.create_model("acmix_resnet50"), "flex")
    r50["resnet50"] = timm.create_model("resnet50")
    groups.append((f"timm B={batch_r50} 224x224", 1000, x, r50, max(3, repeats // 3)))
    rows = []
    for label, classes, x, models, reps in groups:
        steps = {name: training_step(m.to(device, dtype), x, classes) for name, m in models.items()}
        ms = round_robin_ms(steps, device, min(warmup, 1) if reps < repeats else warmup, {n: reps for n in steps})
        for name in models:
            rows.append({"group": label, "model": name, "step_ms": ms[name], "images_s": x.shape[0] / ms[name] * 1e3})
    return rows


def print_models(rows: list[dict]) -> None:
    header = f"{'setting':28} {'model':22} {'train step ms':>14} {'images/s':>9}  ratio (same run)"
    print("\n" + header)
    print("-" * len(header) + "-" * 20)
    for row in rows:
        group = [r for r in rows if r["group"] == row["group"]]
        base = group[-1]  # the conv model of the pair
        note = "" if row is base else f"{row['step_ms'] / base['step_ms']:.2f}x the time of {base['model']}"
        print(f"{row['group']:28} {row['model']:22} {row['step_ms']:14.1f} {row['images_s']:9.1f}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CPU, and CUDA as well when present"
    )
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 2], help="operator strides")
    parser.add_argument(
        "--shapes",
        choices=sorted(SHAPE_SETS),
        default="issue",
        help="issue: B=8 C=64 32x32 and C=128 16x16; resnet50: ACmix-ResNet-50's stage shapes at B=64",
    )
    parser.add_argument("--k-atts", type=int, nargs="+", default=list(K_ATTS), help="attention windows")
    parser.add_argument("--model-batch", type=int, default=8, help="batch of the ResNet-50 pair in --models")
    parser.add_argument(
        "--models",
        action="store_true",
        help="also time training steps of whole models (all-ACmix vs all-conv, ACmix-ResNet-50 vs ResNet-50)",
    )
    parser.add_argument("--models-only", action="store_true", help="only the model level")
    parser.add_argument(
        "--parts",
        action="store_true",
        help="also time ACmix's parts alone (projections, conv branch, attention) against the conv",
    )
    parser.add_argument("--parts-only", action="store_true", help="only the parts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device != "cuda" else []
    if args.device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    dtype = getattr(torch, args.dtype)
    shapes = SHAPE_SETS[args.shapes]
    print(
        f"torch {torch.__version__}, {args.threads} CPU threads, {args.dtype}, heads=4 k_conv=3, "
        f"median of {args.repeats} after {args.warmup} warm-up\n"
    )
    if not (args.models_only or args.parts_only):
        rows = []
        for device in devices:
            rows += run(device, dtype, args.warmup, args.repeats, args.strides, shapes, args.k_atts)
        print_table(rows)
    if args.parts or args.parts_only:
        for device in devices:
            print_parts(run_parts(device, dtype, args.warmup, args.repeats, args.strides, shapes, args.k_atts))
    if args.models or args.models_only:
        for device in devices:
            print_models(run_models(device, dtype, args.warmup, args.repeats, args.model_batch))


if __name__ == "__main__":
    main()
