"""Take one network out of a run: a timm local folder that `timm.create_model` loads.

    python -m nas.export results/RUN                      # the knee of the Pareto front
    python -m nas.export results/RUN --pick max-accuracy  # or min-cost
    python -m nas.export results/RUN --max-macs 2M        # the most accurate front point within a limit
    python -m nas.export results/RUN --arch-id 3f2a9c01b7de --retrain-epochs 20

writes results/RUN/exports/<arch id>/ (or --out DIR):

    config.json         timm's config: architecture 'acmix_nas', num_classes, model_args {'arch': ...},
                        pretrained_cfg (input size, the run's mean/std, interpolation, crop_pct,
                        first_conv, classifier), written by timm's own `save_config_for_hf`
    model.safetensors   the trained proxy's state_dict (after --retrain-epochs, if given)
    README.md           a model card: metrics, place on the front, per-block map, data, versions

and, in any Python process:

    >>> import timm, nas                 # importing nas registers acmix_nas with timm
    >>> model = timm.create_model('local-dir:results/RUN/exports/<arch id>', pretrained=True)
    >>> model = nas.export.load_exported('results/RUN/exports/<arch id>')   # the same, checked

Selection (among complete, feasible trials with every objective measured, see `pareto.candidates`):
  * knee: on the Pareto front, each objective is rescaled to [0, 1] over the front as a loss
    (1 − accuracy; costs as they are), and the knee is the front point closest (Euclidean) to the
    ideal point (0, …, 0), i.e. to "best accuracy at the lowest cost at once". Ties: higher
    accuracy, then lower trial number. A one- or two-point front gives its most accurate point.
  * max-accuracy / min-cost: the front's most accurate point / the front's point of lowest first
    cost objective (run.yaml `objectives[1]`).
  * --max-macs/--max-params/--max-latency-ms/--max-memory-mb keep the trials within the limits
    first; then the pick (default max-accuracy) applies to the front of what is left.

Ranks, the front and the knee come from nas.run.pareto; the per-block map from nas.net.model.block_map.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.cli import EXIT_INTERRUPTED, ArgumentParser, amount, fault_exit
from nas.errors import NasError
from nas.net.arch import Arch, ArchError
from nas.net.model import block_map, rates_of
from nas.run import pareto
from nas.run.files import folder_written_whole, occupied, save_safetensors
from nas.run.folder import ArchResult, RunConfig, RunError, RunFolder, TrialRecord, aggregate, records_of
from nas.run.pareto import OBJECTIVES

__all__ = [
    'PICKS',
    'LIMITS',
    'ExportError',
    'Selection',
    'select',
    'load_checked',
    'load_exported',
    'export',
    'export_onnx',
    'model_card',
    'main',
]

PICKS = ('knee', 'max-accuracy', 'min-cost')
# CLI limit -> objective name (results.OBJECTIVES)
LIMITS = {o.limit: name for name, o in OBJECTIVES.items() if o.limit}
CONFIG, WEIGHTS_FILE, CARD = 'config.json', 'model.safetensors', 'README.md'
EXPORTS = 'exports'


class ExportError(NasError):
    """A user error of export or load: its str is one line naming the problem."""


# ---------------------------------------------------------------------------------- picks


def _max_accuracy(front: Sequence[ArchResult], cost: str | None) -> ArchResult:
    """The front's most accurate point; ties: lower `cost`, then lower trial number."""
    return min(front, key=lambda r: (-float(r.value('accuracy')), float(r.value(cost)) if cost else 0.0, r.number))


def _min_cost(front: Sequence[ArchResult], cost: str) -> ArchResult:
    """The front's point of lowest `cost`; ties: higher accuracy, then lower trial number."""
    return min(front, key=lambda r: (float(r.value(cost)), -float(r.value('accuracy')), r.number))


