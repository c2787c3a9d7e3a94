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

import functools
import math
from typing import List, Optional, Tuple

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

__all__ = [
    "ACmix",
    "ATTENTION_IMPLS",
    "default_tile",
    "local_attention",
    "local_attention_flex",
    "mirror_index",
    "position_grid",
    "set_attention_impl",
]

ATTENTION_IMPLS = ("auto", "tiles", "flex")


def default_tile(kernel: int, stride: int) -> int:
    """Largest query tile edge T for the blocked attention: 8 for k_att >= 5 and 4 for k_att <= 3 at
    stride 1, halved at stride 2 (at least 2). `local_attention` then evens the tiles out over the map.

    T balances the halo gather ((s(T-1)+k)² keys per T² queries) against the masked-out logits
    (each query scores (s(T-1)+k)² keys instead of k²). Measured fwd+bwd on 1 CPU thread
    (benchmarks/acmix_op.py): powers of two beat edges in between (T² queries fill SDPA's blocks),
    e.g. k_att 5 at 32², stride 1: 3.4x the conv's time at T=8 against 4.1x at T=6, with 8.3x against
    11.3x its memory; k_att 3 at stride 2 prefers T=2 (34 -> 21 ms at T=8 -> 2).
    """
    return max(2, (4 if kernel <= 3 else 8) // stride)


def _even_tile(edge: int, n: int) -> int:
    """The tile edge that covers n positions with as many tiles as edge would, overhanging least:
    28 positions at edge 8 are 4 tiles of 7 instead of 4 of 8 (the overhang is computed, then cropped)."""
    tiles = (n + edge - 1) // edge
    return (n + tiles - 1) // tiles


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


def position_grid(h: int, w: int, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> Tensor:
    """The reference's 2-channel coordinate grid, shape (1, 2, h, w): channel 0 along the width.

    (Typed with Optional[...] rather than unions so TorchScript compiles it; a device string such as
    "cpu" still works from Python.)"""
    loc_w = torch.linspace(-1.0, 1.0, w, dtype=dtype, device=device).view(1, w).expand(h, w)
    loc_h = torch.linspace(-1.0, 1.0, h, dtype=dtype, device=device).view(h, 1).expand(h, w)
    return torch.stack([loc_w, loc_h], 0).unsqueeze(0)


def _axis(
    n_in: int, n_out: int, t: int, nt: int, length: int, kernel: int, stride: int, dilation: int, device: torch.device
) -> Tuple[Tensor, Tensor, Tensor]:
    """One axis of the tiling: query positions, key positions (mirrored) and the window mask."""
    pad = dilation * (kernel - 1) // 2
    tiles = torch.arange(nt, device=device).view(nt, 1)
    # Queries past the map's end (the last tile's overhang) repeat the last one; their outputs are cropped.
    q = (tiles * t + torch.arange(t, device=device)).clamp(max=n_out - 1) * stride
    kv = mirror_index(tiles * (stride * t) + torch.arange(length, device=device) - pad, n_in)
    # Key a of the tile belongs to query b's window when a - stride*b is a multiple of dilation in
    # [0, dilation*(kernel-1)].
    off = torch.arange(length, device=device).view(1, length) - stride * torch.arange(t, device=device).view(t, 1)
    mask = (off >= 0) & (off <= dilation * (kernel - 1)) & (torch.remainder(off, dilation) == 0)
    return q, kv, mask


@torch.fx.wrap
def local_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    size: List[int],
    kernel: int,
    stride: int = 1,
    dilation: int = 1,
    tile: Optional[int] = None,
    scale: float = 1.0,
) -> Tensor:
    """Softmax attention of every query over its kernel×kernel window of keys, reflection padded.

    Args:
        q, k, v: tokens (B, H·W, N, d) of an H×W map (``size`` = [H, W]), any strides; N heads.
            Queries are taken at the strided positions (stride·i, stride·j).
        kernel, stride, dilation: the window; query (i, j) sees the keys at
            (stride·i + dilation·a − pad, stride·j + dilation·b − pad), a, b < kernel, mirrored into the map.
        tile: largest query tile edge, evened out over the map (a speed/memory knob; results do not
            depend on it); default `default_tile(kernel, stride)`.
        scale: multiplies the logits q·k.
    Returns:
        (B, h_out, w_out, N, d) with h_out, w_out = ceil(H / stride), ceil(W / stride).

    Same result as unfolding reflection-padded keys and values into kernel² copies, without them:
    each tile of queries gathers its halo of keys once and runs ``scaled_dot_product_attention`` with
    a fixed mask that keeps each query's own window.

    The tiling depends on the map's size, so this is a leaf for torch.fx (``torch.fx.wrap``): a traced
    graph calls it as one function instead of freezing one size's Python arithmetic. It is written in
    TorchScript's subset (no caches, closures or unions) so scripted and fx+scripted models run it.
    """
    b, heads, d = k.shape[0], k.shape[2], k.shape[3]
    h, w = size[0], size[1]
    edge = default_tile(kernel, stride) if tile is None else tile
    h_out, w_out = (h + stride - 1) // stride, (w + stride - 1) // stride
    th, tw = _even_tile(edge, h_out), _even_tile(edge, w_out)
    nth, ntw = (h_out + th - 1) // th, (w_out + tw - 1) // tw
    # Key rows a tile of th output rows needs: the window of its first query to that of its last.
    lh, lw = stride * (th - 1) + dilation * (kernel - 1) + 1, stride * (tw - 1) + dilation * (kernel - 1) + 1
    qh, kh, mh = _axis(h, h_out, th, nth, lh, kernel, stride, dilation, k.device)
    qw, kw, mw = _axis(w, w_out, tw, ntw, lw, kernel, stride, dilation, k.device)
    q_index = (qh.view(nth, 1, th, 1) * w + qw.view(1, ntw, 1, tw)).flatten()
    kv_index = (kh.view(nth, 1, lh, 1) * w + kw.view(1, ntw, 1, lw)).flatten()
    mask = (mh.view(th, 1, lh, 1) & mw.view(1, tw, 1, lw)).reshape(th * tw, lh * lw)
    nt = nth * ntw
    # index_select writes contiguous (B, L, N, d) tiles whatever the input strides: the one gather.
    qt = q.index_select(1, q_index).view(b * nt, th * tw, heads, d).transpose(1, 2)
    kt = k.index_select(1, kv_index).view(b * nt, lh * lw, heads, d).transpose(1, 2)
    vt = v.index_select(1, kv_index).view(b * nt, lh * lw, heads, d).transpose(1, 2)
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale)
    # (B·nt, N, th·tw, d) -> (B, nth, ntw, th, tw, N, d) -> (B, nth·th, ntw·tw, N, d), cropped to the output.
    out = out.transpose(1, 2).reshape(b, nth, ntw, th, tw, heads, d).transpose(2, 3)
    return out.reshape(b, nth * th, ntw * tw, heads, d)[:, :h_out, :w_out]


