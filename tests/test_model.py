import json
from pathlib import Path

import optuna
import pytest
import timm
import torch

import nas  # noqa: F401  (registers the timm models)
from nas.net.acmix import ACmix, shift_kernels
from nas.net.arch import Arch
from nas.net.model import create_model, default_arch, model_args, paper_arch
from nas.space import load_space

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_default_model_builds_with_no_arguments():
    m = timm.create_model("acmix_nas", pretrained=False)
    assert type(m).__name__ == "ByobNet" and m.arch == default_arch()
    assert m(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    assert m.arch == load_space(SPACES / "digits.yaml").reference_points()["all_acmix"]


def test_arch_as_object_dict_or_json():
    arch = load_space(SPACES / "digits.yaml").reference_points()["paper"]
    ms = [timm.create_model("acmix_nas", arch=a, num_classes=7) for a in (arch, arch.to_dict(), arch.to_json())]
    assert all(m.arch == arch for m in ms)
    assert len({tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()) for m in ms}) == 1
    assert ms[0].get_classifier().out_features == 7


def test_resnet_parameter_counts():
    """All-conv ResNet-50 point = timm resnet50 exactly; ACmix-ResNet-26/38/50 within 1% of the
    reference implementation (10.49 M, 14.41 M, 18.33 M at 1000 classes)."""
    space = load_space(SPACES / "acmix_resnet.yaml")
    with torch.device("meta"):
        r50 = n_params(create_model(space.point(op="conv", depth=[3, 4, 6, 3]), num_classes=1000))
        assert r50 == n_params(timm.create_model("resnet50")) == 25_557_032
        print(f"\nall-conv ResNet-50 point: {r50:,}")
        for depth, ref in ((26, 10.49e6), (38, 14.41e6), (50, 18.33e6)):
            arch = space.point(op="acmix", depth=list(paper_arch(depth).stages[i].depth for i in range(4)))
            assert arch == paper_arch(depth)
            n = n_params(create_model(arch, num_classes=1000))
            assert n == n_params(timm.create_model(f"acmix_resnet{depth}"))
            print(f"ACmix-ResNet-{depth}: {n:,} ({(n / ref - 1) * 100:+.2f}% vs {ref / 1e6:.2f} M)")
            assert abs(n / ref - 1) < 0.01


@pytest.mark.parametrize("name", ["acmix_nas", "acmix_resnet26", "acmix_resnet38", "acmix_resnet50"])
def test_pretrained_cfgs(name):
    with torch.device("meta"):
        m = timm.create_model(name)
    cfg = m.pretrained_cfg
    modules = dict(m.named_modules())
    assert cfg["first_conv"] in modules and isinstance(modules[cfg["first_conv"]], torch.nn.Conv2d)
    assert cfg["classifier"] in modules and modules[cfg["classifier"]].out_features == cfg["num_classes"]
    assert tuple(cfg["input_size"]) == (m.arch.in_chans, *m.arch.input_size)
    assert len(cfg["mean"]) == len(cfg["std"]) == m.arch.in_chans
    assert cfg["architecture"] == name


def test_timm_model_api():
    m = create_model(default_arch(), num_classes=10).eval()
    x = torch.randn(2, 1, 16, 16)
    f = m.forward_features(x)
    assert f.shape[1] == m.num_features
    assert m.forward_head(f).shape == (2, 10)
    m.reset_classifier(3)
    assert m(x).shape == (2, 3)
    feats = timm.create_model("acmix_nas", features_only=True)(x)
    # the stem (/2), stage 0 (/2, it keeps the resolution) and stage 1 (/4): timm expects >= 3 levels
    assert [t.shape[-1] for t in feats] == [8, 8, 4]


def test_shift_init_survives_model_construction():
    arch = load_space(SPACES / "cifar_resnet.yaml").point(op="acmix", width_mult=0.5, depth=1)
    m = create_model(arch)
    mods = [mod for mod in m.modules() if isinstance(mod, ACmix)]
    assert len(mods) == arch.num_acmix == 4
    for mod in mods:
        assert torch.equal(mod.dep_conv.weight, shift_kernels(mod.kernel_conv, mod.out_planes))
        assert mod.rate1.item() == mod.alpha and mod.rate2.item() == mod.beta


def test_local_dir_round_trip(tmp_path):
    arch = load_space(SPACES / "digits.yaml").reference_points()["paper"]
    m = create_model(arch, num_classes=10)
    cfg = dict(architecture="acmix_nas", num_classes=10, model_args=model_args(m), pretrained_cfg=m.pretrained_cfg)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m2 = timm.create_model(f"local-dir:{tmp_path}", pretrained=False)
    assert m2.arch == arch and m2.num_classes == 10
    m2.load_state_dict(m.state_dict())
    x = torch.randn(1, 1, 16, 16)
    torch.testing.assert_close(m.eval()(x), m2.eval()(x))


@pytest.mark.parametrize("name, size", [("digits", 16), ("cifar_resnet", 32)])
def test_sampled_architectures_build(name, size):
    space = load_space(SPACES / f"{name}.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(6 if name == "digits" else 2):
        trial = study.ask()
        arch = space.sample(trial)
        m = create_model(Arch.from_json(arch.to_json()), num_classes=10).eval()
        with torch.inference_mode():
            assert m(torch.randn(1, arch.in_chans, size, size)).shape == (1, 10)
        study.tell(trial, 0.0)