@dataclass
class Selection:
    """A selected architecture and why: `record` is the evaluation whose weights are exported,
    `arch` the architecture over all its seeds (its mean accuracy and standard error); `how` is
    'arch id', 'knee', 'max-accuracy' or 'min-cost' (with limits); `front` the front of
    architecture means it was picked from (empty for an arch id)."""

    record: TrialRecord
    how: str
    front: list[ArchResult] = field(default_factory=list)
    arch: ArchResult | None = None


def select(
    records: Sequence[TrialRecord],
    objectives: Sequence[str],
    *,
    arch_id: str | None = None,
    pick: str | None = None,
    limits: dict[str, float] | None = None,
    has_weights: Callable[[TrialRecord], bool] = lambda r: True,
) -> Selection:
    """Choose the trial to export (see the module docstring).

    Args:
        records: the run's trials (RunFolder.trials()); picks compare architectures by their
            mean accuracy over seeds (results.aggregate).
        objectives: the run's objectives, accuracy first.
        arch_id: an architecture id or a unique prefix of one; excludes `pick` and `limits`.
        pick: 'knee', 'max-accuracy' or 'min-cost'; None: knee, or max-accuracy under limits.
        limits: objective name ('macs', 'params', 'latency', 'memory') -> largest allowed value.
        has_weights: whether a record's trained weights exist.

    Raises:
        ExportError: no such arch id, no trial within the limits, no weights.
    """
    limits = {k: v for k, v in (limits or {}).items() if v is not None}
    if arch_id is not None:
        if pick or limits:
            raise ExportError("--arch-id selects one trial: give it without --pick or --max-* limits")
        return _select_arch_id(records, arch_id, has_weights)
    if pick is not None and pick not in PICKS:
        raise ExportError(f"--pick must be one of {', '.join(PICKS)}, got {pick!r}")
    pick = pick or ('max-accuracy' if limits else 'knee')
    cands = _within_limits(pareto.candidates(aggregate(records), objectives), limits)
    if not cands:
        raise ExportError(f"no complete, feasible trial{_limits_text(limits)} in this run ({len(records)} trials)")
    front = pareto.front(cands, objectives)
    chosen = _pick_on_front(front, objectives, pick)
    if not has_weights(chosen.record):
        raise ExportError(
            f"the {pick} trial {chosen.arch_id} (#{chosen.number}) has no trained weights "
            f"(pruned?); pick another with --arch-id"
        )
    return Selection(chosen.record, pick + _limits_text(limits), front, arch=chosen)


def _select_arch_id(
    records: Sequence[TrialRecord], arch_id: str, has_weights: Callable[[TrialRecord], bool]
) -> Selection:
    """The architecture named by `arch_id` (or a unique prefix): its first complete evaluation
    with weights, else its first evaluation with weights."""
    try:
        same = records_of(records, arch_id)
    except RunError as e:
        raise ExportError(str(e)) from None
    usable = [r for r in same if has_weights(r)]
    if not usable:
        raise ExportError(f"trial {same[0].arch_id} ({same[-1].status}) has no trained weights to export")
    best = [r for r in usable if r.status == 'complete'] or usable
    return Selection(best[0], 'arch id', arch=ArchResult(same))


def _within_limits(cands: list[ArchResult], limits: dict[str, float]) -> list[ArchResult]:
    """The candidates whose every limited objective is measured and at most its limit.

    Raises:
        ExportError: a limit on an unknown objective, or on one no candidate has measured.
    """
    for obj, limit in limits.items():
        if obj not in OBJECTIVES or obj == 'accuracy':
            raise ExportError(f"unknown limit objective {obj!r}")
        measured = [r for r in cands if r.value(obj) is not None]
        if cands and not measured:
            raise ExportError(f"no trial of this run has {obj} measured; cannot apply a --max-{obj} limit")
        cands = [r for r in measured if float(r.value(obj)) <= limit]
    return cands


