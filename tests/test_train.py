"""The training loop: learning, determinism, failure handling, optimizer groups, augmentation."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from nas.data import Dataset, load_dataset
from nas.train import EpochResult, TrainConfig, accuracy_and_loss, augment_batch, param_groups, train


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", image_size=8, val_fraction=0.2, subset=400, seed=0)


def _small_net(in_chans: int = 1, num_classes: int = 10, width: int = 16) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


def test_short_run_learns_digits(digits):
    torch.manual_seed(0)
    model = _small_net()
    acc0, _ = accuracy_and_loss(model, digits.val_x, digits.val_y)
    results = list(train(model, digits, TrainConfig(epochs=10, batch_size=32, lr=0.2)))
    assert [r.epoch for r in results] == list(range(1, 11))
    assert all(isinstance(r, EpochResult) and r.status == "ok" for r in results)
    last = results[-1]
    assert last.val_acc > 0.7 > acc0 + 0.3  # chance is 0.1
    assert results[0].train_loss > last.train_loss and last.seconds > 0
    assert last.lr < results[0].lr  # cosine decay
    acc, loss = accuracy_and_loss(model, digits.val_x, digits.val_y, batch_size=7)
    assert acc == pytest.approx(last.val_acc) and loss == pytest.approx(last.val_loss, rel=1e-5)


def test_same_seed_same_run_bit_for_bit(digits):
    def run(seed: int):
        torch.manual_seed(0)  # the same initial weights
        model = _small_net()
        cfg = TrainConfig(epochs=2, batch_size=32, lr=0.1, seed=seed, augment="crop+flip")
        res = [(r.train_loss, r.val_acc, r.val_loss) for r in train(model, digits, cfg)]
        return res, model.state_dict()

    (a, wa), (b, wb), (c, _) = run(0), run(0), run(1)
    assert a == b
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a != c  # the seed drives shuffling and augmentation


def test_nan_loss_ends_the_run_cleanly(digits):
    model = _small_net()
    results = list(train(model, digits, TrainConfig(epochs=3, lr=1e30, warmup_epochs=0)))
    assert results[-1].status == "failed" and "non-finite" in results[-1].reason
    assert len(results) <= 3 and all(r.status == "ok" for r in results[:-1])


class _NaNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


def test_model_emitting_nan_fails_at_first_epoch(digits):
    results = list(train(_NaNNet(), digits, TrainConfig(epochs=2)))
    assert len(results) == 1 and results[0].status == "failed"
    assert "epoch 1" in results[0].reason and math.isnan(results[0].train_loss)


class _OOMNet(nn.Module):
    def __init__(self, exc: Exception):
        super().__init__()
        self.fc, self.exc, self.calls = nn.Linear(64, 10), exc, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 3:
            raise self.exc
        return self.fc(x.flatten(1))


@pytest.mark.parametrize(
    "exc",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"),
        RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate; out of memory"),
    ],
)
def test_out_of_memory_ends_the_run_cleanly(digits, exc):
    results = list(train(_OOMNet(exc), digits, TrainConfig(epochs=2, batch_size=200)))
    assert results[-1].status == "failed" and "out of memory" in results[-1].reason
    assert results[0].status == "ok"  # epoch 1 (2 steps + 1 eval) fits, epoch 2 runs out


def test_other_errors_are_not_swallowed(digits):
    with pytest.raises(ValueError):
        list(train(_OOMNet(ValueError("a bug")), digits, TrainConfig(epochs=2, batch_size=200)))


class _Mix(nn.Module):
    """Named like ACmix: rate1/rate2 are learnable mixing weights."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, bias=True)
        self.rate1 = nn.Parameter(torch.ones(1))
        self.rate2 = nn.Parameter(torch.ones(2, 2))  # even if not 1-D, never decayed
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 3)
        self.frozen = nn.Parameter(torch.ones(3, 3), requires_grad=False)


def test_weight_decay_groups():
    m = nn.Sequential(_Mix(), _Mix())
    decay, no_decay = param_groups(m, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in m.named_parameters()}
    got_decay = sorted(names[id(p)] for p in decay["params"])
    assert got_decay == ["0.conv.weight", "0.fc.weight", "1.conv.weight", "1.fc.weight"]
    got_none = {names[id(p)].split(".", 1)[1] for p in no_decay["params"]}
    assert got_none == {"conv.bias", "rate1", "rate2", "bn.weight", "bn.bias", "ln.weight", "ln.bias", "fc.bias"}
    assert len(no_decay["params"]) == 16  # frozen parameters are left out


