"""The model card (README.md of an export): use, metrics, place on the front, per-block map, data,
versions; and the value formats the card and the CLI share (`value_text`, `accuracy_text`).

The per-block map comes from nas.net.model.block_map; the front and ranks from nas.run.pareto.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.export.selection import Selection
from nas.net.arch import Arch
from nas.net.model import block_map, rates_of
from nas.run import pareto
from nas.run.folder import ArchResult, RunConfig, RunFolder, TrialRecord, aggregate, records_of
from nas.run.ladder import rung_of
from nas.run.pareto import OBJECTIVES
from nas.search.rungs import rung_name, scored_by


def accuracy_text(selection: Selection) -> str:
    """The accuracy the selection was made by: the architecture's mean ± standard error over its
    seeds, as the front table shows it (one seed: that accuracy, and so)."""
    a = selection.arch
    if a is None or a.accuracy is None:
        return value_text(selection.record.accuracy)
    return _acc(a)


def value_text(v: Any, unit: str = "") -> str:
    """A value for the card and the CLI: '–' if missing, 'n/a' if not finite, large ints in
    thousands or millions, floats to 4 significant digits; `unit` appended."""
    if v is None:
        return "–"
    if isinstance(v, float) and not math.isfinite(v):
        return "n/a"
    if isinstance(v, int) and abs(v) >= 1000:
        return f"{v / 1e6:.3f} M{unit}" if abs(v) >= 1e5 else f"{v:,}{unit}"
    if isinstance(v, float):
        return f"{v:.4g}{unit}"
    return f"{v}{unit}"


def _acc(a: ArchResult) -> str:
    """'0.9812 ± 0.0021 (3 seeds)', or the single seed's value."""
    if a.accuracy is None:
        return "–"
    se = f" ± {a.accuracy_se:.4f}" if a.accuracy_se is not None else ""
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
        return [o for o in self.objectives if o != "accuracy"]


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
    return "\n".join(lines)


def _card_title(card: _Card) -> list[str]:
    """The card's front matter (library, license, tags), title, provenance and the arch summary."""
    r, config = card.record, card.config
    reference = ", reference point " + r.reference if r.reference else ""
    return [
        "---",
        "library_name: timm",
        "license: mit",
        "tags: [image-classification, timm, acmix, acmix-nas]",
        "---",
        f"# acmix_nas {r.arch_id}",
        "",
        f"A hybrid convolution/self-attention (ACmix) network found by acmix-nas run `{config.name or card.run.path.name}` "
        f"(trial #{r.number}{reference}), selected by: {card.selection.how}.",
        "",
        f"`{card.arch.summary()}`",
        "",
    ]


def _card_use(out: Path) -> list[str]:
    """## Use: how to load the folder with timm."""
    return [
        "## Use",
        "",
        "```python",
        "import timm, nas  # importing nas registers the acmix_nas architecture",
        f"model = timm.create_model('local-dir:{out}', pretrained=True).eval()",
        "cfg = timm.data.resolve_data_config({}, model=model)  # input size, mean/std of the run's data",
        "```",
        "",
    ]