def _limits_text(limits: dict[str, float]) -> str:
    """' within macs <= 2e+06, params <= 5000' (what the selection says of its limits), or ''."""
    return f" within {', '.join(f'{k} <= {v:g}' for k, v in limits.items())}" if limits else ''


def _pick_on_front(front: list[ArchResult], objectives: Sequence[str], pick: str) -> ArchResult:
    """The front point `pick` names ('knee', 'max-accuracy' or 'min-cost'); the cost of
    max-accuracy's tie-break and of min-cost is the first cost objective."""
    costs = [o for o in objectives if o != 'accuracy']
    if pick == 'knee':
        return pareto.knee(front, objectives)
    if pick == 'max-accuracy':
        return _max_accuracy(front, costs[0] if costs else None)
    if not costs:
        raise ExportError("--pick min-cost needs a cost objective; this run only has accuracy")
    return _min_cost(front, costs[0])


# ---------------------------------------------------------------------------------- weights


def load_checked(model: nn.Module, path: Path, what: str | None = None) -> None:
    """Load a safetensors state_dict into `model` after checking every key and shape, so a file
    that does not fit raises ExportError with one line instead of a page of size mismatches."""
    from safetensors import SafetensorError, safe_open

    what = what or str(path)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework='pt') as f:
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

    model.load_state_dict(load_file(str(path), device='cpu'), strict=True)


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
        if cfg.get('architecture') != 'acmix_nas':
            raise ExportError(f"{cfg_path}: architecture is {cfg.get('architecture')!r}, not 'acmix_nas'")
        model = timm.create_model(f'local-dir:{path}', pretrained=False)
    except ExportError:
        raise
    except (json.JSONDecodeError, ArchError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise ExportError(f"{cfg_path}: cannot build the model ({str(e).splitlines()[0]})") from None
    load_checked(model, weights, f"{weights}")
    return model.eval()


# ---------------------------------------------------------------------------------- the export


@dataclass
class ExportResult:
    """What `export` wrote and measured."""

    path: Path
    record: TrialRecord
    how: str
    retrained: dict[str, Any] | None  # epochs, val_acc, test_acc, seconds after --retrain-epochs
    max_abs_diff: float  # reloaded (timm local-dir) vs exported outputs on a random batch
    seconds: float


def _data_cfg(config: RunConfig, arch: Arch) -> dict[str, Any]:
    """The run's preprocessing as timm data_config: input size, mean/std, interpolation, crop."""
    data = config.data
    size = data.image_size or list(arch.input_size)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    out = dict(
        input_size=(int(data.in_chans), int(h), int(w)), interpolation='bilinear', crop_pct=1.0, crop_mode='center'
    )
    if data.mean and data.std:
        out.update(mean=tuple(float(v) for v in data.mean), std=tuple(float(v) for v in data.std))
    return out


def _retrain(model: nn.Module, config: RunConfig, epochs: int, data_dir: Path | None, device: str) -> dict[str, Any]:
    """Continue training with the run's proxy hyper-parameters for `epochs` on the run's full
    training split (a fresh warm-up and cosine schedule). Prints one line per epoch."""
    from nas.data import DataError
    from nas.train.loop import TrainConfig, accuracy_and_loss, train

    name = config.data.dataset or config.proxy.dataset
    proxy = replace(config.proxy, dataset=name, image_size=config.data.image_size, subset=None, epochs=epochs)
    dev = 'cuda' if device == 'auto' and torch.cuda.is_available() else ('cpu' if device == 'auto' else device)
    try:
        ds = proxy.load_data(data_dir or config.options.get('data_dir'), seed=config.seed, device=dev)
    except DataError as e:
        raise ExportError(f"--retrain-epochs: {e}") from None
    if config.data.mean and not np.allclose(ds.mean, config.data.mean, atol=1e-4):
        print(f"warning: {name} now normalises with mean {ds.mean}, the run used {config.data.mean}", file=sys.stderr)
    cfg = TrainConfig.of_proxy(proxy, seed=config.seed, device=dev)
    t0 = time.perf_counter()
    last = None
    for r in train(model, ds, cfg):
        print(
            f"retrain epoch {r.epoch}/{epochs}: loss {r.train_loss:.4f}, val acc {r.val_acc:.4f} ({r.seconds:.1f} s)",
            flush=True,
        )
        if r.status == 'failed':
            raise ExportError(f"--retrain-epochs: training failed ({r.reason})")
        last = r
    test_acc, _ = accuracy_and_loss(model, ds.test_x, ds.test_y)
    model.to('cpu')
    return dict(
        epochs=epochs,
        dataset=name,
        train_images=len(ds.train_y),
        val_acc=last.val_acc if last else None,
        test_acc=test_acc,
        seconds=time.perf_counter() - t0,
    )


ONNX_FILE, ONNX_RTOL = 'model.onnx', 1e-4


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
        warnings.simplefilter('ignore')  # tracer warnings about the size-dependent tiling, expected
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=['input'],
            output_names=['output'],
            dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}},
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    diff = float(np.abs(got - expected).max()) / max(float(np.abs(expected).max()), 1e-12)
    if got.shape != expected.shape or not diff <= ONNX_RTOL:
        raise ExportError(f"{path}: onnxruntime gives different outputs (max |diff| {diff:.3g} of the output scale)")
    return path


