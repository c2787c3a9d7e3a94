"""Export a front point of a real (small) run as a timm folder and load it back."""

import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

import nas  # noqa: F401  (registers acmix_nas)
from nas.export import ExportError, load_exported, main, select
from nas.net.arch import Arch
from nas.net.model import create_model
from nas.run import pareto
from nas.run.folder import RunFolder, TrialRecord

ROOT = Path(__file__).resolve().parents[1]


def _rec(n: int, acc: float, macs: int, status: str = "complete", **kw) -> TrialRecord:
    return TrialRecord(number=n, arch_id=f"{n:012x}", arch={}, status=status, accuracy=acc, macs=macs, **kw)


def test_knee_ranks_and_picks_on_a_known_front():
    # front: (50%, 1M) (90%, 2M) (95%, 10M); dominated: (60%, 3M), (40%, 5M); failed, infeasible ignored
    recs = [
        _rec(0, 0.50, 1_000_000),
        _rec(1, 0.90, 2_000_000),
        _rec(2, 0.95, 10_000_000),
        _rec(3, 0.60, 3_000_000),
        _rec(4, 0.40, 5_000_000),
        _rec(5, None, 500_000, status="failed"),
        _rec(6, 0.99, 100, constraints=[2.0]),
    ]
    obj = ["accuracy", "macs"]
    front = pareto.front(recs, obj)
    assert [r.number for r in front] == [0, 1, 2]
    # min-max normalised losses: #0 (1, 0), #1 (0.111, 0.111), #2 (0, 1): #1 is closest to the ideal (0, 0)
    assert pareto.knee(front, obj).number == 1
    assert pareto.ranks(recs, obj) == {0: 0, 1: 0, 2: 0, 3: 1, 4: 2}
    assert select(recs, obj).record.number == 1 and select(recs, obj).how == "knee"
    assert select(recs, obj, pick="max-accuracy").record.number == 2
    assert select(recs, obj, pick="min-cost").record.number == 0
    # a limit: the most accurate within it, picked from the front of what is left
    assert select(recs, obj, limits={"macs": 4e6}).record.number == 1
    assert select(recs, obj, limits={"macs": 4e6}, pick="min-cost").record.number == 0
    with pytest.raises(ExportError, match="no complete, feasible trial within macs <= 10"):
        select(recs, obj, limits={"macs": 10})
    with pytest.raises(ExportError, match="no trained weights"):
        select(recs, obj, has_weights=lambda r: r.number != 1)
    with pytest.raises(ExportError, match="ambiguous"):
        select(recs, obj, arch_id="0000000000")


def test_block_map_reads_both_rate_formats():
    from nas.net.model import block_map, default_arch

    arch = default_arch()  # three ACmix blocks: s0.b0, s1.b0, s1.b1
    model = create_model(arch).eval()
    with torch.no_grad():
        for i, (name, p) in enumerate(sorted((n, p) for n, p in model.named_parameters() if n.endswith("rate1"))):
            p.fill_(0.1 * (i + 1))
    from nas.net.model import rates_of

    ours = rates_of(model)
    assert [(r["stage"], r["index"]) for r in ours] == [(0, 0), (1, 0), (1, 1)]
    search_format = [
        {"module": f"stages.{r['stage']}.{r['index']}.self_attn", "alpha": r["alpha"], "beta": r["beta"]}
        for r in reversed(ours)
    ]  # located by module name, not by order
    for rates in (ours, search_format):
        rows = block_map(arch, rates)
        assert [round(r["alpha"], 6) for r in rows] == [0.1, 0.2, 0.3]
        assert all(r["rates"] == "learned" for r in rows)
    assert all(r["rates"] == "initial" and r["alpha"] == 0.5 for r in block_map(arch, []))


def _independent_knee(front: list[TrialRecord]) -> TrialRecord:
    """The knee as the model card documents it, written out again with numpy."""
    loss = np.array([[1 - r.accuracy, r.macs] for r in front], dtype=float)
    span = loss.max(0) - loss.min(0)
    norm = np.where(span > 0, (loss - loss.min(0)) / np.where(span > 0, span, 1), 0)
    d = np.linalg.norm(norm, axis=1)
    best = [r for r, di in zip(front, d) if abs(di - d.min()) < 1e-12]
    return max(best, key=lambda r: r.accuracy)