@torch.fx.wrap
def local_attention_flex(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    size: List[int],
    kernel: int,
    stride: int = 1,
    dilation: int = 1,
    scale: float = 1.0,
) -> Tensor:
    """`local_attention` through FlexAttention: the same arguments, result and border rule.

    Keys and values are gathered once into the mirror-padded map (~1.2 copies at 56², k_att 7, against
    ~3 for the tiles' halos) and every query attends to it under a block-sparse window mask, so no logit
    outside a query's block row is computed and no tile is gathered. On CUDA the kernel is compiled
    (``torch.compile(flex_attention)``). Elsewhere FlexAttention's eager path runs, which materialises
    the scores and has no backward on a CPU: there this function is a check of the CUDA path.
    """
    if k.device.type != "cuda" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise RuntimeError(
            f"ACmix: attention_impl='flex' has no backward on {k.device.type} (FlexAttention "
            "runs forward only there); use 'tiles' or 'auto' to train"
        )
    b, heads, d = k.shape[0], k.shape[2], k.shape[3]
    h_out, w_out = (size[0] + stride - 1) // stride, (size[1] + stride - 1) // stride
    q_index, kv_index, block_mask = _flex_plan(size[0], size[1], kernel, stride, dilation, str(k.device))
    # index_select writes contiguous (B, L, N, d) tokens; (B, N, L, d) views of them keep the head
    # dimension contiguous, which is all FlexAttention asks of the layout.
    qs = q.index_select(1, q_index).transpose(1, 2)
    kp = k.index_select(1, kv_index).transpose(1, 2)
    vp = v.index_select(1, kv_index).transpose(1, 2)
    attend = _compiled_flex_attention() if k.device.type == "cuda" else flex_attention
    out = attend(qs, kp, vp, block_mask=block_mask, scale=scale)
    return out.transpose(1, 2).view(b, h_out, w_out, heads, d)