def export(
    run: RunFolder,
    selection: Selection,
    out: Path | None = None,
    *,
    retrain_epochs: int = 0,
    data_dir: Path | None = None,
    device: str = 'auto',
    force: bool = False,
) -> ExportResult:
    """Write the selected trial as a timm local folder (config.json, model.safetensors,
    README.md) and check that timm reloads it to the same outputs.

    The folder is written whole (a temp folder beside it, then a rename): a failure leaves what
    was there before as it was. A non-empty `out` is refused (ExportError) unless `force`."""
    import timm
    from timm.models._hub import save_config_for_hf

    from nas.net.model import create_model, model_args

    t0 = time.perf_counter()
    config = run.config()
    record = selection.record
    out = Path(out) if out else run.path / EXPORTS / record.arch_id
    if not force and occupied(out):
        raise ExportError(f"{occupied(out)}; refusing to overwrite it (use --force to replace it whole)")
    try:
        arch = Arch.from_dict(record.arch)
    except ArchError as e:
        raise ExportError(f"trial {record.arch_id}: bad architecture in trials.jsonl ({e})") from None
    num_classes = int(config.data.num_classes)
    weights = run.weights_of(record)
    if weights is None:
        raise ExportError(f"trial {record.arch_id} has no weights file in {run.path / 'weights'}")
    model = create_model(arch, num_classes=num_classes)
    load_checked(model, weights, f"{weights} (trial {record.arch_id}, num_classes {num_classes} from run.yaml)")
    retrained = _retrain(model, config, retrain_epochs, data_dir, device) if retrain_epochs > 0 else None
    model.eval()

    with folder_written_whole(out) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_safetensors(state, tmp / WEIGHTS_FILE, metadata={'format': 'pt', 'arch_id': record.arch_id})
        save_config_for_hf(model, str(tmp / CONFIG), model_args=model_args(model), data_config=_data_cfg(config, arch))

        # the promise of the folder: timm rebuilds the same function from it
        reloaded = timm.create_model(f'local-dir:{tmp}', pretrained=True).eval()
        x = torch.randn(
            2,
            *timm.data.resolve_data_config({}, model=reloaded)['input_size'],
            generator=torch.Generator().manual_seed(0),
        )
        with torch.no_grad():
            diff = float((reloaded(x) - model(x)).abs().max())
        (tmp / CARD).write_text(model_card(run, selection, model, retrained, out))
    return ExportResult(out, record, selection.how, retrained, diff, time.perf_counter() - t0)


