"""ACmix in the unfold formulation: the plain transcription of the paper's reference module as docs/network.md describes it that tests and
benchmarks compare `nas.net.acmix.ACmix` against.

Written from the equations, not for speed: it materialises the k_att² window copies of keys,
values and positional encodings (≈ k_att² times the activation memory), so use it on small inputs.
It covers what ACmix covers: mirror-periodic reflection (`nas.net.acmix.mirror_index`) for windows wider
than the map, dilation, and ceil(H/stride) × ceil(W/stride) outputs.

`reference_parameter_shapes` is the reference's parameter table (docs/network.md): the names and shapes of the paper's
module, so that its state_dicts load into ACmix with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nas.net.acmix import ACmix, mirror_index, position_grid

__all__ = ["UnfoldACmix", "reference_parameter_shapes", "unfold_forward"]


def reference_parameter_shapes(
    in_planes: int, out_planes: int, kernel_att: int = 7, head: int = 4, kernel_conv: int = 3
) -> dict[str, tuple[int, ...]]:
    """The paper module's state_dict layout (docs/network.md, the reference's parameters): name -> shape.

    kernel_att does not size any parameter; it is an argument so calls read like the module's."""
    c, d, k2 = out_planes, out_planes // head, kernel_conv * kernel_conv
    shapes: dict[str, tuple[int, ...]] = {"rate1": (1,), "rate2": (1,)}
    for name in ("conv1", "conv2", "conv3"):  # q, k, v: 1×1 convs with bias
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c, in_planes, 1, 1), (c,)
    shapes["conv_p.weight"], shapes["conv_p.bias"] = (d, 2, 1, 1), (d,)
    shapes["fc.weight"] = (k2, 3 * head, 1, 1)  # no bias
    shapes["dep_conv.weight"] = (c, k2, kernel_conv, kernel_conv)  # groups = d, no bias
    return shapes


def unfold_forward(m: ACmix, x: Tensor) -> Tensor:
    """ACmix's output for module `m`'s parameters, step by step as in the reference's forward pass (docs/network.md)."""
    n, d, s, ka, kc, dil = m.head, m.head_dim, m.stride, m.kernel_att, m.kernel_conv, m.dilation
    # 1-2. Projections; heads as (B·N, d, H, W), channel n·d + g.
    q, k, v = (F.conv2d(x, conv.weight, conv.bias) for conv in (m.conv1, m.conv2, m.conv3))
    b, c, h, w = q.shape
    h_out, w_out = -(-h // s), -(-w // s)
    # 3. Positional encoding of the coordinate grid, shared by the heads.
    pe = F.conv2d(position_grid(h, w, device=x.device, dtype=q.dtype), m.conv_p.weight, m.conv_p.bias)

    # 5. Reflection padding by pad = dilation·(k_att − 1) // 2 (mirrored again where the window is
    # wider than the map), then every query's k_att × k_att window: (B', d, k_att², h_out, w_out).
    pad = dil * (ka - 1) // 2
    rows = mirror_index(torch.arange(-pad, h + pad, device=x.device), h)
    cols = mirror_index(torch.arange(-pad, w + pad, device=x.device), w)

    def windows(t: Tensor) -> Tensor:
        padded = t[:, :, rows][:, :, :, cols]
        return F.unfold(padded, ka, dilation=dil, stride=s).view(t.shape[0], d, ka * ka, h_out, w_out)

    # 4. Queries scaled by d^-1/2, at every s-th row and column; pe likewise for the query side.
    q_att = q.reshape(b * n, d, h, w)[:, :, ::s, ::s] * float(d) ** -0.5
    pe_q = pe[:, :, ::s, ::s]
    # 6. a_ij = Σ_c q_i,c · (k_j,c + pe_i,c − pe_j,c); softmax over the window; weighted sum of v.
    logits = (q_att.unsqueeze(2) * (windows(k.reshape(b * n, d, h, w)) + pe_q.unsqueeze(2) - windows(pe))).sum(1)
    weights = torch.softmax(logits, dim=1)  # (B·N, k_att², h_out, w_out)
    out_att = (weights.unsqueeze(1) * windows(v.reshape(b * n, d, h, w))).sum(2).view(b, c, h_out, w_out)

    # 7. Conv branch from the unscaled q, k, v: (B, 3N, d, H·W) -> fc over 3N -> (B, k_c², d, H·W)
    # -> (B, d·k_c², H, W) with channel g·k_c² + m -> dep_conv (groups = d).
    stacked = torch.cat([t.reshape(b, n, d, h * w) for t in (q, k, v)], 1)
    mixed = torch.einsum("mj,bjgl->bgml", m.fc.weight.flatten(1), stacked).reshape(b, d * kc * kc, h, w)
    out_conv = F.conv2d(mixed, m.dep_conv.weight, None, s, dil * (kc // 2), dil, d)
    # 8. Mix.
    return m.rate1 * out_att + m.rate2 * out_conv


class UnfoldACmix(ACmix):
    """ACmix's parameters with the unfold formulation as forward: the benchmark's baseline."""

    def forward(self, x: Tensor) -> Tensor:
        return unfold_forward(self, x)
