"""Exports of a promoted run: a promoted front point ships the weights of its promoted training, and
its card says which training scored it (rung, images, epochs, seeds) beside the proxy's score."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nas.export.cli import main
from nas.net.arch import Arch
from nas.run.archive import aggregate
from nas.run.folder import RunFolder
from nas.search.promote import rung_weights
from nas.search.rungs import run_ladder
from nas.trial import TrialSettings, evaluate
from runs import PROXY


def promote_by_hand(small_run: Path, path: Path, seeds: tuple[int, ...] = (0, 1)) -> RunFolder:
    """A copy of the small run with its two most accurate complete architectures trained again at rung 1
    (all of the data the proxy subset came from, 2 more epochs), each seed recorded with `rung: 1`
    and the first seed's weights kept, as `nas.search.promote` records them."""
    run = RunFolder(shutil.copytree(small_run, path))
    config = run.config()
    done = [a for a in aggregate(run.trials()) if a.status == "complete"]
    top = sorted(done, key=lambda a: -float(a.accuracy))[:2]
    rung = replace(PROXY, subset=None, epochs=PROXY.epochs + 2)
    data = rung.load_data(seed=0)
    config.ladder = run_ladder(config, PROXY.epochs + 2)
    config.ladder[1]["train_images"] = len(data.train_y)  # as the promotion writes it once its data loaded
    run.write_config(config)
    settings = TrialSettings(proxy=rung, num_classes=data.num_classes, measure=())
    number = len(run.trials())
    for a in top:
        for seed in seeds:
            result = evaluate(Arch.from_dict(a.arch), data, settings, seed=seed)
            rec = result.record
            rec.number, rec.seed, rec.rung = number, seed, 1
            if seed == seeds[0]:
                rec.weights = f"weights/{rung_weights(a.arch_id, 1)}.safetensors"
                state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
                save_file(state, str(run.path / rec.weights))
            run.append(rec)
            number += 1
    run.write_pareto()
    return run


@pytest.fixture(scope="module")
def promoted(small_run, tmp_path_factory):
    return promote_by_hand(small_run, tmp_path_factory.mktemp("promoted") / "run")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_a_promoted_point_ships_its_promoted_weights_and_says_which_training_scored_it(promoted, tmp_path):
    summary = promoted.write_pareto()
    assert summary["rung"] == 1
    knee_out = tmp_path / "max"
    assert main([str(promoted.path), "--pick", "max-accuracy", "--out", str(knee_out)]) == 0
    best = max(summary["front"], key=lambda p: p["accuracy"])
    kept = _weights(promoted.path / "weights" / f"{rung_weights(best['arch_id'], 1)}.safetensors")
    shipped = _weights(knee_out / "model.safetensors")
    assert kept.keys() == shipped.keys() and all(torch.equal(kept[k], shipped[k]) for k in kept)
    proxy = _weights(promoted.weights_path(best["arch_id"]))
    assert any(not torch.equal(proxy[k], shipped[k]) for k in proxy)  # not the proxy's
    card = (knee_out / "README.md").read_text()
    images = promoted.config().ladder[1]["train_images"]
    assert f"rung 1, promoted: all {images:,} training images, {PROXY.epochs + 2} epochs, 16px, seeds 0, 1" in card
    assert "these weights (seed 0, rung 1, promoted)" in card
    assert "validation accuracy by the search's proxy (rung 0, 1 seeds)" in card
    assert "This architecture was promoted and scored by rung 1" in card


def test_an_architecture_not_promoted_ships_the_proxys_weights_and_says_so(promoted, tmp_path):
    rungs = {r.arch_id: r.rung for r in promoted.trials()}
    promoted_ids = {a for a, k in rungs.items() if k == 1}
    done = [r for r in promoted.trials() if r.status == "complete" and r.arch_id not in promoted_ids]
    other = done[0].arch_id
    out = tmp_path / "other"
    assert main([str(promoted.path), "--arch-id", other, "--out", str(out)]) == 0
    proxy = _weights(promoted.weights_path(other))
    shipped = _weights(out / "model.safetensors")
    assert all(torch.equal(proxy[k], shipped[k]) for k in proxy)
    card = (out / "README.md").read_text()
    assert "rung 0, the proxy: " in card and "promoted and scored" not in card