def accuracy_text(selection: Selection) -> str:
    """The accuracy the selection was made by: the architecture's mean ± standard error over its
    seeds, as the front table shows it (one seed: that accuracy, and so)."""
    a = selection.arch
    if a is None or a.accuracy is None:
        return _fmt(selection.record.accuracy)
    return _acc(a)


def _fmt(v: Any, unit: str = '') -> str:
    """A value for the card and the CLI: '–' if missing, 'n/a' if not finite, large ints in
    thousands or millions, floats to 4 significant digits; `unit` appended."""
    if v is None:
        return '–'
    if isinstance(v, float) and not math.isfinite(v):
        return 'n/a'
    if isinstance(v, int) and abs(v) >= 1000:
        return f"{v / 1e6:.3f} M{unit}" if abs(v) >= 1e5 else f"{v:,}{unit}"
    if isinstance(v, float):
        return f"{v:.4g}{unit}"
    return f"{v}{unit}"


def _acc(a: ArchResult) -> str:
    """'0.9812 ± 0.0021 (3 seeds)', or the single seed's value."""
    if a.accuracy is None:
        return '–'
    se = f" ± {a.accuracy_se:.4f}" if a.accuracy_se is not None else ''
    return f"{a.accuracy:.4f}{se} ({a.seeds} seed{'s' if a.seeds != 1 else ''})"


@dataclass
class _Card:
    """What the sections of a model card read: the run, the exported trial and its place."""

    run: RunFolder
    config: RunConfig
    selection: Selection
    arch: Arch
    records: list[TrialRecord]
    front: list[ArchResult]
    ranks: dict[int, int]
    mine: ArchResult  # the exported architecture over all its seeds

    @property
    def record(self) -> TrialRecord:
        return self.selection.record

    @property
    def objectives(self) -> list[str]:
        return list(self.config.objectives)

    @property
    def costs(self) -> list[str]:
        return [o for o in self.objectives if o != 'accuracy']


def model_card(
    run: RunFolder, selection: Selection, model: nn.Module, retrained: dict[str, Any] | None, out: Path
) -> str:
    """README.md of an export: use, metrics, place on the front, per-block map, data, versions."""
    config = run.config()
    records = run.trials()
    archs = aggregate(records)
    r = selection.record
    card = _Card(
        run=run,
        config=config,
        selection=selection,
        arch=Arch.from_dict(r.arch),
        records=records,
        front=pareto.front(archs, list(config.objectives)),
        ranks=pareto.ranks(archs, list(config.objectives)),
        mine=selection.arch or ArchResult(records_of(records, r.arch_id)),
    )
    lines = [
        *_card_title(card),
        *_card_use(out),
        *_card_metrics(card, retrained),
        *_card_front(card),
        *_card_architecture(card, model),
        *_card_data(card, retrained),
        *_card_versions(card.config),
    ]
    return '\n'.join(lines)


def _card_title(card: _Card) -> list[str]:
    """The card's front matter (library, license, tags), title, provenance and the arch summary."""
    r, config = card.record, card.config
    reference = ', reference point ' + r.reference if r.reference else ''
    return [
        '---',
        'library_name: timm',
        'license: mit',
        'tags: [image-classification, timm, acmix, acmix-nas]',
        '---',
        f"# acmix_nas {r.arch_id}",
        '',
        f"A hybrid convolution/self-attention (ACmix) network found by acmix-nas run `{config.name or card.run.path.name}` "
        f"(trial #{r.number}{reference}), selected by: {card.selection.how}.",
        '',
        f"`{card.arch.summary()}`",
        '',
    ]


def _card_use(out: Path) -> list[str]:
    """## Use: how to load the folder with timm."""
    return [
        '## Use',
        '',
        '```python',
        "import timm, nas  # importing nas registers the acmix_nas architecture",
        f"model = timm.create_model('local-dir:{out}', pretrained=True).eval()",
        "cfg = timm.data.resolve_data_config({}, model=model)  # input size, mean/std of the run's data",
        '```',
        '',
    ]


