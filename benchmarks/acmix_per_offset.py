"""A per-offset local attention (custom autograd Function) against ACmix's tiled SDPA path: a negative result.

    python benchmarks/acmix_per_offset.py --threads 1

Issue 12 asked whether the attention's core written per window offset, as a torch.autograd.Function
that saves only small tensors and recomputes in backward, beats the tiled SDPA path in speed and
memory on CPU. This script keeps the experiment reproducible; nas.net.acmix does not use it, because it
measured slower and heavier at every shape tried (docs/benchmarks.md).

The Function (`PerOffsetAttention`), from the math: for query i and window offset o,
l_io = scale·q_i·k_{i+o}, p = softmax_o(l), out_i = Σ_o p_io v_{i+o}, with keys and values reflection
padded once by index (`mirror_index`) to (H+2p)×(W+2p) in a d-first layout (B, N, d, H, W), so every
offset is a shifted strided slice. Backward recomputes the padded operands and either takes the saved
softmax (`--stats p`) or recomputes it from the saved logsumexp (`--stats lse`); with Δ_i = dout_i·out_i,
dl_io = p_io (dout_i·v_{i+o} − Δ_i), dq_i = scale Σ_o dl_io k_{i+o}, and dk, dv are accumulated at the
padded positions and folded back through the mirror with index_add_. It takes the projection's qkv
tokens and the positional encoding directly and returns one qkv-shaped gradient.

Times are fwd+bwd medians taken round-robin (benchmarks/acmix_op.py's `round_robin_ms`); memory is
nas.net.cost.peak_memory_mb of one fwd+bwd; both as ratios to a 3×3 conv measured in the same run.
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from acmix_op import round_robin_ms
from nas.net.acmix import ACmix, local_attention, mirror_index, position_grid
from nas.net.cost import peak_memory_mb

SHAPES = [(8, 64, 32, 32), (8, 128, 16, 16)]


def _offsets(kernel: int, stride: int, dilation: int, h_out: int, w_out: int) -> list[tuple[slice, slice]]:
    """The k² window offsets as (row, column) slices of the padded maps, one query per output pixel."""
    sh, sw = stride * (h_out - 1) + 1, stride * (w_out - 1) + 1
    return [
        (slice(a * dilation, a * dilation + sh, stride), slice(c * dilation, c * dilation + sw, stride))
        for a in range(kernel)
        for c in range(kernel)
    ]


def _operands(qkv: Tensor, pe: Tensor, h: int, w: int, kernel: int, stride: int, dilation: int, scale: float):
    """Scaled queries (B, N, d, h_out, w_out) and mirror-padded keys − pe and values (B, N, d, H+2p, W+2p)."""
    b, d, n = qkv.shape[0], qkv.shape[2], qkv.shape[4]
    pad = dilation * (kernel - 1) // 2
    rows = mirror_index(torch.arange(-pad, h + pad, device=qkv.device), h)
    cols = mirror_index(torch.arange(-pad, w + pad, device=qkv.device), w)
    maps = qkv.view(b, h, w, d, 3, n).permute(0, 4, 5, 3, 1, 2)  # (B, q/k/v, N, d, H, W)
    qs = maps[:, 0, :, :, ::stride, ::stride] * scale
    kv = maps[:, 1:].index_select(4, rows).index_select(5, cols)
    kv[:, 0].sub_(pe[0].index_select(1, rows).index_select(2, cols))
    return qs, kv[:, 0], kv[:, 1], rows, cols


class PerOffsetAttention(torch.autograd.Function):
    """Local attention from qkv tokens (B, H·W, d, 3, N) and pe (1, d, H, W); returns (B, h_out, w_out, N, d)."""

    @staticmethod
    def forward(
        ctx,
        qkv: Tensor,
        pe: Tensor,
        h: int,
        w: int,
        kernel: int,
        stride: int,
        dilation: int,
        scale: float,
        save_p: bool,
    ) -> Tensor:
        b, n = qkv.shape[0], qkv.shape[4]
        h_out, w_out = -(-h // stride), -(-w // stride)
        qs, kp, vp, _, _ = _operands(qkv, pe, h, w, kernel, stride, dilation, scale)
        offsets = _offsets(kernel, stride, dilation, h_out, w_out)
        logits = qs.new_empty(len(offsets), b, n, h_out, w_out)
        scratch = torch.empty_like(qs)
        for o, (r, c) in enumerate(offsets):
            torch.sum(torch.mul(qs, kp[..., r, c], out=scratch), 2, out=logits[o])
        p = torch.softmax(logits, 0)
        out = torch.mul(p[0].unsqueeze(2), vp[..., offsets[0][0], offsets[0][1]])
        for o in range(1, len(offsets)):
            out.addcmul_(p[o].unsqueeze(2), vp[..., offsets[o][0], offsets[o][1]])
        ctx.save_for_backward(qkv, pe, p if save_p else logits.logsumexp(0), out)
        ctx.config = (h, w, kernel, stride, dilation, scale, save_p)
        return out.permute(0, 3, 4, 1, 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        qkv, pe, stats, out = ctx.saved_tensors
        h, w, kernel, stride, dilation, scale, save_p = ctx.config
        b, d, n = qkv.shape[0], qkv.shape[2], qkv.shape[4]
        qs, kp, vp, rows, cols = _operands(qkv, pe, h, w, kernel, stride, dilation, scale)
        dout = grad.permute(0, 3, 4, 1, 2).contiguous()
        scratch = torch.mul(dout, out)
        delta = scratch.sum(2)
        dmaps = qkv.new_zeros(b, 3, n, d, h, w)
        dq = dmaps[:, 0, :, :, ::stride, ::stride]
        dkv = qkv.new_zeros(b, 2, n, d, kp.shape[3], kp.shape[4])
        for o, (r, c) in enumerate(_offsets(kernel, stride, dilation, out.shape[3], out.shape[4])):
            ks, vs = kp[..., r, c], vp[..., r, c]
            p = stats[o] if save_p else torch.sum(torch.mul(qs, ks, out=scratch), 2).sub_(stats).exp_()
            dkv[:, 1, ..., r, c].addcmul_(p.unsqueeze(2), dout)
            dl = torch.sum(torch.mul(dout, vs, out=scratch), 2).sub_(delta).mul_(p).unsqueeze(2)
            dq.addcmul_(dl, ks, value=scale)
            dkv[:, 0, ..., r, c].addcmul_(dl, qs)
        folded = dkv.new_zeros(b, 2, n, d, h, dkv.shape[5]).index_add_(4, rows, dkv)
        dmaps[:, 1:].index_add_(5, cols, folded)
        dpe = -dmaps[:, 1].sum((0, 1)).unsqueeze(0) if ctx.needs_input_grad[1] else None
        return dmaps.permute(0, 4, 5, 3, 1, 2).reshape(qkv.shape), dpe, None, None, None, None, None, None, None


class PerOffsetACmix(ACmix):
    """ACmix with the per-offset Function as its attention."""

    save_p = True

    def _attention_tokens(self, qkv: Tensor, h: int, w: int) -> Tensor:
        pe = self.conv_p(position_grid(h, w, device=qkv.device, dtype=qkv.dtype))
        return PerOffsetAttention.apply(
            qkv, pe, h, w, self.kernel_att, self.stride, self.dilation, float(self.head_dim) ** -0.5, self.save_p
        )


def check_exact() -> None:
    """gradcheck in float64 and agreement with local_attention, incl. a map smaller than the window."""
    for kernel, stride, dilation, h, w in [(3, 1, 1, 6, 5), (5, 2, 1, 7, 4), (7, 1, 2, 3, 4), (7, 2, 1, 2, 3)]:
        gen = torch.Generator().manual_seed(0)
        qkv = torch.randn(2, h * w, 3, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
        pe = torch.randn(1, 3, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
        for save_p in (True, False):

            def fn(qkv, pe, save_p=save_p):
                return PerOffsetAttention.apply(qkv, pe, h, w, kernel, stride, dilation, 0.5, save_p)

            assert torch.autograd.gradcheck(fn, (qkv, pe))
        q, k, v = (qkv[:, :, :, i].transpose(2, 3) for i in range(3))
        tiled = local_attention(
            q, k - pe.flatten(2).transpose(1, 2).unsqueeze(2), v, [h, w], kernel, stride, dilation, None, 0.5
        )
        torch.testing.assert_close(fn(qkv, pe), tiled)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--stats", choices=["p", "lse"], default="p", help="save the softmax, or its logsumexp")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    check_exact()
    PerOffsetACmix.save_p = args.stats == "p"
    print(
        f"torch {torch.__version__}, {args.threads} CPU threads, float32, heads=4, fwd+bwd, "
        f"per-offset saving {args.stats}; ratios to a 3x3 conv in the same run\n"
    )
    print(f"{'shape':25} {'tiled ×conv':>12} {'per-offset ×conv':>17} {'tiled mem':>10} {'per-offset mem':>15}")
    cpu = torch.device("cpu")
    for (b, c, h, w), kernel, stride in [(s, k, st) for s in SHAPES for k in (3, 5, 7) for st in (1, 2)]:
        tiled = ACmix(c, c, kernel_att=kernel, stride=stride)
        per_offset = PerOffsetACmix(c, c, kernel_att=kernel, stride=stride)
        per_offset.load_state_dict(tiled.state_dict())
        conv = torch.nn.Conv2d(c, c, 3, stride, 1, bias=False)
        x = torch.randn(b, c, h, w, requires_grad=True, generator=torch.Generator().manual_seed(0))
        grad = torch.randn(b, c, -(-h // stride), -(-w // stride))

        def step(module: torch.nn.Module) -> None:
            module(x).backward(grad)
            module.zero_grad(set_to_none=True)
            x.grad = None

        steps = {
            name: (lambda m=m: step(m)) for name, m in (("tiled", tiled), ("per-offset", per_offset), ("conv", conv))
        }
        ms = round_robin_ms(steps, cpu, 1, {name: args.repeats for name in steps})
        mem = {name: peak_memory_mb(step, cpu) for name, step in steps.items()}
        print(
            f"{f'B={b} C={c} {h}x{w} k{kernel} s{stride}':25} {ms['tiled'] / ms['conv']:12.1f} "
            f"{ms['per-offset'] / ms['conv']:17.1f} {mem['tiled'] / mem['conv']:10.1f} "
            f"{mem['per-offset'] / mem['conv']:15.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
