"""ACmix: the reference's state_dict layout, exactness against the unfold formulation, and the fixed failures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nas.net.acmix import (
    ACmix,
    _even_tile,
    local_attention,
    local_attention_flex,
    mirror_index,
    position_grid,
    set_attention_impl,
    shift_kernels,
)
from nas.net.acmix_reference import reference_parameter_shapes, unfold_forward


def randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Random weights everywhere (incl. dep_conv and the rates), so no term is trivially zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def assert_grads_close(g: dict, g_ref: dict) -> None:
    """Elementwise rtol 1e-4, with an absolute floor at 1e-5 of the largest gradient: some gradients
    are exactly zero in exact arithmetic (conv_p.bias cancels in pe_i − pe_j) and hold rounding noise."""
    assert g.keys() == g_ref.keys()
    scale = max(t.abs().max().item() for t in g_ref.values())
    for name in g:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


def forward_and_grads(module: torch.nn.Module, x: torch.Tensor, fn=None):
    x = x.clone().requires_grad_()
    y = module(x) if fn is None else fn(module, x)
    grad_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y)
    y.backward(grad_out)
    grads = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    return y.detach(), x.grad, grads


# (C, heads, k_att, k_conv, stride, H, W): shapes the paper's module handles (even sizes at stride 2,
# maps larger than the reflection padding).
REFERENCE_CASES = [
    (16, 4, 7, 3, 1, 8, 8),
    (16, 4, 7, 3, 2, 12, 10),
    (32, 2, 5, 3, 1, 16, 11),
    (16, 4, 3, 5, 1, 9, 9),
    (24, 3, 9, 1, 2, 14, 16),
    (16, 8, 7, 7, 1, 10, 12),
    (64, 4, 7, 3, 1, 20, 20),  # several query tiles
]


def reference_state_dict(c: int, heads: int, ka: int, kc: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state_dict with the paper module's names and shapes (the reference's parameter table (docs/network.md))."""
    gen = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(shape, generator=gen) * 0.5
        for name, shape in reference_parameter_shapes(c, c, kernel_att=ka, head=heads, kernel_conv=kc).items()
    }