@functools.lru_cache(maxsize=64)
def _flex_plan(h: int, w: int, kernel: int, stride: int, dilation: int, device: str):
    """The query and padded-key token indices and FlexAttention's block mask for an h × w map, cached
    per shape (building the mask evaluates it over every (query, key) pair).

    The tiling's own axes (`_axis`) with a single tile spanning the map: query (i, j) keeps key (a, b)
    of the row-major padded map where both axes' window masks hold, the same rule as the tiles."""
    dev = torch.device(device)
    h_out, w_out = (h + stride - 1) // stride, (w + stride - 1) // stride
    span = dilation * (kernel - 1)
    lh, lw = stride * (h_out - 1) + span + 1, stride * (w_out - 1) + span + 1
    qh, kh, mh = _axis(h, h_out, h_out, 1, lh, kernel, stride, dilation, dev)
    qw, kw, mw = _axis(w, w_out, w_out, 1, lw, kernel, stride, dilation, dev)
    q_index = (qh.view(-1, 1) * w + qw.view(1, -1)).flatten()
    kv_index = (kh.view(-1, 1) * w + kw.view(1, -1)).flatten()

    def in_window(batch, head, query, key):
        return mh[query // w_out, key // lw] & mw[query % w_out, key % lw]

    return q_index, kv_index, create_block_mask(in_window, None, None, h_out * w_out, lh * lw, device=dev)


@functools.cache
def _compiled_flex_attention():
    # One static kernel per shape. With the default dynamic=None a second shape recompiles with dynamic
    # sizes, and that kernel failed to build (measured with the CPU inductor: a C++ compile error), where
    # static kernels for the same shapes build and match the tiles. Past dynamo's recompile limit (8
    # shapes) flex_attention runs eagerly, materialising the scores.
    return torch.compile(flex_attention, dynamic=False)


@torch.fx.wrap
def _like_input(y: Tensor, x: Tensor) -> Tensor:
    """y in x's memory format (channels-last in, channels-last out). A leaf for torch.fx: it branches
    on x's strides, which a traced graph must not freeze."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return y.contiguous(memory_format=torch.channels_last)
    return y.contiguous()


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
        tile: largest query tile edge of the blocked attention (speed and memory only); default: `default_tile`.
        attention_impl: how the local attention runs (same result): "tiles" (`local_attention`: query tiles
            with their key halos and SDPA), "flex" (`local_attention_flex`: FlexAttention with a
            block-sparse window mask; forward only on a CPU), or "auto" (by device: the tiles, until a
            GPU measurement says otherwise). Not in the state_dict; `set_attention_impl` sets a model's.

    Example:
        >>> m = ACmix(64, 64, kernel_att=7, head=4, kernel_conv=3, stride=2)
        >>> m(torch.randn(2, 64, 15, 15)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int | None = None,
        kernel_att: int = 7,
        head: int = 4,
        kernel_conv: int = 3,
        stride: int = 1,
        dilation: int = 1,
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        learnable: bool = True,
        tile: int | None = None,
        attention_impl: str = "auto",
        feat_size: tuple[int, int] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        out_planes = in_planes if out_planes is None else out_planes
        _check_acmix_args(
            in_planes, out_planes, kernel_att, head, kernel_conv, stride, dilation, alpha, beta, tile, attention_impl
        )
        # feat_size is accepted (timm's SelfAttnBlock may pass it) and not needed: any size works.
        dd = {"device": device, "dtype": dtype}

        self.in_planes, self.out_planes = in_planes, out_planes
        self.head, self.head_dim = head, out_planes // head
        self.kernel_att, self.kernel_conv = kernel_att, kernel_conv
        self.stride, self.dilation = stride, dilation
        self.alpha, self.beta, self.learnable = float(alpha), float(beta), bool(learnable)
        self.tile = tile
        self.attention_impl = attention_impl

        self.rate1 = nn.Parameter(torch.empty(1, **dd), requires_grad=self.learnable)
        self.rate2 = nn.Parameter(torch.empty(1, **dd), requires_grad=self.learnable)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=1, **dd)
        self.conv2 = nn.Conv2d(in_planes, out_planes, kernel_size=1, **dd)
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1, **dd)
        self.conv_p = nn.Conv2d(2, self.head_dim, kernel_size=1, **dd)
        self.fc = nn.Conv2d(3 * head, kernel_conv * kernel_conv, kernel_size=1, bias=False, **dd)
        self.dep_conv = nn.Conv2d(
            kernel_conv * kernel_conv * self.head_dim,
            out_planes,
            kernel_size=kernel_conv,
            stride=stride,
            padding=dilation * (kernel_conv // 2),
            dilation=dilation,
            groups=self.head_dim,
            bias=False,
            **dd,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """rate1/rate2 to α/β; dep_conv to the shift kernels (so the branch starts as a k_c×k_c conv)."""
        with torch.no_grad():
            self.rate1.fill_(self.alpha)
            self.rate2.fill_(self.beta)
            self.dep_conv.weight.copy_(shift_kernels(self.kernel_conv, self.out_planes))

    def extra_repr(self) -> str:
        return (
            f"{self.in_planes}, {self.out_planes}, kernel_att={self.kernel_att}, head={self.head}, "
            f"kernel_conv={self.kernel_conv}, stride={self.stride}, dilation={self.dilation}, "
            f"learnable={self.learnable}"
        )

    def forward(self, x: Tensor) -> Tensor:
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        c = self.out_planes
        qkv = self.projections(x)
        # rate2 is folded into the conv branch's weight: a (C, 3N, k_c, k_c) product, not a pass over the output.
        maps = qkv.view(b, h * w, 3 * c).transpose(1, 2).view(b, 3 * c, h, w)
        out_conv = self._conv_branch_maps(maps, self.rate2.to(qkv.dtype))
        # The attention runs second so that its backward runs first: its gradient of qkv is a fresh tensor
        # (unbind's stack), into which autograd adds the conv branch's in place, instead of allocating a sum.
        out_att = self._attention_tokens(qkv, h, w).flatten(3).permute(0, 3, 1, 2)
        # y = rate2·conv + rate1·attention in one op. The attention's channels are head-major (n·d + g)
        # and are added to the conv's channel o without reordering, as in the reference.
        y = torch.addcmul(out_conv, self.rate1.to(out_att.dtype), out_att)
        return _like_input(y, x)

    def projections(self, x: Tensor) -> Tensor:
        """conv1/conv2/conv3 of x (B, C_in, H, W) as tokens (B, H·W, d, 3, N): head n's channel g of q
        (index 0), k (1) or v (2) at [..., g, t, n].

        One batched matmul over channels: x as (B, H·W, C_in) tokens is a view for NCHW and channels-last
        inputs alike, and the result is channels-last, the layout both branches want. The channel order
        (g, q/k/v, n) makes the conv branch's groups contiguous channel blocks and q, k, v strided views.
        baddbmm rather than F.linear: a batched matmul takes NCHW tokens as transposed matrices, where
        linear copies them into rows (and keeps the copy for backward): measured on a CPU, 10% faster and
        3 fewer input-sized tensors at the peak of forward+backward."""
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        weight, bias = self.qkv_parameters()
        tokens = x.flatten(2).transpose(1, 2)
        qkv = torch.baddbmm(bias, tokens, weight.t().expand(b, -1, -1))
        return qkv.view(b, h * w, self.head_dim, 3, self.head)

    def qkv_parameters(self) -> Tuple[Tensor, Tensor]:
        """conv1/conv2/conv3 as one (3C, C_in) weight and (3C,) bias, rows ordered (g, q/k/v, n):
        row g·3N + t·N + n is head n's channel g of q (t = 0), k (t = 1) or v (t = 2).

        Built at every forward (a few KB), so the state_dict keeps the reference's three convs and
        gradients reach them through autograd."""
        n, d = self.head, self.head_dim
        b1, b2, b3 = self.conv1.bias, self.conv2.bias, self.conv3.bias
        assert b1 is not None and b2 is not None and b3 is not None  # typed Optional for TorchScript
        weight = torch.stack([self.conv1.weight, self.conv2.weight, self.conv3.weight]).view(3, n, d, self.in_planes)
        bias = torch.stack([b1, b2, b3]).view(3, n, d)
        return (
            weight.permute(2, 0, 1, 3).reshape(3 * self.out_planes, self.in_planes),
            bias.permute(2, 0, 1).reshape(3 * self.out_planes),
        )

    def conv_parameters(self) -> Tensor:
        """fc and dep_conv folded into one grouped k_c×k_c conv weight (C, 3N, k_c, k_c), groups = d.

        fc mixes the 3N head maps of head channel g into k_c² maps and dep_conv (groups = d) shifts and
        sums those into outputs o with o // N = g. Both are linear, so the branch is one grouped conv from
        the 3N maps of group g to output o, with weight Σ_m dep_conv[o, m] · fc[m, j]: no k_c²·d
        intermediate maps to write, keep for backward or differentiate, one op instead of two. The
        multiply-adds differ from fc + dep_conv's (3N·k_c² per output instead of 3·k_c²·N + k_c⁴ at
        stride 1); nas.net.cost counts the reference's operator either way."""
        fc = self.fc.weight.flatten(1)  # (k_c², 3N)
        dep = self.dep_conv.weight.flatten(2)  # (C, k_c², k_c·k_c)
        folded = torch.matmul(fc.t(), dep)  # (C, 3N, k_c·k_c)
        return folded.view(self.out_planes, 3 * self.head, self.kernel_conv, self.kernel_conv)

    def attention(self, q: Tensor, k: Tensor, v: Tensor, pe: Tensor) -> Tensor:
        """The local-attention branch from the 1×1 projections q, k, v (B, C, H, W) and pe (1, d, H, W).
        Returns (B, C, h_out, w_out), channel n·d + g (head-major), channels-last memory; without rate1."""
        h, w, d = q.shape[2], q.shape[3], self.head_dim
        out = self._local_attention(_heads(q, d), _heads(k, d), _heads(v, d), _heads(pe, d), h, w)
        return out.flatten(3).permute(0, 3, 1, 2)

    def conv_branch(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """The convolution branch from the 1×1 projections q, k, v (B, C, H, W); without rate2."""
        b, c, h, w = q.shape
        n, d = self.head, self.head_dim
        maps = torch.stack([q, k, v], 1).view(b, 3, n, d, h, w).permute(0, 3, 1, 2, 4, 5).reshape(b, 3 * c, h, w)
        return self._conv_branch_maps(maps, torch.ones(1, dtype=q.dtype, device=q.device))

    def _conv_branch_maps(self, maps: Tensor, rate: Tensor) -> Tensor:
        """rate · conv branch from (B, 3C, H, W) maps with channels ordered (g, q/k/v, n). Channels-last
        maps are the layout in which the grouped conv runs fastest on CPU (measured ~3x forward+backward)."""
        weight = self.conv_parameters().to(maps.dtype) * rate
        return F.conv2d(
            maps, weight, None, self.stride, self.dilation * (self.kernel_conv // 2), self.dilation, self.head_dim
        )

    def _attention_tokens(self, qkv: Tensor, h: int, w: int) -> Tensor:
        """Attention from (B, H·W, d, 3, N) tokens (a view of the projection); returns (B, h_out, w_out, N, d)."""
        # unbind, not three selects: its backward writes the three gradients into one tensor (a stack)
        # instead of zero-filling a projection-sized tensor per select and adding them.
        parts = qkv.unbind(3)
        q, k, v = parts[0].transpose(2, 3), parts[1].transpose(2, 3), parts[2].transpose(2, 3)
        pe = self.conv_p(position_grid(h, w, device=qkv.device, dtype=qkv.dtype))  # (1, d, H, W)
        return self._local_attention(q, k, v, _heads(pe, self.head_dim), h, w)

    def _local_attention(self, q: Tensor, k: Tensor, v: Tensor, pe: Tensor, h: int, w: int) -> Tensor:
        # The reference's logit is q_i · (k_j + pe_i − pe_j); q_i · pe_i is the same for every key of
        # query i and cancels in the softmax, so the keys are k − pe (pe is shared by the heads). pe is
        # expanded over the heads first, so that its gradient is two cheap sums (over the batch, then over
        # the heads: ~15x faster on a CPU, measured, than one strided reduction over both).
        keys = k - pe.expand(-1, -1, k.shape[2], -1)
        if self.attention_impl == "flex" and not torch.jit.is_scripting():
            return self._flex_attention(q, keys, v, h, w)
        return local_attention(
            q, keys, v, [h, w], self.kernel_att, self.stride, self.dilation, self.tile, float(self.head_dim) ** -0.5
        )

    @torch.jit.unused
    def _flex_attention(self, q: Tensor, k: Tensor, v: Tensor, h: int, w: int) -> Tensor:
        # TorchScript compiles a stub for this method: scripted models run the tiles (the same result).
        return local_attention_flex(
            q, k, v, [h, w], self.kernel_att, self.stride, self.dilation, float(self.head_dim) ** -0.5
        )


def set_attention_impl(model: nn.Module, impl: str) -> nn.Module:
    """Set `attention_impl` ("auto", "tiles" or "flex") on every ACmix module of `model`; returns `model`."""
    _check_attention_impl(impl)
    for module in model.modules():
        if isinstance(module, ACmix):
            module.attention_impl = impl
    return model


def shift_kernels(kernel_conv: int, out_planes: int) -> Tensor:
    """dep_conv's shift initialisation: input m of every group gets a one-hot at (m // k, m % k)."""
    k2 = kernel_conv * kernel_conv
    kernel = torch.zeros(k2, kernel_conv, kernel_conv)
    kernel.view(k2, k2)[torch.arange(k2), torch.arange(k2)] = 1.0
    return kernel.unsqueeze(0).repeat(out_planes, 1, 1, 1)


def _heads(t: Tensor, d: int) -> Tensor:
    """(B, C, H, W) -> (B, H·W, C // d, d) tokens: a view of channels-last maps."""
    return t.permute(0, 2, 3, 1).reshape(t.shape[0], t.shape[2] * t.shape[3], t.shape[1] // d, d)


def _check_acmix_args(
    in_planes: int,
    out_planes: int,
    kernel_att: int,
    head: int,
    kernel_conv: int,
    stride: int,
    dilation: int,
    alpha: float,
    beta: float,
    tile: int | None,
    attention_impl: str,
) -> None:
    """Raise ValueError, naming the argument, for any ACmix argument out of its domain."""
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
    _check_attention_impl(attention_impl)
    if out_planes % head:
        raise ValueError(f"ACmix: head={head} must divide out_planes={out_planes}")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not math.isfinite(float(value)):
            raise ValueError(f"ACmix: {name} must be a finite number, got {value}")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ACmix: {name} must be a positive integer, got {value!r}")


def _check_attention_impl(value) -> None:
    if value not in ATTENTION_IMPLS:
        raise ValueError(f"ACmix: attention_impl must be one of {', '.join(ATTENTION_IMPLS)}, got {value!r}")
