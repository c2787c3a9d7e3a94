"""Deployability: the checks of timm's model test-suite on our registered names (forward, backward,
features, torch.fx, fx backward, TorchScript, fx + TorchScript), torch.compile with no graph break,
torch.export, and ONNX through onnxruntime. Small inputs keep it CPU-fast; timm's own suite
(tests/test_models.py of its sdist, run with -k acmix) checks the same at its sizes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.models import create_feature_extractor, get_graph_node_names

import nas  # noqa: F401  (registers the timm models)
from nas.net.acmix import ACmix

NAMES = ["acmix_nas", "acmix_resnet26", "acmix_resnet38", "acmix_resnet50"]


def small_input(model: torch.nn.Module, batch: int = 2) -> torch.Tensor:
    c, h, w = model.pretrained_cfg["input_size"]
    return torch.randn(batch, c, min(h, 64), min(w, 64), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_and_features(name):
    model = timm.create_model(name, num_classes=5)
    x = small_input(model)
    y = model(x)
    assert y.shape == (2, 5) and torch.isfinite(y).all()
    y.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    feats = timm.create_model(name, features_only=True).eval()
    channels, reductions = feats.feature_info.channels(), feats.feature_info.reduction()
    assert len(channels) >= 3  # timm's contract for default feature levels
    outs = feats(x)
    assert [o.shape[1] for o in outs] == channels
    assert [o.shape[-1] for o in outs] == [-(-x.shape[-1] // r) for r in reductions]


@pytest.mark.parametrize("name", ["acmix_nas"])  # the ResNets: timm's own suite (slow on CPU)
def test_fx_fx_backward_torchscript_and_fx_torchscript(name):
    model = timm.create_model(name).eval()
    x = small_input(model)
    with torch.no_grad():
        expected = model(x)
    # timm's fx feature extractor (what its fx tests use), its final node = the logits
    train_nodes, eval_nodes = get_graph_node_names(model)
    fx_model = create_feature_extractor(model, return_nodes=[eval_nodes[-1]])
    out = list(fx_model(x).values())[0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    fx_train = create_feature_extractor(model.train(), return_nodes=[train_nodes[-1]])
    list(fx_train(x).values())[0].mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        expected = model(x)  # the train-mode pass above updated BatchNorm's running statistics
        torch.testing.assert_close(torch.jit.script(model)(x), expected, rtol=1e-5, atol=1e-5)
        fx_script = torch.jit.script(create_feature_extractor(model, return_nodes=[eval_nodes[-1]]))
        torch.testing.assert_close(list(fx_script(x).values())[0], expected, rtol=1e-5, atol=1e-5)


def test_acmix_fx_trace_runs_other_sizes():
    # The tiling is an fx leaf: a graph traced once serves every input size and stride case.
    m = ACmix(16, 16, kernel_att=5, head=4, stride=2).eval()
    traced = torch.fx.symbolic_trace(m)
    for size in ((9, 8), (16, 16), (3, 5)):
        x = torch.randn(2, 16, *size)
        torch.testing.assert_close(traced(x), m(x))


def test_compile_fullgraph_has_no_graph_break():
    torch._dynamo.reset()
    m = ACmix(16, 16, kernel_att=3, head=4, stride=2).eval()
    x = torch.randn(2, 16, 9, 8)
    compiled = torch.compile(m, fullgraph=True, backend="eager")  # fullgraph: a graph break raises
    explanation = torch._dynamo.explain(m)(x)
    assert explanation.graph_break_count == 0
    torch.testing.assert_close(compiled(x), m(x))


def test_torch_export():
    model = timm.create_model("acmix_nas").eval()
    x = small_input(model)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)


def test_onnx_export_runs_in_onnxruntime_to_the_same_outputs(tmp_path):
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnxruntime

    from nas.export import ONNX_RTOL, export_onnx

    model = timm.create_model("acmix_nas").eval()
    path = export_onnx(model, tmp_path / "model.onnx", (1, 16, 16))
    assert path.is_file()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 16, 16)  # another batch size than the export's
    got = session.run(None, {"input": x.numpy()})[0]
    expected = model(x).detach().numpy()
    assert np.abs(got - expected).max() <= ONNX_RTOL * np.abs(expected).max()


TIMM_TESTS = os.environ.get("TIMM_TESTS", "")


def _timm_suite(tests: Path, *args: str) -> subprocess.CompletedProcess:
    """timm's tests/test_models.py -k acmix, with nas loaded as a pytest plugin (it registers our names
    before timm's suite lists the models to parametrize over)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(tests / "test_models.py"),
            "-k",
            "acmix",
            "-q",
            "-p",
            "nas",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=tests.parent,
    )


@pytest.mark.slow
@pytest.mark.skipif(
    not (Path(TIMM_TESTS) / "test_models.py").is_file(),
    reason="TIMM_TESTS does not point at the tests/ folder of a timm source distribution",
)
def test_timm_model_suite_passes_on_every_registered_name():
    # Get the suite with `pip download timm==<installed version> --no-binary :all: --no-deps` and unpack it;
    # TIMM_TESTS=<unpacked>/tests. Minutes on a CPU (the ResNets at timm's sizes).
    tests = Path(TIMM_TESTS)
    collected = [line for line in _timm_suite(tests, "--collect-only").stdout.splitlines() if "::" in line]
    kinds = {line.split("::")[1].split("[")[0] for line in collected}
    for name in NAMES:  # every name reaches every kind of test: none is filtered out by timm's exclusions
        assert sum(line.endswith(f"-{name}]") for line in collected) == len(kinds), name
    result = _timm_suite(tests)
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0 and summary.startswith(f"{len(collected)} passed"), result.stdout[-5000:]