def _card_metrics(card: _Card, retrained: dict[str, Any] | None) -> list[str]:
    """## Metrics: accuracy (mean over seeds and of these weights), costs, and after retraining."""
    r = card.record
    lines = [
        '## Metrics',
        '',
        '| metric | value |',
        '|---|---|',
        f"| validation accuracy (proxy, {r.epochs} epochs; mean over seeds) | {_acc(card.mine)} |",
        f"| validation accuracy of these weights (seed {r.seed}) | {_fmt(r.accuracy)} |",
        f"| parameters | {_fmt(r.params)} |",
        f"| MACs (one image) | {_fmt(r.macs)} |",
        f"| latency | {_fmt(r.latency_ms, ' ms')} |",
        f"| peak memory | {_fmt(r.memory_mb, ' MB')} |",
        f"| proxy training time | {_fmt(r.train_seconds, ' s')} |",
    ]
    if retrained:
        lines += [
            f"| validation accuracy after {retrained['epochs']} more epochs | {_fmt(retrained['val_acc'])} |",
            f"| test accuracy after retraining | {_fmt(retrained['test_acc'])} |",
        ]
    return lines + [
        '',
        'Accuracy is measured on a seeded validation split of the training images, as the mean over '
        'the seeds this architecture was trained with ± its standard error; proxy accuracies '
        'rank architectures and are not final accuracies.',
        '',
    ]


def _place(card: _Card) -> str:
    """Where the exported architecture stands: its point on the front (and whether it is the
    knee), else its non-domination rank, else that it is not ranked."""
    mine, front, objectives = card.mine, card.front, card.objectives
    on_front = [f.number for f in front]
    if mine.number in on_front:
        cost = card.costs[0] if card.costs else None
        place = (
            f"on the Pareto front of {', '.join(objectives)}: point {on_front.index(mine.number) + 1} of "
            f"{len(front)}" + (f", ordered by {cost}" if cost else '')
        )
        k = pareto.knee(front, objectives)
        if k is not None and k.number == mine.number:
            place += "; it is the front's knee"
        return place
    if mine.number in card.ranks:
        return f"not on the front: non-domination rank {card.ranks[mine.number]} (0 = the front)"
    return f"not ranked (status {mine.status})"


def _card_front(card: _Card) -> list[str]:
    """## Place on the front: the objectives, the exported network's place, the front's table."""
    objectives = card.objectives
    lines = [
        '## Place on the front',
        '',
        f"Objectives: {', '.join(f'{o} ({OBJECTIVES[o][1]})' for o in objectives)}. "
        f"This network is {_place(card)}. The run has {len(card.records)} trials.",
        '',
    ]
    if card.front:
        lines += [
            '| # | arch id | accuracy | ' + ' | '.join(card.costs) + ' |',
            '|---|---|---|' + '---|' * (len(objectives) - 1),
        ]
        for i, f in enumerate(card.front, 1):
            mark = ' **(this)**' if f.number == card.mine.number else ''
            lines.append(
                f"| {i} | {f.arch_id}{mark} | {_acc(f)} | " + ' | '.join(_fmt(f.value(o)) for o in card.costs) + ' |'
            )
        lines.append('')
    return lines


