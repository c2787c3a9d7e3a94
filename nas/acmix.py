"""ACmix: one set of 1x1 projections feeding a convolution branch and a local-attention branch.

Pan et al., "On the Integration of Self-Attention and Convolution" (CVPR 2022). This module keeps
the reference's parameter names, shapes and results (a reference state_dict loads with
``strict=True`` and gives the same output), and fixes where the reference breaks:

* Memory. The reference unfolds keys, values and positional encodings into k_att² copies. Here the
  attention runs on square tiles of queries with their halo of keys (blocked local attention):
  one gather of the keys/values a tile needs (≈ (T + k_att − 1)² / T² copies, ~3x at T=8, k_att=7),
  then ``scaled_dot_product_attention`` with a fixed window mask, which runs a fused kernel where
  one is available and never stores the k_att² attention copies.
* Borders. Keys and values are reflection padded as in the reference. When a window is wider than
  the map (k_att=7 on a 2×2 map, say) reflection is repeated: index i maps to the mirror-periodic
  position (period 2(n−1); an axis of length 1 maps every offset to its single pixel). Where the
  reference runs this is exactly its ReflectionPad2d, so results agree; elsewhere it keeps the same
  rule instead of crashing.
* Sizes. Any H, W at any stride: the output is ceil(H/stride) × ceil(W/stride), like a padded conv
  (the reference crashes on odd sizes at stride 2).
* Settings. Any odd k_att and k_conv, dilation (of the attention window and of the conv branch),
  float16/bfloat16 modules and autocast, the coordinate grid on the input's device and dtype,
  channels_last inputs. Impossible settings fail at construction.

The positional term: the reference's logit is q_i · (k_j + pe_i − pe_j). The q_i · pe_i part is the
same for every key of query i and cancels in the softmax, so keys are used as k − pe.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ACmix", "default_tile", "local_attention", "mirror_index", "position_grid"]

def default_tile(kernel: int, stride: int) -> int:
    """Query tile edge T for the blocked attention: ~k+1 queries at stride 1, half at stride 2.

    T balances the halo gather ((s(T-1)+k)² keys per T² queries) against the masked-out logits
    (each query scores (s(T-1)+k)² keys instead of k²). Measured fwd+bwd on 1 CPU thread, k=3
    prefers T=4 and k=7 T=4-8 at stride 1; k=3 at stride 2 prefers T=2 (34 -> 21 ms at T=8 -> 2).
    """
    return max(2, -(-(kernel + 1) // stride))


def mirror_index(index: Tensor, n: int) -> Tensor:
    """Map integer positions onto [0, n) by repeated reflection (no edge repeat), as ReflectionPad does.

    For -(n-1) <= i <= 2n-2 this is exactly reflection padding; beyond it reflection is applied again
    (mirror-periodic with period 2(n-1)). With n == 1 every position maps to 0.
    """
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    m = torch.remainder(index, period)
    return torch.where(m >= n, period - m, m)


def position_grid(h: int, w: int, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> Tensor:
    """The reference's 2-channel coordinate grid, shape (1, 2, h, w): channel 0 along the width."""
    loc_w = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype).view(1, w).expand(h, w)
    loc_h = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype).view(h, 1).expand(h, w)
    return torch.stack([loc_w, loc_h], 0).unsqueeze(0)


def _tiling(h: int, w: int, kernel: int, stride: int, dilation: int, tile: int, device: torch.device):
    """Gather indices and the window mask of the blocked local attention for one input geometry."""
    # Cached tensors must be ordinary ones even when the first call runs under inference_mode:
    # inference tensors cannot be saved for a later backward.
    with torch.inference_mode(False):
        return _tiling_cached(h, w, kernel, stride, dilation, tile, device)


