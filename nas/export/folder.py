"""An exported folder: its file names, `ExportError`, and loading it back with its weights checked.

    config.json         timm's config: architecture 'acmix_nas', num_classes, model_args {'arch': ...},
                        pretrained_cfg (input size, the run's mean/std, interpolation, crop_pct,
                        first_conv, classifier), written by timm's own `save_config_for_hf`
    model.safetensors   the trained proxy's state_dict (after --retrain-epochs, if given)
    README.md           a model card: metrics, place on the front, per-block map, data, versions

`load_exported` is `timm.create_model('local-dir:DIR', pretrained=True)` with the weights checked
against config.json first, so a folder that does not fit fails with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from nas.errors import NasError
from nas.net.arch import ArchError

CONFIG, WEIGHTS_FILE, CARD = "config.json", "model.safetensors", "README.md"
EXPORTS = "exports"


class ExportError(NasError):
    """A user error of export or load: its str is one line naming the problem."""


# ---------------------------------------------------------------------------------- weights


def load_checked(model: nn.Module, path: Path, what: str | None = None) -> None:
    """Load a safetensors state_dict into `model` after checking every key and shape, so a file
    that does not fit raises ExportError with one line instead of a page of size mismatches."""
    from safetensors import SafetensorError, safe_open

    what = what or str(path)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ExportError(f"{what}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or extra or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} tensors differ in shape (first: {k} is {list(found[k])} in the file, "
                f"{list(expected[k])} in the model)"
            )
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (first: {extra[0]})")
        raise ExportError(f"{what} does not match its architecture: {'; '.join(parts)}")
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path), device="cpu"), strict=True)


def load_exported(path: str | Path) -> nn.Module:
    """An exported folder as a timm model (eval mode), its weights checked against config.json.

    Equivalent to `timm.create_model('local-dir:PATH', pretrained=True)` for a good
    folder; a folder whose weights do not fit its config raises ExportError with one line.
    """
    import timm

    import nas.net.model  # noqa: F401  (registers acmix_nas)

    path = Path(path)
    cfg_path, weights = path / CONFIG, path / WEIGHTS_FILE
    if not cfg_path.is_file():
        raise ExportError(f"{path}: not an exported model (no {CONFIG})")
    if not weights.is_file():
        raise ExportError(f"{path}: no {WEIGHTS_FILE} (weights are saved as safetensors only)")
    try:
        cfg = json.loads(cfg_path.read_text())
        if not isinstance(cfg, dict):
            raise ExportError(f"{cfg_path}: expected a JSON object (timm's config), got {type(cfg).__name__}")
        if cfg.get("architecture") != "acmix_nas":
            raise ExportError(f"{cfg_path}: architecture is {cfg.get('architecture')!r}, not 'acmix_nas'")
        model = timm.create_model(f"local-dir:{path}", pretrained=False)
    except ExportError:
        raise
    except (json.JSONDecodeError, ArchError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise ExportError(f"{cfg_path}: cannot build the model ({str(e).splitlines()[0]})") from None
    load_checked(model, weights, f"{weights}")
    return model.eval()
