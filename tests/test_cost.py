import pytest
import torch

from nas.net.acmix import ACmix
from nas.net.arch import Arch, BlockArch, StageArch, StemArch
from nas.net.cost import acmix_attention_macs, acmix_macs, count_macs, measure_cost, peak_memory_mb
from nas.net.model import create_model, default_arch, paper_arch


def tiny_arch() -> Arch:
    """stem 3x3/2: 1->8 at 8x8 -> 4x4; two bottleneck stages (channels 16, width 8): an ACmix block,
    then a 3x3 conv block."""
    acmix = BlockArch(op="acmix", heads=2, k_att=3, k_conv=3)
    return Arch(
        input_size=(8, 8),
        in_chans=1,
        stem=StemArch("3x3", 8),
        stages=(
            StageArch("bottleneck", 16, 1, 0.5, (acmix,)),
            StageArch("bottleneck", 16, 1, 0.5, (BlockArch(op="conv", kernel=3),)),
        ),
    )


def test_attention_formula():
    assert acmix_attention_macs(64, 4, 7, 56, 56) == 2 * 64 * 49 * 56 * 56
    assert acmix_attention_macs(64, 1, 7, 56, 56) == acmix_attention_macs(64, 8, 7, 56, 56)


def test_macs_against_a_hand_count():
    m = create_model(tiny_arch(), num_classes=10)
    H = W = 4  # after the stride-2 stem on 8x8
    C, d, N, ka, kc = 8, 4, 2, 3, 3
    hand = (
        1 * 8 * 9 * H * W  # stem 3x3 conv, 1 -> 8 channels
        + 8 * 16 * H * W  # shortcut 1x1 conv 8 -> 16
        + 8 * C * H * W  # block conv1_1x1 8 -> 8
        + 3 * C * C * H * W  # ACmix q, k, v 1x1 convs
        + 2 * d * H * W  # ACmix conv_p (2 -> d positional encoding)
        + 3 * N * kc * kc * d * H * W  # ACmix fc: 3N -> k_c^2 maps at every (channel of a head, pixel)
        + C * kc * kc * kc * kc * H * W  # dep_conv: C outputs, groups of k_c^2 inputs, k_c x k_c kernel
        + 2 * C * ka * ka * H * W  # attention: logits + weighted sum
        + C * 16 * H * W  # block conv3_1x1 8 -> 16
        + 16 * 8 * H * W
        + 8 * 8 * 9 * H * W
        + 8 * 16 * H * W  # conv block: 1x1, 3x3, 1x1 (identity shortcut)
        + 16 * 10  # classifier
    )
    macs, att = count_macs(m, (1, 8, 8))
    assert att == 2 * C * ka * ka * H * W
    assert macs == hand


def test_acmix_parts_match_the_flop_counter_where_it_sees_them():
    """The analytic conv parts of ACmix equal what FlopCounterMode counts for the reference's computation,
    the unfold formulation: its projections, positional encoding, fc and dep_conv are convolutions and
    matmuls the counter sees, its attention is elementwise products and sums the counter does not."""
    from torch.utils.flop_counter import FlopCounterMode

    from nas.net.acmix_reference import UnfoldACmix

    m = UnfoldACmix(16, 16, kernel_att=5, head=4, kernel_conv=3, stride=2).eval()
    c = FlopCounterMode(display=False)
    with torch.inference_mode(), c:
        m(torch.zeros(1, 16, 7, 6))
    parts = acmix_macs(m, 7, 6)
    assert c.get_total_flops() // 2 == parts["qkv"] + parts["pos"] + parts["fc"] + parts["dep_conv"]


def test_acmix_counts_the_reference_operator_not_its_folded_implementation():
    """ACmix runs fc + dep_conv as one folded grouped conv, whose multiply-adds differ from the reference's
    (here k_c=5: 3N·k_c² per output against 3·k_c²·N + k_c⁴ at stride 1); count_macs reports the reference's."""
    from torch.utils.flop_counter import FlopCounterMode

    m = ACmix(16, 16, kernel_att=3, head=4, kernel_conv=5).eval()
    seen = FlopCounterMode(display=False)
    with torch.inference_mode(), seen:
        m(torch.zeros(1, 16, 6, 6))
    parts = acmix_macs(m, 6, 6)
    assert count_macs(m, (16, 6, 6)) == (sum(parts.values()), parts["attention"])
    assert seen.get_total_flops() // 2 != sum(parts.values())  # the folded kernel is not what is reported


def test_measure_cost_digits_is_fast_and_complete():
    import time

    torch.set_num_threads(1)
    t = time.perf_counter()
    cost = measure_cost(default_arch(), num_classes=10, batch_size=2, repeats=5)
    assert time.perf_counter() - t < 1.0
    assert cost.params == sum(p.numel() for p in create_model(default_arch()).parameters())
    assert cost.latency_ms > 0 and cost.peak_memory_mb > 0
    assert cost.batch_size == 2 and cost.dtype == "float32" and cost.device == "cpu"
    assert cost.input_size == (1, 16, 16) and 0 < cost.attention_macs < cost.macs


def test_peak_memory_counts_allocations_not_views_of_existing_tensors():
    x = torch.randn(256, 1024)  # 1 MiB, made before the measurement
    assert peak_memory_mb(lambda: x.flatten().view(1024, 256).t()[1:]) == 0.0  # views: nothing allocated
    assert peak_memory_mb(lambda: x.t().contiguous()) == 1.0  # a copy: one MiB
    # A view of something made inside counts once, and memory freed before the next allocation is reused.
    assert peak_memory_mb(lambda: ((x * 2).t().flatten(), x + 1)) == 2.0  # flatten of a transpose copies
    assert peak_memory_mb(lambda: ((x * 2).t()[0], x + 1)) == 2.0
    assert peak_memory_mb(lambda: [(x * 2).sum() for _ in range(3)]) == pytest.approx(1.0, abs=1e-3)


def test_peak_memory_grows_with_batch():
    m = create_model(default_arch())
    one = measure_cost(m, latency=False, batch_size=1).peak_memory_mb
    eight = measure_cost(m, latency=False, batch_size=8).peak_memory_mb
    assert 4 * one < eight < 9 * one


def test_paper_macs():
    """ResNet-50 is ~4.1 G MACs; the paper counts ACmix-ResNet-50 at 3.6 G."""
    with torch.no_grad():
        r50 = measure_cost(paper_arch(50, "conv"), latency=False, memory=False)
        a50 = measure_cost(paper_arch(50), latency=False, memory=False)
    print(
        f"\nResNet-50 {r50.macs / 1e9:.3f} G MACs, ACmix-ResNet-50 {a50.macs / 1e9:.3f} G MACs "
        f"(attention {a50.attention_macs / 1e9:.3f} G)"
    )
    assert 4.0e9 < r50.macs < 4.2e9
    assert abs(a50.macs / 3.6e9 - 1) < 0.05