def _card_architecture(card: _Card, model: nn.Module) -> list[str]:
    """## Architecture: one table row per block, with the learned α/β of the exported weights."""
    lines = [
        '## Architecture',
        '',
        'Per block (α: weight of the attention branch, β: of the convolution branch; '
        'learned values from the exported weights):',
        '',
        '| stage | block | kind | op | width | stride | output | kernel | heads | k_att | k_conv | α | β |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for b in block_map(card.arch, rates_of(model)):
        a = lambda k: _fmt(b[k]) if b[k] is not None else ''  # noqa: E731
        lines.append(
            f"| {b['stage']} | {b['index']} | {b['block']} | {b['op']} | {b['width']} | {b['stride']} | "
            f"{b['feat_size'][0]}x{b['feat_size'][1]} | {a('kernel')} | {a('heads')} | {a('k_att')} | "
            f"{a('k_conv')} | {a('alpha')} | {a('beta')} |"
        )
    return lines + [
        '',
        'The full description is `model_args.arch` in config.json (nas.net.arch.Arch.from_dict).',
        '',
    ]


def _card_data(card: _Card, retrained: dict[str, Any] | None) -> list[str]:
    """## Data: the dataset, its splits, input size and normalisation, the proxy training, and
    the retraining if there was one."""
    data, arch = card.config.data, card.arch
    lines = [
        '## Data',
        '',
        f"Trained on `{data.dataset}` ({data.num_classes} classes, "
        f"{data.train_images} training / {data.val_images} validation images), "
        f"input {data.in_chans}x{data.image_size or arch.input_size[0]}"
        f"x{data.image_size or arch.input_size[1]}, normalised with mean {data.mean} and std "
        f"{data.std} (pretrained_cfg). Proxy training: "
        + ', '.join(f"{k}={v}" for k, v in card.config.proxy.to_dict().items())
        + '.',
        '',
    ]
    if retrained:
        lines += [
            f"Retrained for {retrained['epochs']} more epochs on {retrained['train_images']} images of "
            f"`{retrained['dataset']}` ({retrained['seconds']:.1f} s).",
            '',
        ]
    return lines


def _card_versions(config: RunConfig) -> list[str]:
    """## Versions: the packages at search time beside those at export time, and the search's settings."""
    import platform

    import timm

    versions = dict(config.versions)
    now = {'torch': str(torch.__version__), 'timm': timm.__version__, 'python': platform.python_version()}
    lines = ['## Versions', '', '| package | search | export |', '|---|---|---|']
    for k in sorted(set(versions) | set(now)):
        lines.append(f"| {k} | {versions.get(k, '–')} | {now.get(k, '–')} |")
    return lines + [
        '',
        f"Search: sampler {config.sampler}, seed {config.seed}, space "
        f"`{config.space_file or '?'}`, device {config.device}.",
        '',
    ]


# ---------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog='python -m nas.export',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description='Export one trial of a run as a timm local folder (config.json, model.safetensors, README.md); '
        "load it with timm.create_model('local-dir:DIR', pretrained=True) after `import nas`.",
    )
    ap.add_argument('run', type=Path, nargs='?', help='run folder, e.g. results/RUN')
    ap.add_argument('--arch-id', default=None, help='export this trial (an arch id or a unique prefix)')
    ap.add_argument(
        '--pick',
        choices=PICKS,
        default=None,
        help='which front point: knee (closest to the ideal point, objectives normalised over the '
        'front), max-accuracy or min-cost; None means knee, or max-accuracy under a --max-* limit',
    )
    ap.add_argument('--max-macs', type=amount, default=None, help='only trials with at most this many MACs (2e6, 2M)')
    ap.add_argument('--max-params', type=amount, default=None, help='only trials with at most this many parameters')
    ap.add_argument('--max-latency-ms', type=amount, default=None, help='only trials at most this slow (ms)')
    ap.add_argument('--max-memory-mb', type=amount, default=None, help='only trials with at most this peak memory (MB)')
    ap.add_argument('--out', type=Path, default=None, help='output folder; None means RUN/exports/<arch id>')
    ap.add_argument(
        '--force', action='store_true', help='replace a non-empty output folder (whole: its old files do not stay)'
    )
    ap.add_argument(
        '--retrain-epochs',
        type=int,
        default=0,
        help="train this many more epochs on the run's dataset (proxy hyper-parameters) before saving",
    )
    ap.add_argument('--data-dir', type=Path, default=None, help='dataset folder for --retrain-epochs (not for digits)')
    ap.add_argument('--device', default='auto', help='device for --retrain-epochs: auto, cpu, cuda, cuda:1')
    ap.add_argument(
        '--onnx',
        action='store_true',
        help="also write model.onnx beside model.safetensors, checked with onnxruntime (extra 'onnx')",
    )
    ap.add_argument(
        '--check',
        type=Path,
        default=None,
        metavar='DIR',
        help='only check that an exported folder loads (weights match config.json) and exit',
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    """`python -m nas.export`: select, export and check one trial of a run (or --check a folder).
    Exit codes: 0 written, 1 timm reloads it differently, 2 a user error, fault_exit's for an OSError."""
    args = _parser().parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if args.check is not None:
            return _check(args.check)
        res = _export_of_args(args)
    except (ExportError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only run folder, a full disk: the export folder is written whole or not at all
        where = e.filename or args.out or args.run
        print(
            f"error: {where}: {e.strerror or e}; nothing was written"
            + ('' if args.out else '; give --out DIR to write the export elsewhere'),
            file=sys.stderr,
        )
        return fault_exit(e)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    return _report(res)


def _check(path: Path) -> int:
    """--check: load an exported folder (weights checked against config.json) and say what it holds."""
    model = load_exported(path)
    n = sum(p.numel() for p in model.parameters())
    print(f"{path}: ok, acmix_nas {model.arch.arch_id}, {n:,} parameters, {model.num_classes} classes")
    return 0


def _export_of_args(args: argparse.Namespace) -> ExportResult:
    """The CLI's export: check the arguments, select the trial (and say which), write the folder,
    and with --onnx the checked model.onnx beside it.

    Raises:
        ExportError, RunError: a user error (exit 2); OSError: a folder that cannot be written.
    """
    if args.run is None:
        raise ExportError("give a run folder (python -m nas.export results/RUN) or --check DIR")
    if args.retrain_epochs < 0:
        raise ExportError(f"--retrain-epochs must be >= 0, got {args.retrain_epochs}")
    run = RunFolder(args.run).require()
    records = run.trials()
    if not records:
        raise ExportError(f"{run.path}: no finished trials yet")
    selection = select(
        records,
        run.objectives(),
        arch_id=args.arch_id,
        pick=args.pick,
        limits={obj: getattr(args, flag) for flag, obj in LIMITS.items()},
        has_weights=lambda r: run.weights_of(r) is not None,
    )
    r = selection.record
    print(
        f"selected {r.arch_id} (trial #{r.number}, {selection.how}): accuracy {accuracy_text(selection)}, "
        f"{_fmt(r.macs)} MACs, {_fmt(r.params)} params",
        flush=True,
    )
    res = export(
        run,
        selection,
        args.out,
        retrain_epochs=args.retrain_epochs,
        data_dir=args.data_dir,
        device=args.device,
        force=args.force,
    )
    if args.onnx:
        exported = load_exported(res.path)
        onnx_path = export_onnx(exported, res.path / ONNX_FILE, tuple(exported.pretrained_cfg['input_size']))
        print(f"wrote {onnx_path}; onnxruntime gives the same outputs (within {ONNX_RTOL:g} of their scale)")
    return res


def _report(res: ExportResult) -> int:
    """The CLI's last lines: what was written and how to load it (0), or that timm reloads the
    folder to different outputs (1)."""
    if res.max_abs_diff > 1e-5:
        print(
            f"error: {res.path}: timm reloads it to different outputs (max |diff| {res.max_abs_diff:.3g})",
            file=sys.stderr,
        )
        return 1
    print(
        f"wrote {res.path} (config.json, model.safetensors, README.md) in {res.seconds:.1f} s; "
        f"timm reloads it to the same outputs"
    )
    print(f"  import timm, nas; timm.create_model({'local-dir:' + str(res.path)!r}, pretrained=True)")
    return 0
