"""Take one network out of a run: a timm local folder that `timm.create_model` loads.

    python -m nas.export results/RUN                      # the knee of the Pareto front
    python -m nas.export results/RUN --pick max-accuracy  # or min-cost
    python -m nas.export results/RUN --max-macs 2M        # the most accurate front point within a limit
    python -m nas.export results/RUN --arch-id 3f2a9c01b7de --retrain-epochs 20

writes results/RUN/exports/<arch id>/ (or --out DIR): config.json, model.safetensors and README.md
(a model card), and, in any Python process:

    >>> import timm, nas                 # importing nas registers acmix_nas with timm
    >>> model = timm.create_model('local-dir:results/RUN/exports/<arch id>', pretrained=True)
    >>> model = nas.export.load_exported('results/RUN/exports/<arch id>')   # the same, checked

The package, bottom to top:

- `nas.export.folder`: the folder's files, `ExportError`, `load_checked` and `load_exported`;
- `nas.export.selection`: `select` (by arch id, a pick on the front: `PICKS`, or within `LIMITS`)
  and `Selection`;
- `nas.export.card`: `model_card`, the README.md of an export;
- `nas.export.onnx`: `export_onnx`, model.onnx checked against onnxruntime;
- `nas.export.build`: `export`, which writes the folder whole (retrained first if asked) and checks
  that timm reloads it to the same outputs (`ExportResult`);
- `nas.export.cli`: `python -m nas.export` (`main`).
"""

from nas.export.build import ExportResult, export
from nas.export.card import accuracy_text, model_card
from nas.export.cli import main
from nas.export.folder import CARD, CONFIG, EXPORTS, WEIGHTS_FILE, ExportError, load_checked, load_exported
from nas.export.onnx import ONNX_FILE, ONNX_RTOL, export_onnx
from nas.export.selection import LIMITS, PICKS, Selection, select

__all__ = [
    "PICKS",
    "LIMITS",
    "CONFIG",
    "WEIGHTS_FILE",
    "CARD",
    "EXPORTS",
    "ONNX_FILE",
    "ONNX_RTOL",
    "ExportError",
    "ExportResult",
    "Selection",
    "select",
    "load_checked",
    "load_exported",
    "export",
    "export_onnx",
    "accuracy_text",
    "model_card",
    "main",
]