@pytest.mark.parametrize(
    "space,point", [("acmix_resnet", "all_conv"), ("acmix_resnet", "all_acmix"), ("digits", "paper")]
)
def test_weight_decay_groups_of_real_networks(space, point):
    """timm's grouping gives every searched network the groups of the rule written out: no decay for
    norm layers, biases, any other 1-D parameter and ACmix's rate1/rate2."""
    from nas.net.model import create_model
    from nas.space import SearchSpace

    space = SearchSpace.from_yaml(Path(__file__).resolve().parents[1] / "search_spaces" / f"{space}.yaml")
    model = create_model(space.reference_points()[point], num_classes=10)
    norms = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
    no_decay_names = {
        f"{m}.{n}" if m else n
        for m, module in model.named_modules()
        for n, p in module.named_parameters(recurse=False)
        if isinstance(module, norms) or p.ndim <= 1 or n in ("bias", "rate1", "rate2")
    }
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model, 0.05)
    assert {names[id(p)] for p in no_decay["params"]} == no_decay_names
    assert {names[id(p)] for p in decay["params"]} == set(names.values()) - no_decay_names
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)


def test_augment_batch_crop_and_flip():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    g = torch.Generator().manual_seed(0)
    assert augment_batch(x, 0, crop=True, flip=False, generator=g) is x
    flipped = augment_batch(x, 0, crop=False, flip=True, generator=g)
    for i in range(2):  # each image is either itself or its mirror
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    out = augment_batch(x, 2, crop=True, flip=True, generator=torch.Generator().manual_seed(1))
    again = augment_batch(x, 2, crop=True, flip=True, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and torch.equal(out, again)
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # every output is a 5x5 window of the padded image, maybe mirrored
        windows = [padded[i, :, r : r + 5, c : c + 5] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)


def test_config_from_yaml_proxy_section():
    proxy = {
        "dataset": "digits",
        "image_size": 16,
        "val_fraction": 0.2,
        "subset": None,
        "epochs": 3,
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 0.003,
        "weight_decay": 0.01,
        "warmup_epochs": 1,
        "label_smoothing": 0.0,
    }
    cfg = TrainConfig.from_dict(proxy)
    assert (cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.lr) == (3, 16, "adamw", 0.003)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")


def test_adamw_without_validation_split():
    ds = load_dataset("digits", image_size=8, val_fraction=0.0, subset=100)
    res = list(train(_small_net(), ds, TrainConfig(epochs=1, optimizer="adamw", lr=0.01)))
    assert res[0].status == "ok" and math.isnan(res[0].val_acc)


def test_amp_and_channels_last_paths_run_on_cpu(digits):
    # On CUDA 'auto' turns both on; on CPU they can be forced (bf16 autocast), which exercises
    # the same code path here.
    torch.manual_seed(0)
    res = list(
        train(
            _small_net(),
            digits,
            TrainConfig(epochs=6, batch_size=32, lr=0.2, amp=True, channels_last=True, grad_clip=1.0),
        )
    )
    assert all(r.status == "ok" for r in res) and res[-1].val_acc > 0.4


# --------------------------------------------------------------------------- the CLI


def _digits_arch():
    from nas.space import SearchSpace

    space = Path(__file__).resolve().parents[1] / "search_spaces" / "digits.yaml"
    return SearchSpace.from_yaml(space).reference_points()["all_conv"]


def test_cli_trains_and_saves_a_checkpoint(tmp_path, capsys):
    import json

    from safetensors.torch import load_file

    from nas.net.arch import Arch
    from nas.net.model import create_model
    from nas.train import main

    arch = _digits_arch()
    arch.save(tmp_path / "arch.json")
    out = tmp_path / "ckpt"
    rc = main(
        ["--arch", str(tmp_path / "arch.json"), "--epochs", "2", "--subset", "300", "--threads", "1", "--out", str(out)]
    )
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["arch_id"] == arch.arch_id
    assert metrics["train_images"] == 300 and len(metrics["history"]) == 2
    assert 0 <= metrics["test_acc"] <= 1 and metrics["num_classes"] == 10
    assert Arch.load(out / "arch.json") == arch
    model = create_model(arch, num_classes=metrics["num_classes"])
    model.load_state_dict(load_file(out / "model.safetensors"))  # strict: every key matches


def test_cli_trial_of_a_run_folder(tmp_path, capsys):
    from nas.proxy import ProxyConfig
    from nas.run.folder import DataInfo, RunConfig, RunFolder, TrialRecord
    from nas.train import main

    arch = _digits_arch()
    run = RunFolder(tmp_path / "run")
    run.write_config(RunConfig(data=DataInfo(dataset="digits"), proxy=ProxyConfig(dataset="digits")))
    run.append(TrialRecord(number=0, arch_id=arch.arch_id, arch=arch.to_dict(), status="complete", accuracy=0.5))
    for spec in (["--arch", str(run.path), "--trial", "0"], ["--arch", f"{run.path}/trials.jsonl#{arch.arch_id}"]):
        rc = main(
            spec + ["--epochs", "1", "--subset", "64", "--threads", "1", "--out", str(tmp_path / "out"), "--force"]
        )  # the second replaces the first
        assert rc == 0 and (tmp_path / "out" / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["--arch", str(run.path), "--trial", "7"]) == 2
    assert "no trial 7" in capsys.readouterr().err


def test_cli_argument_errors_are_one_line_as_in_every_cli(capsys):
    from nas.train import main

    for argv, message in (
        (["--epochs", "2"], "the following arguments are required: --arch"),
        (["--arch", "a.json", "--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1
        assert err.startswith(f"error: {message}") and err.rstrip().endswith("(see python -m nas.train --help)")


def test_cli_refuses_to_overwrite_a_checkpoint_unless_force(tmp_path, capsys, monkeypatch):
    from nas.train import cli as train_cli  # the command trains through its own `train`
    from nas.train import main

    _digits_arch().save(tmp_path / "a.json")
    out = tmp_path / "ckpt"
    base = ["--arch", str(tmp_path / "a.json"), "--epochs", "1", "--subset", "64", "--threads", "1", "--out", str(out)]
    assert main(base) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to overwrite" in err and "--force" in err

    real_train = train_cli.train

    def nan_loss(model, data, cfg):  # a run that fails (NaN loss) after --force
        return real_train(model, data, replace(cfg, lr=1e30))

    monkeypatch.setattr(train_cli, "train", nan_loss)
    assert main(base + ["--force", "--optimizer", "sgd"]) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old checkpoint, whole
    assert json.loads((tmp_path / "ckpt.failed" / "metrics.json").read_text())["status"] == "failed"
    monkeypatch.undo()
    assert main(base + ["--force", "--seed", "1"]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 1


@pytest.mark.parametrize(
    "args, words",
    [
        (["--arch", "missing.json"], "no such file"),
        (["--arch", "{arch}", "--dataset", "cifar10", "--data-dir", "{tmp}"], "data_batch_1"),
        (["--arch", "{arch}", "--dataset", "mnist"], "no data_dir"),
        (["--arch", "{arch}", "--epochs", "x"], "invalid int"),
        (["--arch", "{arch}", "--optimizer", "lion"], "invalid choice"),
        (["--arch", "{bad}"], "not a valid Arch"),
    ],
)
def test_cli_user_errors_are_one_line_exit_2(tmp_path, capsys, args, words):
    from nas.train import main

    _digits_arch().save(tmp_path / "a.json")
    (tmp_path / "bad.json").write_text('{"stages": 3}')
    args = [a.format(arch=tmp_path / "a.json", tmp=tmp_path, bad=tmp_path / "bad.json") for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err


@pytest.mark.parametrize(
    "flag, value, setting",
    [
        ("--epochs", "0", {"epochs": 0}),
        ("--lr", "-1", {"lr": -1.0}),
        ("--label-smoothing", "1", {"label_smoothing": 1.0}),
        ("--image-size", "5000", {"image_size": 5000}),
        ("--subset", "2.5", {"subset": 2.5}),
    ],
)
def test_cli_checks_training_settings_by_the_proxy_rules(tmp_path, capsys, flag, value, setting):
    from nas.proxy import ProxyConfig, ProxyError
    from nas.train import main

    _digits_arch().save(tmp_path / "a.json")
    assert main(["--arch", str(tmp_path / "a.json"), flag, value]) == 2
    with pytest.raises(ProxyError) as refused:
        ProxyConfig(**setting).checked()
    assert capsys.readouterr().err == f"error: {flag}: {refused.value.msg}\n"  # one rule, one message