@lru_cache(maxsize=256)
def _tiling_cached(h: int, w: int, kernel: int, stride: int, dilation: int, tile: int, device: torch.device):
    pad = dilation * (kernel - 1) // 2
    h_out, w_out = -(-h // stride), -(-w // stride)
    th, tw = min(tile, h_out), min(tile, w_out)
    nth, ntw = -(-h_out // th), -(-w_out // tw)
    # Key rows a tile of th output rows needs: the window of its first query to that of its last.
    lh, lw = stride * (th - 1) + dilation * (kernel - 1) + 1, stride * (tw - 1) + dilation * (kernel - 1) + 1

    def axis(n_in, n_out, t, nt, length):
        tiles = torch.arange(nt, device=device).view(nt, 1)
        q = (tiles * t + torch.arange(t, device=device)).clamp(max=n_out - 1)  # extra queries: dropped
        kv = mirror_index(tiles * (stride * t) + torch.arange(length, device=device) - pad, n_in)
        # A key position a belongs to query b's window when a - stride*b is a multiple of dilation
        # in [0, dilation*(kernel-1)].
        off = torch.arange(length, device=device).view(1, length) - stride * torch.arange(t, device=device).view(t, 1)
        mask = (off >= 0) & (off <= dilation * (kernel - 1)) & (off % dilation == 0)
        return q, kv, mask

    qh, kh, mh = axis(h, h_out, th, nth, lh)
    qw, kw, mw = axis(w, w_out, tw, ntw, lw)
    q_index = (qh.view(nth, 1, th, 1) * w_out + qw.view(1, ntw, 1, tw)).flatten()
    kv_index = (kh.view(nth, 1, lh, 1) * w + kw.view(1, ntw, 1, lw)).flatten()
    mask = (mh.view(th, 1, lh, 1) & mw.view(1, tw, 1, lw)).reshape(th * tw, lh * lw)
    return q_index, kv_index, mask, (h_out, w_out, th, tw, nth, ntw)


def local_attention(q: Tensor, k: Tensor, v: Tensor, size: tuple[int, int], heads: int, kernel: int,
                    stride: int = 1, dilation: int = 1, tile: int | None = None) -> Tensor:
    """Softmax attention of every query over its kernel×kernel window of keys, reflection padded.

    Args:
        q: queries as tokens (B, h_out·w_out, C) at the strided positions, already scaled, where
            h_out, w_out = ceil(H / stride), ceil(W / stride); channel n·d + c is head n's channel c.
        k, v: keys and values as tokens (B, H·W, C) of an H×W map; ``size`` = (H, W).
        heads: N, with C = N·d.
        kernel, stride, dilation: the window; query (i, j) sees the keys at
            (stride·i + dilation·a − pad, stride·j + dilation·b − pad), a, b < kernel, mirrored into the map.
        tile: query tile edge (a speed/memory knob; results do not depend on it); default
            `default_tile(kernel, stride)`.
    Returns:
        (B, h_out, w_out, C).

    Same result as unfolding reflection-padded keys and values into kernel² copies, without them:
    each tile of queries gathers its halo of keys once and runs ``scaled_dot_product_attention`` with
    a fixed mask that keeps each query's own window.
    """
    b, _, c = k.shape
    d = c // heads
    tile = tile or default_tile(kernel, stride)
    q_index, kv_index, mask, (h_out, w_out, th, tw, nth, ntw) = _tiling(
        size[0], size[1], kernel, stride, dilation, tile, k.device)
    nt = nth * ntw

    def tiles(t: Tensor, index: Tensor) -> Tensor:  # (B, L, C) -> (B·nt, N, L_tile, d), a strided view
        return t.index_select(1, index).view(b * nt, -1, heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(tiles(q, q_index), tiles(k, kv_index), tiles(v, kv_index),
                                         attn_mask=mask, scale=1.0)
    # (B·nt, N, th·tw, d) -> (B, nth, th, ntw, tw, C) -> (B, nth·th, ntw·tw, C), cropped to the output.
    out = out.transpose(1, 2).reshape(b, nth, ntw, th, tw, c).transpose(2, 3).reshape(b, nth * th, ntw * tw, c)
    return out[:, :h_out, :w_out]


class ACmix(nn.Module):
    """ACmix (Pan et al., 2022): shared 1×1 q/k/v projections, a conv branch and a local-attention branch.

    ``y = rate1 · attention(q, k, v) + rate2 · conv(q, k, v)``, with rate1 = α, rate2 = β.

    Args:
        in_planes: input channels.
        out_planes: output channels C (default: in_planes); heads × head_dim.
        kernel_att: attention window k_att (odd).
        head: number of attention heads N; must divide out_planes.
        kernel_conv: conv branch kernel k_c (odd).
        stride: output is ceil(H/stride) × ceil(W/stride).
        dilation: spacing of the attention window and of the conv branch's kernel.
        alpha, beta: initial values of rate1 (attention) and rate2 (convolution).
        learnable: when False, rate1/rate2 stay parameters (same state_dict) with requires_grad off.
        tile: query tile edge of the blocked attention (speed only); default: `default_tile`.

    Example:
        >>> m = ACmix(64, 64, kernel_att=7, head=4, kernel_conv=3, stride=2)
        >>> m(torch.randn(2, 64, 15, 15)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, in_planes: int, out_planes: int | None = None, kernel_att: int = 7, head: int = 4,
                 kernel_conv: int = 3, stride: int = 1, dilation: int = 1, *, alpha: float = 0.5,
                 beta: float = 0.5, learnable: bool = True, tile: int | None = None,
                 feat_size: tuple[int, int] | None = None, device=None, dtype=None):
        super().__init__()
        out_planes = in_planes if out_planes is None else out_planes
        _check_positive_int("in_planes", in_planes)
        _check_positive_int("out_planes", out_planes)
        _check_positive_int("head", head)
        for name, value in (("kernel_att", kernel_att), ("kernel_conv", kernel_conv)):
            _check_positive_int(name, value)
            if value % 2 == 0:
                raise ValueError(f"ACmix: {name} must be odd (a window centred on its pixel), got {value}")
        _check_positive_int("stride", stride)
        _check_positive_int("dilation", dilation)
        if tile is not None:
            _check_positive_int("tile", tile)
        if out_planes % head:
            raise ValueError(f"ACmix: head={head} must divide out_planes={out_planes}")
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not math.isfinite(float(value)):
                raise ValueError(f"ACmix: {name} must be a finite number, got {value}")
        # feat_size is accepted (timm's SelfAttnBlock may pass it) and not needed: any size works.
        dd = {"device": device, "dtype": dtype}

        self.in_planes, self.out_planes = in_planes, out_planes
        self.head, self.head_dim = head, out_planes // head
        self.kernel_att, self.kernel_conv = kernel_att, kernel_conv
        self.stride, self.dilation = stride, dilation
        self.alpha, self.beta, self.learnable = float(alpha), float(beta), bool(learnable)
        self.tile = tile

        self.rate1 = nn.Parameter(torch.empty(1, **dd), requires_grad=self.learnable)
        self.rate2 = nn.Parameter(torch.empty(1, **dd), requires_grad=self.learnable)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=1, **dd)
        self.conv2 = nn.Conv2d(in_planes, out_planes, kernel_size=1, **dd)
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1, **dd)
        self.conv_p = nn.Conv2d(2, self.head_dim, kernel_size=1, **dd)
        self.fc = nn.Conv2d(3 * head, kernel_conv * kernel_conv, kernel_size=1, bias=False, **dd)
        self.dep_conv = nn.Conv2d(
            kernel_conv * kernel_conv * self.head_dim, out_planes, kernel_size=kernel_conv, stride=stride,
            padding=dilation * (kernel_conv // 2), dilation=dilation, groups=self.head_dim, bias=False, **dd)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """rate1/rate2 to α/β; dep_conv to the shift kernels (so the branch starts as a k_c×k_c conv)."""
        with torch.no_grad():
            self.rate1.fill_(self.alpha)
            self.rate2.fill_(self.beta)
            self.dep_conv.weight.copy_(shift_kernels(self.kernel_conv, self.out_planes))

    def extra_repr(self) -> str:
        return (f"{self.in_planes}, {self.out_planes}, kernel_att={self.kernel_att}, head={self.head}, "
                f"kernel_conv={self.kernel_conv}, stride={self.stride}, dilation={self.dilation}, "
                f"learnable={self.learnable}")

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        b, c, h, w = q.shape
        pe = self.conv_p(position_grid(h, w, device=x.device, dtype=q.dtype))  # (1, d, H, W)
        out_att = self.attention(q, k, v, pe)
        out_conv = self.conv_branch(q, k, v)
        # Both branches come out channels-last. The rates follow the branches' dtype, so that under
        # autocast the output stays in the autocast dtype instead of promoting to float32.
        y = self.rate1.to(out_att.dtype) * out_att + self.rate2.to(out_conv.dtype) * out_conv
        return y.contiguous(memory_format=_memory_format(x))

    def attention(self, q: Tensor, k: Tensor, v: Tensor, pe: Tensor) -> Tensor:
        """The local-attention branch from the 1×1 projections (B, C, H, W) and pe (1, d, H, W)."""
        b, c, h, w = q.shape
        s = self.stride
        q_s = _tokens(q[:, :, ::s, ::s]) * (float(self.head_dim) ** -0.5)
        k = _tokens(k) - _tokens(pe).repeat(1, 1, self.head)  # pe is shared by the heads
        out = local_attention(q_s, k, _tokens(v), (h, w), self.head, self.kernel_att, s, self.dilation, self.tile)
        return out.permute(0, 3, 1, 2)  # (B, C, h_out, w_out), channels-last memory

    def conv_branch(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """fc mixes the 3N head maps into k_c² maps per head channel; dep_conv shifts and sums them."""
        b, c, h, w = q.shape
        n, d = self.head, self.head_dim
        qkv = torch.cat([t.reshape(b, n, d, h * w) for t in (q, k, v)], 1)  # (B, 3N, d, HW)
        # fc is a 1×1 conv over the 3N axis. As a matmul it is several times faster than oneDNN's conv
        # for these odd channel counts, and it writes channels-last maps (channel c·k_c² + m) directly:
        # the grouped dep_conv runs ~3x faster forward+backward in that layout.
        f_conv = torch.einsum("mn,bncl->blcm", self.fc.weight.flatten(1), qkv)  # (B, HW, d, k_c²)
        return self.dep_conv(f_conv.reshape(b, h, w, -1).permute(0, 3, 1, 2))


def shift_kernels(kernel_conv: int, out_planes: int) -> Tensor:
    """dep_conv's shift initialisation: input m of every group gets a one-hot at (m // k, m % k)."""
    k2 = kernel_conv * kernel_conv
    kernel = torch.zeros(k2, kernel_conv, kernel_conv)
    kernel.view(k2, k2)[torch.arange(k2), torch.arange(k2)] = 1.0
    return kernel.unsqueeze(0).repeat(out_planes, 1, 1, 1)


def _tokens(t: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, H·W, C) tokens (a view for channels-last tensors)."""
    b, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).reshape(b, h * w, c)


def _memory_format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ACmix: {name} must be a positive integer, got {value!r}")