@pytest.mark.parametrize("c,heads,ka,kc,s,h,w", REFERENCE_CASES)
def test_reference_state_dict_loads_and_gives_same_output_and_gradients(c, heads, ka, kc, s, h, w):
    ours = ACmix(c, c, kernel_att=ka, head=heads, kernel_conv=kc, stride=s)
    ours.load_state_dict(reference_state_dict(c, heads, ka, kc), strict=True)
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(2))
    y_ref, gx_ref, g_ref = forward_and_grads(ours, x, fn=unfold_forward)
    y, gx, g = forward_and_grads(ours, x)
    assert y.shape == y_ref.shape == (2, c, h // s, w // s)
    assert rel_err(y, y_ref) <= 1e-5
    assert rel_err(gx, gx_ref) <= 1e-4
    assert_grads_close(g, g_ref)


def test_state_dict_layout_is_the_reference_layout():
    ours = ACmix(64, 64)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == reference_parameter_shapes(64, 64)
    assert "dep_conv.bias" not in ours.state_dict()  # the reference drops it in reset_parameters
    assert ours.kernel_att == 7 and ours.head == 4 and ours.kernel_conv == 3 and ours.stride == 1
    # The table itself, from the reference (docs/network.md), for one non-default setting (C_in 32 -> C 48, N 3, k_c 5):
    assert reference_parameter_shapes(32, 48, kernel_att=5, head=3, kernel_conv=5) == {
        "rate1": (1,),
        "rate2": (1,),
        "conv1.weight": (48, 32, 1, 1),
        "conv1.bias": (48,),
        "conv2.weight": (48, 32, 1, 1),
        "conv2.bias": (48,),
        "conv3.weight": (48, 32, 1, 1),
        "conv3.bias": (48,),
        "conv_p.weight": (16, 2, 1, 1),
        "conv_p.bias": (16,),
        "fc.weight": (25, 9, 1, 1),
        "dep_conv.weight": (48, 25, 5, 5),
    }


# Cases the paper's module cannot run: odd sizes at stride 2, windows wider than the map, dilation.
EXTENDED_CASES = [
    (16, 4, 7, 3, 2, 15, 9, 1),
    (16, 4, 7, 3, 2, 7, 7, 1),
    (16, 4, 7, 3, 1, 2, 2, 1),
    (16, 4, 9, 3, 1, 3, 5, 1),
    (16, 4, 7, 3, 1, 1, 1, 1),
    (16, 4, 7, 3, 2, 1, 1, 1),
    (16, 2, 5, 3, 1, 9, 9, 2),
    (16, 2, 3, 3, 2, 11, 6, 3),
    (8, 1, 3, 1, 1, 4, 4, 1),
]


@pytest.mark.parametrize("c,heads,ka,kc,s,h,w,dil", EXTENDED_CASES)
def test_blocked_attention_equals_unfold_formulation(c, heads, ka, kc, s, h, w, dil):
    m = ACmix(c, c, kernel_att=ka, head=heads, kernel_conv=kc, stride=s, dilation=dil)
    randomise(m, seed=3)
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(4))
    y_ref, gx_ref, g_ref = forward_and_grads(m, x, fn=unfold_forward)
    y, gx, g = forward_and_grads(m, x)
    assert y.shape == (2, c, -(-h // s), -(-w // s))
    assert rel_err(y, y_ref) <= 1e-5
    assert rel_err(gx, gx_ref) <= 1e-4
    assert_grads_close(g, g_ref)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("c,heads,ka,kc,s,h,w,dil", EXTENDED_CASES + [(*case, 1) for case in REFERENCE_CASES[:2]])
def test_flex_attention_forward_equals_unfold_formulation(c, heads, ka, kc, s, h, w, dil):
    # attention_impl="flex" (FlexAttention over the mirror-padded map with a block-sparse window mask) is
    # the same operator: checked here in forward, which is all FlexAttention runs on a CPU.
    m = ACmix(c, c, kernel_att=ka, head=heads, kernel_conv=kc, stride=s, dilation=dil, attention_impl="flex")
    randomise(m, seed=3)
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert rel_err(m(x), unfold_forward(m, x)) <= 1e-5


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_function_equals_the_tiles_on_strided_token_views():
    # The functions themselves, on the strided q/k/v views ACmix passes (not contiguous in d), stride 3.
    gen = torch.Generator().manual_seed(6)
    qkv = torch.randn(2, 10 * 13, 4, 3, 2, generator=gen)
    q, k, v = (t.transpose(2, 3) for t in qkv.unbind(3))
    for kernel, stride, dilation in [(3, 3, 1), (5, 1, 2), (7, 2, 1)]:
        tiles = local_attention(q, k, v, [10, 13], kernel, stride, dilation, None, 0.3)
        flex = local_attention_flex(q, k, v, [10, 13], kernel, stride, dilation, 0.3)
        assert flex.shape == tiles.shape and rel_err(flex, tiles) <= 1e-5


def test_flex_attention_without_a_backward_says_so_and_the_setting_is_checked():
    m = ACmix(8, 8, head=2, attention_impl="flex")
    with pytest.raises(RuntimeError, match="attention_impl='flex' has no backward on cpu"):
        m(torch.randn(1, 8, 6, 6))
    with pytest.raises(ValueError, match="attention_impl must be one of auto, tiles, flex, got 'fused'"):
        ACmix(8, 8, attention_impl="fused")
    model = torch.nn.Sequential(ACmix(8, 8, head=2), torch.nn.ReLU(), ACmix(8, 8, head=2))
    assert set_attention_impl(model, "flex") is model
    assert [m.attention_impl for m in model if isinstance(m, ACmix)] == ["flex", "flex"]
    with pytest.raises(ValueError, match="got 'fast'"):
        set_attention_impl(model, "fast")


def test_tiles_are_evened_out_over_the_map():
    # As many tiles as the largest edge needs, of equal edges: no computed-then-cropped overhang where avoidable.
    for edge in (2, 4, 8):
        for n in range(1, 70):
            t = _even_tile(edge, n)
            tiles = -(-n // t)
            assert t <= edge and tiles == -(-n // edge) and tiles * t - n < tiles
    assert _even_tile(8, 28) == 7 and _even_tile(8, 32) == 8 and _even_tile(8, 5) == 5


@pytest.mark.parametrize("tile", [1, 2, 3, 5])
def test_result_does_not_depend_on_the_tile_size(tile):
    x = torch.randn(2, 16, 13, 11, generator=torch.Generator().manual_seed(5))
    m = ACmix(16, 16, stride=2)
    randomise(m)
    other = ACmix(16, 16, stride=2, tile=tile)
    other.load_state_dict(m.state_dict())
    assert rel_err(other(x), m(x)) <= 1e-5


def test_border_rule_is_reflection_where_reflection_exists_and_mirror_periodic_beyond():
    x = torch.arange(5.0).view(1, 1, 1, 5)
    for pad in (1, 2, 4):
        expected = F.pad(x, (pad, pad, 0, 0), mode="reflect")[0, 0, 0]
        got = x[0, 0, 0][mirror_index(torch.arange(-pad, 5 + pad), 5)]
        assert torch.equal(got, expected)
    # Wider than reflection allows: reflect again. 0 1 | 0 1 0 1 ... on a 2-pixel axis.
    assert mirror_index(torch.arange(-3, 5), 2).tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert mirror_index(torch.arange(-3, 4), 1).tolist() == [0] * 7


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (1, 3), (3, 2)])
@pytest.mark.parametrize("stride", [1, 2])
def test_maps_smaller_than_the_window_do_not_crash(size, stride):
    m = ACmix(8, 8, kernel_att=9, head=2, stride=stride)
    y = m(torch.randn(2, 8, *size))
    assert y.shape == (2, 8, -(-size[0] // stride), -(-size[1] // stride))
    assert torch.isfinite(y).all()


def test_one_pixel_map_attention_is_the_value():
    # A 1×1 map: every window position mirrors onto the single pixel, so attention returns v.
    m = ACmix(8, 8, head=2)
    randomise(m)
    x = torch.randn(3, 8, 1, 1)
    q, k, v = m.conv1(x), m.conv2(x), m.conv3(x)
    pe = m.conv_p(position_grid(1, 1, dtype=x.dtype))
    assert torch.allclose(m.attention(q, k, v, pe), v, atol=1e-6)


@pytest.mark.parametrize("ka", [3, 5, 7, 9])
@pytest.mark.parametrize("kc", [1, 3, 5, 7])
def test_every_odd_kernel_runs_forward_and_backward(ka, kc):
    m = ACmix(16, 32, kernel_att=ka, head=4, kernel_conv=kc, stride=2)
    x = torch.randn(2, 16, 9, 10, requires_grad=True)
    y = m(x)
    assert y.shape == (2, 32, 5, 5)
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(in_planes=16, out_planes=18, head=4), "head=4 must divide out_planes=18"),
        (dict(in_planes=16, kernel_att=6), "kernel_att must be odd"),
        (dict(in_planes=16, kernel_conv=2), "kernel_conv must be odd"),
        (dict(in_planes=16, stride=0), "stride must be a positive integer"),
        (dict(in_planes=16, head=0), "head must be a positive integer"),
        (dict(in_planes=16, dilation=1.5), "dilation must be a positive integer"),
        (dict(in_planes=16, alpha=float("nan")), "alpha must be a finite number"),
    ],
)
def test_impossible_settings_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ACmix(**kwargs)


def test_shift_initialisation_makes_the_conv_branch_shift_and_sum_the_fc_maps():
    c, heads, kc = 16, 4, 3
    m = ACmix(c, c, head=heads, kernel_conv=kc)
    d, k2 = c // heads, kc * kc
    assert torch.equal(m.dep_conv.weight, shift_kernels(kc, c))
    x = torch.randn(2, c, 7, 6)
    q, k, v = m.conv1(x), m.conv2(x), m.conv3(x)
    b, _, h, w = q.shape
    # The k_c² fc maps of head channel g: fmaps[:, g, i] = Σ_n fc[i, n] · [q; k; v]_{n-th head map}[g].
    stacked = torch.cat([t.reshape(b, heads, d, h, w) for t in (q, k, v)], 1)  # (B, 3N, d, H, W)
    fmaps = torch.einsum("in,bngxy->bgixy", m.fc.weight[:, :, 0, 0], stacked)
    padded = F.pad(fmaps, (kc // 2,) * 4)
    expected = torch.empty(b, c, h, w)
    for o in range(c):
        g = o // heads  # dep_conv groups: output channel o reads the k_c² maps of head channel o // N
        expected[:, o] = sum(padded[:, g, i, i // kc : i // kc + h, i % kc : i % kc + w] for i in range(k2))
    assert torch.allclose(m.conv_branch(q, k, v), expected, atol=1e-5)


def test_alpha_beta_initial_values_and_learnable_switch():
    x = torch.randn(2, 16, 6, 6)
    frozen = ACmix(16, alpha=0.25, beta=2.0, learnable=False)
    assert frozen.rate1.item() == 0.25 and frozen.rate2.item() == 2.0
    assert not frozen.rate1.requires_grad and not frozen.rate2.requires_grad
    assert {"rate1", "rate2"} <= set(frozen.state_dict())  # same layout either way
    frozen(x).sum().backward()
    assert frozen.rate1.grad is None and frozen.rate2.grad is None and frozen.conv1.weight.grad is not None
    before = (frozen.rate1.item(), frozen.rate2.item())
    torch.optim.SGD([p for p in frozen.parameters() if p.requires_grad], lr=1.0).step()
    assert (frozen.rate1.item(), frozen.rate2.item()) == before

    learnable = ACmix(16, alpha=0.25, beta=2.0)
    learnable(x).sum().backward()
    assert learnable.rate1.grad is not None and learnable.rate2.grad is not None
    learnable.reset_parameters()  # what timm's SelfAttnBlock.init_weights calls
    assert learnable.rate1.item() == 0.25 and learnable.rate2.item() == 2.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_modules(dtype):
    """Within 5 machine epsilons of float32 (over 200 input seeds the largest was 2.6 eps for both
    dtypes; an unseeded input once reached 3.95 eps in bfloat16, so the input is seeded here)."""
    tol = 5 * torch.finfo(dtype).eps
    m = ACmix(16, 16, stride=2)
    randomise(m)
    x = torch.randn(2, 16, 9, 8, generator=torch.Generator().manual_seed(0))
    low = ACmix(16, 16, stride=2)
    low.load_state_dict(m.state_dict())
    low = low.to(dtype)
    xl = x.to(dtype).requires_grad_()
    y = low(xl)
    assert y.dtype == dtype
    assert rel_err(y.float(), m(x)) <= tol
    y.float().sum().backward()
    assert xl.grad.dtype == dtype and torch.isfinite(xl.grad).all()


def test_autocast_keeps_the_autocast_dtype():
    m = ACmix(16, 16)
    x = torch.randn(2, 16, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype == torch.bfloat16
    assert rel_err(y.float(), m(x)) <= 3e-2


def test_position_grid_follows_device_and_dtype():
    grid = position_grid(3, 4, device="cpu", dtype=torch.float16)
    assert grid.dtype == torch.float16 and grid.shape == (1, 2, 3, 4)
    assert grid[0, 0, 0].tolist() == torch.linspace(-1, 1, 4, dtype=torch.float16).tolist()  # width
    assert grid[0, 1, :, 0].tolist() == torch.linspace(-1, 1, 3, dtype=torch.float16).tolist()  # height
    meta = ACmix(16, 16, device="meta")
    assert meta(torch.empty(2, 16, 8, 8, device="meta")).device.type == "meta"


def test_training_after_an_inference_mode_forward():
    m = ACmix(16, 16, head=2)
    x = torch.randn(2, 16, 11, 13)  # a geometry no other test uses, so the first call fills the cache
    with torch.inference_mode():
        expected = m(x)
    x.requires_grad_()
    y = m(x)
    y.sum().backward()
    assert torch.equal(y.detach(), expected) and x.grad is not None


def test_channels_last_input_gives_the_same_result_in_the_same_format():
    m = ACmix(16, 16)
    x = torch.randn(2, 16, 9, 7)
    y = m(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert m(x).is_contiguous()
    assert rel_err(y, m(x)) <= 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    m = ACmix(32, 32, stride=2)
    randomise(m)
    x = torch.randn(2, 32, 15, 16)
    expected = m(x)
    gpu = ACmix(32, 32, stride=2)
    gpu.load_state_dict(m.state_dict())
    gpu = gpu.to("cuda", dtype)
    y = gpu(x.to("cuda", dtype))
    assert y.device.type == "cuda" and y.dtype == dtype
    assert rel_err(y.float().cpu(), expected) <= (1e-4 if dtype == torch.float32 else 3e-2)
    with torch.autocast("cuda", dtype=torch.float16):
        assert rel_err(m.cuda()(x.cuda()).float().cpu(), expected) <= 3e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype,tol,grad_tol", [(torch.float32, 1e-4, 1e-3), (torch.bfloat16, 3e-2, 6e-2)])
@pytest.mark.parametrize(
    "c,heads,ka,s,h,w", [(64, 4, 7, 1, 20, 20), (64, 4, 3, 2, 15, 16), (128, 4, 5, 1, 9, 7), (96, 4, 5, 2, 12, 12)]
)  # head_dim 16, 16, 32, 24
def test_cuda_flex_attention_matches_the_cpu_path_forward_and_backward(dtype, tol, grad_tol, c, heads, ka, s, h, w):
    # The compiled FlexAttention kernel (CUDA only) against the tiled path on the CPU, gradients included.
    m = ACmix(c, c, kernel_att=ka, head=heads, stride=s)
    randomise(m)
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(7))
    y, gx, g = forward_and_grads(m, x)
    gpu = ACmix(c, c, kernel_att=ka, head=heads, stride=s, attention_impl="flex")
    gpu.load_state_dict(m.state_dict())
    gpu = gpu.to("cuda", dtype)
    y_gpu, gx_gpu, g_gpu = forward_and_grads(gpu, x.to("cuda", dtype))
    assert rel_err(y_gpu.float().cpu(), y) <= tol
    assert rel_err(gx_gpu.float().cpu(), gx) <= grad_tol
    for name in g:
        assert rel_err(g_gpu[name].float().cpu(), g[name]) <= grad_tol, name
