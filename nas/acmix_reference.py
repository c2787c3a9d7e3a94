"""The paper's ACmix, unfold formulation: the reference that tests and benchmarks compare against.

This is the module of the official ACmix-ResNet code (Pan et al., CVPR 2022), kept as close to
the original as possible so that it *is* the reference: same parameter names and shapes, same
arithmetic order. Two changes only, neither affecting results where the original runs:

- the coordinate grid is created on ``x.device`` (the original calls ``.cuda()``);
- ``dep_conv`` padding is ``kernel_conv // 2`` instead of the hard-coded 1, so the reference also
  covers kernel_conv in {1, 5, 7} for the exactness tests (identical for kernel_conv=3).

It materialises k_att² copies of keys, values and positional encodings with ``nn.Unfold`` (~49x the
activation memory at k_att=7), needs H, W > k_att // 2 (reflection padding), even H, W at stride 2,
float32, and dilation 1. Use :class:`nas.acmix.ACmix` for anything but comparisons.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from nas.acmix import ACmix


def position(H: int, W: int, device: torch.device) -> torch.Tensor:
    loc_w = torch.linspace(-1.0, 1.0, W, device=device).unsqueeze(0).repeat(H, 1)
    loc_h = torch.linspace(-1.0, 1.0, H, device=device).unsqueeze(1).repeat(1, W)
    loc = torch.cat([loc_w.unsqueeze(0), loc_h.unsqueeze(0)], 0).unsqueeze(0)
    return loc


def stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    return x[:, :, ::stride, ::stride]


def init_rate_half(tensor):
    if tensor is not None:
        tensor.data.fill_(0.5)


def init_rate_0(tensor):
    if tensor is not None:
        tensor.data.fill_(0.0)


class ReferenceACmix(nn.Module):
    """The original ACmix module (unfold formulation). For tests and benchmarks only."""

    def __init__(self, in_planes, out_planes, kernel_att=7, head=4, kernel_conv=3, stride=1, dilation=1):
        super().__init__()
        self.in_planes = in_planes
        self.out_planes = out_planes
        self.head = head
        self.kernel_att = kernel_att
        self.kernel_conv = kernel_conv
        self.stride = stride
        self.dilation = dilation
        self.rate1 = torch.nn.Parameter(torch.Tensor(1))
        self.rate2 = torch.nn.Parameter(torch.Tensor(1))
        self.head_dim = self.out_planes // self.head

        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv2 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv_p = nn.Conv2d(2, self.head_dim, kernel_size=1)

        self.padding_att = (self.dilation * (self.kernel_att - 1) + 1) // 2
        self.pad_att = torch.nn.ReflectionPad2d(self.padding_att)
        self.unfold = nn.Unfold(kernel_size=self.kernel_att, padding=0, stride=self.stride)
        self.softmax = torch.nn.Softmax(dim=1)

        self.fc = nn.Conv2d(3 * self.head, self.kernel_conv * self.kernel_conv, kernel_size=1, bias=False)
        self.dep_conv = nn.Conv2d(
            self.kernel_conv * self.kernel_conv * self.head_dim, out_planes, kernel_size=self.kernel_conv,
            bias=True, groups=self.head_dim, padding=self.kernel_conv // 2, stride=stride,
        )
        self.reset_parameters()

    def reset_parameters(self):
        init_rate_half(self.rate1)
        init_rate_half(self.rate2)
        kernel = torch.zeros(self.kernel_conv * self.kernel_conv, self.kernel_conv, self.kernel_conv)
        for i in range(self.kernel_conv * self.kernel_conv):
            kernel[i, i // self.kernel_conv, i % self.kernel_conv] = 1.0
        kernel = kernel.squeeze(0).repeat(self.out_planes, 1, 1, 1)
        self.dep_conv.weight = nn.Parameter(data=kernel, requires_grad=True)
        self.dep_conv.bias = init_rate_0(self.dep_conv.bias)  # None: the original drops the bias

    def forward(self, x):
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        scaling = float(self.head_dim) ** -0.5
        b, c, h, w = q.shape
        h_out, w_out = h // self.stride, w // self.stride

        pe = self.conv_p(position(h, w, x.device))

        q_att = q.view(b * self.head, self.head_dim, h, w) * scaling
        k_att = k.view(b * self.head, self.head_dim, h, w)
        v_att = v.view(b * self.head, self.head_dim, h, w)

        if self.stride > 1:
            q_att = stride(q_att, self.stride)
            q_pe = stride(pe, self.stride)
        else:
            q_pe = pe

        unfold_k = self.unfold(self.pad_att(k_att)).view(
            b * self.head, self.head_dim, self.kernel_att * self.kernel_att, h_out, w_out)
        unfold_rpe = self.unfold(self.pad_att(pe)).view(
            1, self.head_dim, self.kernel_att * self.kernel_att, h_out, w_out)

        att = (q_att.unsqueeze(2) * (unfold_k + q_pe.unsqueeze(2) - unfold_rpe)).sum(1)
        att = self.softmax(att)

        out_att = self.unfold(self.pad_att(v_att)).view(
            b * self.head, self.head_dim, self.kernel_att * self.kernel_att, h_out, w_out)
        out_att = (att.unsqueeze(1) * out_att).sum(2).view(b, self.out_planes, h_out, w_out)

        f_all = self.fc(torch.cat([
            q.view(b, self.head, self.head_dim, h * w),
            k.view(b, self.head, self.head_dim, h * w),
            v.view(b, self.head, self.head_dim, h * w),
        ], 1))
        f_conv = f_all.permute(0, 2, 1, 3).reshape(x.shape[0], -1, q.shape[-2], q.shape[-1])

        out_conv = self.dep_conv(f_conv)

        return self.rate1 * out_att + self.rate2 * out_conv


def unfold_forward(m: "ACmix", x: torch.Tensor) -> torch.Tensor:
    """The unfold formulation of :class:`nas.acmix.ACmix`'s forward, with its extensions.

    Same arithmetic as :class:`ReferenceACmix`, generalised the way ACmix generalises the reference:
    mirror-periodic reflection (``nas.acmix.mirror_index``) for windows wider than the map, dilation,
    and ceil(H/stride) outputs for odd sizes. It materialises the k_att² copies, so use it only to
    check ACmix's blocked attention on small inputs.
    """
    from nas.acmix import mirror_index, position_grid

    q, k, v = m.conv1(x), m.conv2(x), m.conv3(x)
    b, c, h, w = q.shape
    n, d, s, ka, dil = m.head, m.head_dim, m.stride, m.kernel_att, m.dilation
    h_out, w_out = -(-h // s), -(-w // s)
    pad = dil * (ka - 1) // 2
    rows = mirror_index(torch.arange(-pad, h + pad, device=x.device), h)
    cols = mirror_index(torch.arange(-pad, w + pad, device=x.device), w)
    unfold = nn.Unfold(kernel_size=ka, dilation=dil, stride=s)

    def padded_windows(t: torch.Tensor) -> torch.Tensor:  # (B', d, H, W) -> (B', d, ka², h_out, w_out)
        return unfold(t[:, :, rows][:, :, :, cols]).view(t.shape[0], d, ka * ka, h_out, w_out)

    pe = m.conv_p(position_grid(h, w, device=x.device, dtype=q.dtype))
    q_att = q.reshape(b * n, d, h, w)[:, :, ::s, ::s] * float(d) ** -0.5
    q_pe = pe[:, :, ::s, ::s]
    logits = (q_att.unsqueeze(2) * (padded_windows(k.reshape(b * n, d, h, w)) + q_pe.unsqueeze(2)
                                    - padded_windows(pe))).sum(1)
    att = torch.softmax(logits, dim=1)
    out_att = (att.unsqueeze(1) * padded_windows(v.reshape(b * n, d, h, w))).sum(2).view(b, c, h_out, w_out)

    f_all = m.fc(torch.cat([t.reshape(b, n, d, h * w) for t in (q, k, v)], 1))
    out_conv = m.dep_conv(f_all.permute(0, 2, 1, 3).reshape(b, -1, h, w))
    return m.rate1 * out_att + m.rate2 * out_conv
