"""`export_onnx`: an exported network as ONNX, checked against onnxruntime (the optional extra `onnx`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas.export.folder import ExportError

ONNX_FILE, ONNX_RTOL = "model.onnx", 1e-4


def export_onnx(model: nn.Module, path: Path, input_size: tuple[int, int, int]) -> Path:
    """Write `model` (eval mode, batch 1 at `input_size` = (C, H, W), batch dimension dynamic) as ONNX
    to `path`, and check it with onnxruntime: its output must equal PyTorch's within ONNX_RTOL of the
    output's largest magnitude. Needs the optional extra `onnx` (onnx, onnxscript, onnxruntime).

    Raises:
        ExportError: the extra is missing, or onnxruntime's output differs.
    """
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("ONNX export needs the optional extra: pip install 'acmix-nas[onnx]'") from None
    path = Path(path)
    model = model.eval()
    x = torch.randn(1, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).numpy()
    # The TorchScript-tracing exporter: ~2 s for a digits model where the dynamo exporter takes ~40 s
    # on 2 CPU cores. Tracing fixes ACmix's tiling for this input size (H, W); the batch stays dynamic.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the size-dependent tiling, expected
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    diff = float(np.abs(got - expected).max()) / max(float(np.abs(expected).max()), 1e-12)
    if got.shape != expected.shape or not diff <= ONNX_RTOL:
        raise ExportError(f"{path}: onnxruntime gives different outputs (max |diff| {diff:.3g} of the output scale)")
    return path