@pytest.mark.slow
def test_export_knee_reload_in_a_new_process(small_run, tmp_path):
    run = RunFolder(small_run)
    assert len(pareto.candidates(run.trials(), ["accuracy", "macs"])) >= 3
    chosen = _independent_knee(run.front())
    out = tmp_path / "knee"
    assert main([str(small_run), "--pick", "knee", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]

    cfg = json.loads((out / "config.json").read_text())
    data = asdict(run.config().data)
    assert cfg["architecture"] == "acmix_nas" and cfg["num_classes"] == data["num_classes"]
    assert cfg["model_args"]["arch"] == chosen.arch  # the knee, by the documented definition
    pc = cfg["pretrained_cfg"]
    assert pc["input_size"] == [data["in_chans"], data["image_size"], data["image_size"]]
    assert pc["mean"] == pytest.approx(data["mean"]) and pc["std"] == pytest.approx(data["std"])
    assert pc["first_conv"] == "stem.conv" and pc["classifier"] == "head.fc" and pc["num_classes"] == 10
    assert {"interpolation", "crop_pct"} <= set(pc)
    card = (out / "README.md").read_text()
    assert chosen.arch_id in card and "knee" in card and "on the Pareto front" in card
    assert f"{chosen.accuracy:.4g}" in card and "digits" in card and "| torch |" in card

    # the exported model: the trial's own weights in a freshly built network
    model = create_model(Arch.from_dict(chosen.arch), num_classes=10).eval()
    model.load_state_dict(load_file(str(small_run / chosen.weights)))
    x = torch.randn(
        3, data["in_chans"], data["image_size"], data["image_size"], generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        expected = model(x)
    save_file({"x": x, "y": expected}, str(tmp_path / "io.safetensors"))
    # learned alpha/beta of the weights are in the card's block table. The knee may be an all-conv
    # network (proxy accuracies vary with the kernels' numerics), so also export an ACmix trial.
    acmix = next(
        r
        for r in run.trials()
        if r.weights
        and r.status == "complete"
        and any(k.endswith("rate1") for k in load_file(str(small_run / r.weights)))
    )
    assert main([str(small_run), "--arch-id", acmix.arch_id, "--out", str(tmp_path / "acmix")]) == 0
    acmix_card = (tmp_path / "acmix" / "README.md").read_text()
    rates = load_file(str(small_run / acmix.weights))
    alphas = [f"{float(v):.4g}" for k, v in rates.items() if k.endswith("rate1")]
    assert alphas and all(f"| {a} |" in acmix_card for a in alphas)

    script = textwrap.dedent(f"""
        import json, torch, timm, nas
        from safetensors.torch import load_file
        torch.set_num_threads({torch.get_num_threads()})  # as in this process: the same kernels, the same bits
        io = load_file({str(tmp_path / "io.safetensors")!r})
        m = timm.create_model({"local-dir:" + str(out)!r}, pretrained=True).eval()
        r = {{}}
        with torch.no_grad():
            y = m(io['x'])
            r['max_diff'] = float((y - io['y']).abs().max())
            f = m.forward_features(io['x'])
            r['features_shape'] = list(f.shape)
            r['head_equal'] = bool(torch.equal(m.forward_head(f), y))
            r['pre_logits_shape'] = list(m.forward_head(f, pre_logits=True).shape)
            r['num_features'] = m.num_features
            r['data_config'] = timm.data.resolve_data_config({{}}, model=m)
            fm = timm.create_model({"local-dir:" + str(out)!r}, pretrained=True, features_only=True).eval()
            feats = fm(io['x'])
            r['feature_shapes'] = [list(t.shape) for t in feats]
            r['feature_channels'] = fm.feature_info.channels()
            r['features_last_equal'] = bool(torch.allclose(feats[-1], f, atol=1e-6))
            m.reset_classifier(5)
            r['reset_shape'] = list(m(io['x']).shape)
            u = timm.create_model('acmix_nas', arch=m.arch.to_dict(), num_classes=10).eval()
            r['untrained_shape'] = list(u(io['x']).shape)
            r['untrained_differs'] = bool((u(io['x']) - io['y']).abs().max() > 1e-3)
            r['same_keys'] = sorted(u.state_dict()) == sorted(load_file({str(out / "model.safetensors")!r}))
        print(json.dumps(r))
    """)
    # Outside the checkout, as a user loads a model: `import nas` must be the installed package.
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["max_diff"] == 0.0  # bit-identical: same weights, same code, same input
    assert r["head_equal"] and r["features_last_equal"] and r["same_keys"] and r["untrained_differs"]
    nf = r["num_features"]
    assert r["features_shape"][:2] == [3, nf] and r["pre_logits_shape"] == [3, nf]
    assert [s[1] for s in r["feature_shapes"]] == r["feature_channels"] and r["feature_channels"][-1] == nf
    assert r["reset_shape"] == [3, 5] and r["untrained_shape"] == [3, 10]
    dc = r["data_config"]
    assert dc["input_size"] == [data["in_chans"], data["image_size"], data["image_size"]]
    assert dc["mean"] == pytest.approx(data["mean"]) and dc["std"] == pytest.approx(data["std"])

    # load_exported: the same model, checked
    m2 = load_exported(out)
    with torch.no_grad():
        assert torch.equal(m2(x), expected)


def test_mismatched_folder_gives_one_line(small_run, tmp_path, capsys):
    run = RunFolder(small_run)
    out = tmp_path / "good"
    assert main([str(small_run), "--pick", "max-accuracy", "--out", str(out)]) == 0
    chosen = json.loads((out / "config.json").read_text())["model_args"]["arch"]
    other = next(r for r in run.trials() if r.weights and r.arch != chosen)
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    shutil.copy(small_run / other.weights, bad / "model.safetensors")
    with pytest.raises(ExportError) as e:
        load_exported(bad)
    msg = str(e.value)
    assert "\n" not in msg and "does not match its architecture" in msg and "model.safetensors" in msg
    # timm alone would fail too, but with a long size-mismatch report: the check replaces that
    with pytest.raises(RuntimeError):
        timm.create_model(f"local-dir:{bad}", pretrained=True)
    capsys.readouterr()
    assert main(["--check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "does not match" in err
    assert main(["--check", str(out)]) == 0
    assert "ok, acmix_nas" in capsys.readouterr().out
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    assert main(["--check", str(bad)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_user_errors_exit_2_with_one_line(small_run, tmp_path, capsys):
    run = RunFolder(small_run)
    stopped = next(r for r in run.trials() if r.status == "stopped")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "run.yaml").write_text((small_run / "run.yaml").read_text())
    cases = [
        ([str(tmp_path / "missing")], "no such run folder"),
        ([str(small_run), "--arch-id", "ffffffffffff"], "no trial with arch id 'ffffffffffff'"),
        ([str(small_run), "--arch-id", stopped.arch_id], "has no trained weights"),
        ([str(small_run), "--max-params", "10"], "no complete, feasible trial within params <= 10"),
        ([str(small_run), "--max-latency-ms", "5"], "no trial of this run has latency measured"),
        ([str(empty)], "no finished trials yet"),
        ([str(small_run), "--arch-id", stopped.arch_id[:6], "--pick", "knee"], "without --pick"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "Traceback" not in err, (argv, err)
    # and as a real process: one line on stderr, status 2, no traceback
    proc = subprocess.run(
        [sys.executable, "-m", "nas.export", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "no such run folder" in proc.stderr
    assert main(["--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--retrain-epochs RETRAIN_EPOCHS" in help_text and "(default: 0)" in help_text
    assert "(default: auto)" in help_text and "knee" in help_text


def test_retrain_epochs_trains_further(small_run, tmp_path):
    run = RunFolder(small_run)
    out = tmp_path / "retrained"
    assert (
        main([str(small_run), "--pick", "min-cost", "--retrain-epochs", "1", "--device", "cpu", "--out", str(out)]) == 0
    )
    arch = json.loads((out / "config.json").read_text())["model_args"]["arch"]
    rec = next(r for r in run.front() if r.arch == arch)
    before, after = load_file(str(small_run / rec.weights)), load_file(str(out / "model.safetensors"))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    card = (out / "README.md").read_text()
    assert "after 1 more epochs" in card and "test accuracy after retraining" in card
    with torch.no_grad():
        x = torch.randn(2, 1, 16, 16)
        m = load_exported(out)
        assert m(x).shape == (2, 10)


def test_export_refuses_a_non_empty_folder_unless_force_and_writes_whole(small_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    assert main([str(small_run), "--pick", "knee", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and "--force" in err and str(out) in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # untouched

    first = tmp_path / "first"
    assert main([str(small_run), "--pick", "max-accuracy", "--out", str(first)]) == 0
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    assert main([str(small_run), "--pick", "min-cost", "--out", str(first)]) == 2  # an earlier export
    import nas.export.build

    def broken_card(*a, **k):
        raise RuntimeError("the export failed half-way")

    monkeypatch.setattr(nas.export.build, "model_card", broken_card)  # where export() looks it up
    with pytest.raises(RuntimeError):
        main([str(small_run), "--pick", "min-cost", "--out", str(first), "--force"])
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before  # the old export, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "mine"]  # no temp folder left
    monkeypatch.undo()
    assert main([str(small_run), "--pick", "min-cost", "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_a_config_json_of_the_wrong_type_is_one_line(small_run, tmp_path, capsys):
    out = tmp_path / "x"
    assert main([str(small_run), "--pick", "knee", "--out", str(out)]) == 0
    for bad in ("[1, 2]", '"acmix_nas"', '{"architecture": "acmix_nas", "model_args": [1]}'):
        (out / "config.json").write_text(bad)
        capsys.readouterr()
        assert main(["--check", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "config.json" in err and "Traceback" not in err, err


def test_the_selected_line_reports_the_mean_the_pick_was_made_by(small_run, tmp_path, capsys):
    # every front point evaluated at two more seeds: the knee is chosen by its mean over three
    import os
    import re
    import statistics
    from dataclasses import replace

    from runs import copy_run

    run = RunFolder(copy_run(small_run, tmp_path / "run"))
    for r in run.front():
        for seed, shift in ((1, -0.031), (2, 0.017)):
            run.append(
                replace(r.record, number=len(run.trials()), seed=seed, accuracy=r.accuracy + shift, weights=None)
            )
    knee = select(run.trials(), run.objectives())
    accs = [r.accuracy for r in run.trials() if r.arch_id == knee.record.arch_id]
    out = tmp_path / "knee"
    assert main([str(run.path), "--pick", "knee", "--out", str(out)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    se = statistics.stdev(accs) / len(accs) ** 0.5
    assert line.startswith(f"selected {knee.record.arch_id} ")
    mean_shown, se_shown = map(float, re.search(r"accuracy (\S+) ± (\S+) \(3 seeds\)", line).groups())
    assert mean_shown == pytest.approx(statistics.mean(accs), abs=6e-5) and se_shown == pytest.approx(se, abs=6e-5)
    # the folder's files all get the ordinary mode of a new file (safetensors writes its own 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {p.name: 0o666 & ~umask for p in out.iterdir()}


def test_limits_keep_the_measured_points_within_every_limit():
    from nas.export.selection import _limits_text, _within_limits
    from nas.run.folder import aggregate

    recs = [
        _rec(0, 0.5, 1_000, params=10),
        _rec(1, 0.6, 2_000, params=30),
        _rec(2, 0.7, 3_000, params=20),
        _rec(3, 0.8, 4_000),  # params not measured: out under a params limit
    ]
    cands = aggregate(recs)
    kept = _within_limits(cands, {"macs": 3_000, "params": 20})
    assert [r.number for r in kept] == [0, 2]
    assert [r.number for r in _within_limits(cands, {})] == [0, 1, 2, 3]
    assert _within_limits([], {"latency": 1.0}) == []  # nothing to measure: nothing left, no error
    with pytest.raises(ExportError, match="unknown limit objective 'accuracy'"):
        _within_limits(cands, {"accuracy": 0.9})
    with pytest.raises(ExportError, match="no trial of this run has memory measured"):
        _within_limits(cands, {"memory": 100.0})
    assert _limits_text({}) == ""
    assert _limits_text({"macs": 2e6, "params": 5000.0}) == " within macs <= 2e+06, params <= 5000"


def test_the_card_places_a_network_on_the_front_by_rank_or_by_status():
    from types import SimpleNamespace

    from nas.export.card import _Card, _place
    from nas.run.folder import ArchResult, aggregate

    recs = [_rec(0, 0.50, 1_000), _rec(1, 0.90, 2_000), _rec(2, 0.95, 10_000), _rec(3, 0.40, 5_000)]
    recs.append(_rec(4, None, 500, status="failed"))
    obj = ["accuracy", "macs"]
    archs = aggregate(recs)
    front = pareto.front(archs, obj)

    def place(number: int, objectives=obj) -> str:
        card = _Card(
            run=None,
            config=SimpleNamespace(objectives=objectives),
            selection=None,
            arch=None,
            records=recs,
            front=pareto.front(archs, objectives),
            ranks=pareto.ranks(archs, objectives),
            mine=ArchResult([recs[number]]),
        )
        return _place(card)

    assert [f.number for f in front] == [0, 1, 2]
    assert place(1) == "on the Pareto front of accuracy, macs: point 2 of 3, ordered by macs; it is the front's knee"
    assert place(2) == "on the Pareto front of accuracy, macs: point 3 of 3, ordered by macs"
    assert place(3) == "not on the front: non-domination rank 1 (0 = the front)"
    assert place(4) == "not ranked (status failed)"
    assert place(2, ["accuracy"]) == "on the Pareto front of accuracy: point 1 of 1; it is the front's knee"