def _card_metrics(card: _Card, retrained: dict[str, Any] | None) -> list[str]:
    """## Metrics: accuracy (mean over seeds and of these weights), costs, and after retraining."""
    r = card.record
    lines = [
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
        f"| validation accuracy ({scored_by(card.config.ladder, card.mine)}; mean over seeds) | {_acc(card.mine)} |",
        f"| validation accuracy of these weights (seed {r.seed}, {rung_name(rung_of(r))}) | {value_text(r.accuracy)} |",
        f"| parameters | {value_text(r.params)} |",
        f"| MACs (one image) | {value_text(r.macs)} |",
        f"| latency | {value_text(r.latency_ms, ' ms')} |",
        f"| peak memory | {value_text(r.memory_mb, ' MB')} |",
        f"| training time of these weights | {value_text(r.train_seconds, ' s')} |",
    ]
    if card.mine.rung > 0:
        proxy = [float(x.accuracy) for x in card.mine.records if rung_of(x) == 0 and x.status == "complete"]
        mean = sum(proxy) / len(proxy) if proxy else None
        lines.append(f"| validation accuracy by the search's proxy (rung 0, {len(proxy)} seeds) | {value_text(mean)} |")
    if retrained:
        lines += [
            f"| validation accuracy after {retrained['epochs']} more epochs | {value_text(retrained['val_acc'])} |",
            f"| test accuracy after retraining | {value_text(retrained['test_acc'])} |",
        ]
    return lines + [
        "",
        "Accuracy is measured on a seeded validation split of the training images, as the mean over "
        "the seeds this architecture was trained with ± its standard error, at the highest rung of "
        "the fidelity ladder it reached (rung 0: the search's short proxy; rung 1: the deployment-like "
        "training the front was promoted to); proxy accuracies rank architectures and are not final "
        "accuracies.",
        "",
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
            f"{len(front)}" + (f", ordered by {cost}" if cost else "")
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
        "## Place on the front",
        "",
        f"Objectives: {', '.join(f'{o} ({OBJECTIVES[o][1]})' for o in objectives)}. "
        f"This network is {_place(card)}. The run has {len(card.records)} trials.",
        "",
    ]
    if card.front:
        lines += [
            "| # | arch id | accuracy | " + " | ".join(card.costs) + " |",
            "|---|---|---|" + "---|" * (len(objectives) - 1),
        ]
        for i, f in enumerate(card.front, 1):
            mark = " **(this)**" if f.number == card.mine.number else ""
            lines.append(
                f"| {i} | {f.arch_id}{mark} | {_acc(f)} | "
                + " | ".join(value_text(f.value(o)) for o in card.costs)
                + " |"
            )
        lines.append("")
    return lines


def _card_architecture(card: _Card, model: nn.Module) -> list[str]:
    """## Architecture: one table row per block, with the learned α/β of the exported weights."""
    lines = [
        "## Architecture",
        "",
        "Per block (α: weight of the attention branch, β: of the convolution branch; "
        "learned values from the exported weights):",
        "",
        "| stage | block | kind | op | width | stride | output | kernel | heads | k_att | k_conv | α | β |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in block_map(card.arch, rates_of(model)):
        a = lambda k: value_text(b[k]) if b[k] is not None else ""  # noqa: E731
        lines.append(
            f"| {b['stage']} | {b['index']} | {b['block']} | {b['op']} | {b['width']} | {b['stride']} | "
            f"{b['feat_size'][0]}x{b['feat_size'][1]} | {a('kernel')} | {a('heads')} | {a('k_att')} | "
            f"{a('k_conv')} | {a('alpha')} | {a('beta')} |"
        )
    return lines + [
        "",
        "The full description is `model_args.arch` in config.json (nas.net.arch.Arch.from_dict).",
        "",
    ]


def _card_data(card: _Card, retrained: dict[str, Any] | None) -> list[str]:
    """## Data: the dataset, its splits, input size and normalisation, the proxy training, and
    the retraining if there was one."""
    data, arch = card.config.data, card.arch
    lines = [
        "## Data",
        "",
        f"Trained on `{data.dataset}` ({data.num_classes} classes, "
        f"{data.train_images} training / {data.val_images} validation images), "
        f"input {data.in_chans}x{data.image_size or arch.input_size[0]}"
        f"x{data.image_size or arch.input_size[1]}, normalised with mean {data.mean} and std "
        f"{data.std} (pretrained_cfg). Proxy training: "
        + ", ".join(f"{k}={v}" for k, v in card.config.proxy.to_dict().items())
        + ".",
        "",
    ]
    if card.mine.rung > 0:
        lines += [f"This architecture was promoted and scored by {scored_by(card.config.ladder, card.mine)}.", ""]
    if retrained:
        lines += [
            f"Retrained for {retrained['epochs']} more epochs on {retrained['train_images']} images of "
            f"`{retrained['dataset']}` ({retrained['seconds']:.1f} s).",
            "",
        ]
    return lines


def _card_versions(config: RunConfig) -> list[str]:
    """## Versions: the packages at search time beside those at export time, and the search's settings."""
    import platform

    import timm

    versions = dict(config.versions)
    now = {"torch": str(torch.__version__), "timm": timm.__version__, "python": platform.python_version()}
    lines = ["## Versions", "", "| package | search | export |", "|---|---|---|"]
    for k in sorted(set(versions) | set(now)):
        lines.append(f"| {k} | {versions.get(k, '–')} | {now.get(k, '–')} |")
    return lines + [
        "",
        f"Search: sampler {config.sampler}, seed {config.seed}, space "
        f"`{config.space_file or '?'}`, device {config.device}.",
        "",
    ]
