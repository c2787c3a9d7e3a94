import copy
import itertools
import logging
import math
from pathlib import Path

import optuna
import pytest
import yaml

from nas.net.arch import Arch
from nas.space import SearchSpace, SpaceError, load_space

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def digits_raw() -> dict:
    return yaml.safe_load((SPACES / "digits.yaml").read_text())


def write(tmp_path, raw) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


SHIPPED = sorted(p.stem for p in SPACES.glob("*.yaml"))


def test_every_space_is_tested():
    assert {"digits", "cifar_resnet", "acmix_resnet"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_load(name):
    space = load_space(SPACES / f"{name}.yaml")
    refs = space.reference_points()
    assert {"all_conv", "all_acmix"} <= set(refs)
    assert all(b.op == "conv" for *_, b in refs["all_conv"].blocks())
    assert all(b.op == "acmix" for *_, b in refs["all_acmix"].blocks())
    if "paper" in refs:
        assert all((b.op == "acmix") == (st.block == "bottleneck") for _, _, st, b in refs["paper"].blocks())
    # the reference points are different networks: a run never shows one network under two names
    assert len({a.arch_id for a in refs.values()}) == len(refs)
    # the resolved space round-trips and keeps its fingerprint
    again = SearchSpace.from_dict(space.to_dict(), name=space.name)
    assert again.fingerprint == space.fingerprint and again.size == space.size
    assert space.proxy.image_size >= 1


def test_paper_point_only_where_it_differs():
    """'paper' (ACmix in bottlenecks, conv in basic blocks) is left out where it would repeat a point:
    cifar_resnet has basic blocks only (paper = all-conv), acmix_resnet bottlenecks only (paper =
    all-ACmix, the paper's ACmix-ResNet itself); digits and symmetry mix both kinds and keep it."""
    assert set(load_space(SPACES / "cifar_resnet.yaml").reference_points()) == {"all_conv", "all_acmix"}
    assert set(load_space(SPACES / "acmix_resnet.yaml").reference_points()) == {"all_conv", "all_acmix"}
    for name in ("digits", "symmetry"):
        refs = load_space(SPACES / f"{name}.yaml").reference_points()
        assert list(refs) == ["all_conv", "all_acmix", "paper"]
        assert {b.op for *_, b in refs["paper"].blocks()} == {"conv", "acmix"}


def test_symmetry_space_fits_its_dataset():
    from nas.data import load_dataset

    space = load_space(SPACES / "symmetry.yaml")
    assert space.size >= 10_000
    assert {where.split(".")[-1] for where, _ in space.decisions()} >= {
        "depth",
        "channels",
        "op",
        "kernel",
        "heads",
        "k_att",
        "k_conv",
        "alpha",
        "learnable",
    }
    p = space.proxy
    ds = load_dataset(p.dataset, image_size=p.image_size, val_fraction=p.val_fraction, subset=p.subset, seed=0)
    assert ds.train_x.shape[1:] == (space.in_chans, *space.input_size)
    assert len(ds.train_y) == p.subset and len(ds.val_y) == 500


def test_digits_proxy_and_input():
    space = load_space(SPACES / "digits.yaml")
    assert space.input_size == (16, 16) and space.in_chans == 1
    assert space.proxy.dataset == "digits" and space.proxy.image_size == 16
    assert set(space.proxy.to_dict()) == {
        "dataset",
        "image_size",
        "val_fraction",
        "subset",
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "weight_decay",
        "warmup_epochs",
        "label_smoothing",
    }


def test_sampling_with_a_real_study_and_size_by_brute_force():
    """Every distinct architecture comes out of Optuna's brute-force sampler exactly once per
    parameter combination, and their number is `space.size`."""
    space = load_space(SPACES / "digits.yaml")
    ids = set()

    def objective(trial):
        arch = space.sample(trial)
        assert all(isinstance(v, (int, float, str, bool)) for v in trial.params.values())
        assert space.point(trial.params) == arch  # params alone rebuild the arch
        ids.add(arch.arch_id)
        return 0.0

    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        sampler = optuna.samplers.BruteForceSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=1000)
    assert len(study.trials) == len(ids) == space.size == 220


def test_sampling_tpe_and_enqueue_reference_points():
    space = load_space(SPACES / "cifar_resnet.yaml")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    refs = space.reference_points()
    for arch in refs.values():
        study.enqueue_trial(space.params_of(arch))
    archs = []
    study.optimize(lambda t: archs.append(space.sample(t)) or 0.0, n_trials=len(refs) + 5)
    assert archs[: len(refs)] == list(refs.values())
    for arch in archs:
        assert Arch.from_json(arch.to_json()) == arch
        # tied per stage: one head count per stage; per network: one alpha
        for st in arch.stages:
            assert len({b.heads for b in st.blocks if b.op == "acmix"}) <= 1
        assert len({b.alpha for *_, b in arch.blocks() if b.op == "acmix"}) <= 1


def test_paper_points_of_acmix_resnet():
    space = load_space(SPACES / "acmix_resnet.yaml")
    for depths in ([1, 2, 4, 1], [2, 3, 5, 2], [3, 4, 6, 3]):
        arch = space.point(op="acmix", depth=depths)
        assert [st.depth for st in arch.stages] == depths
        assert {(b.heads, b.k_att, b.k_conv, b.alpha, b.beta) for *_, b in arch.blocks()} == {(4, 7, 3, 0.5, 0.5)}
    with pytest.raises(SpaceError, match="not in this space"):
        space.point(depth=[4, 4, 6, 3])


def test_ranges_and_infinite_size(tmp_path, digits_raw):
    raw = {**digits_raw, "blocks": {**digits_raw["blocks"], "alpha": {"low": 0.0, "high": 1.0}}}
    space = load_space(write(tmp_path, raw))
    assert space.size == float("inf")
    raw["blocks"]["alpha"] = {"low": 0.0, "high": 1.0, "step": 0.5}
    assert load_space(write(tmp_path, raw)).size == _size_with_alpha3()


def _size_with_alpha3() -> int:
    # per-block alpha with 3 values multiplies the ACmix variants per block: a = 2 k_att x 3 alpha = 6.
    # stage 0 (1 block): conv 1 + acmix 6 x 2 heads = 13
    # stage 1, depth 1: 1 + 6*2 = 13; depth 2: 1 + (36 + (49 - 1 - 36)) * 2 = 97; x 2 widths
    return 13 * (13 + 97) * 2


# -- validation: one test per kind of bad input --------------------------------------------------------
def check_error(tmp_path, raw, key_path: str, allowed: str) -> str:
    with pytest.raises(SpaceError) as e:
        load_space(write(tmp_path, raw))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "space.yaml"))
    assert key_path in msg and allowed in msg, msg
    return msg


def test_unknown_key(tmp_path, digits_raw):
    check_error(tmp_path, {**digits_raw, "stagse": []}, "stagse", "allowed: ['name'")
    check_error(tmp_path, {**digits_raw, "blocks": {"opp": "conv"}}, "blocks.opp", "allowed: ['op'")
    raw = dict(digits_raw, stages=[dict(digits_raw["stages"][0], widht=3), digits_raw["stages"][1]])
    check_error(tmp_path, raw, "stages[0].widht", "allowed: ['depth'")
    check_error(tmp_path, {**digits_raw, "proxy": {"epoch": 3}}, "proxy.epoch", "allowed: ['dataset'")


def test_wrong_type(tmp_path, digits_raw):
    check_error(tmp_path, {**digits_raw, "input_size": "big"}, "input_size", "expected an int >= 1 or [H, W]")
    check_error(tmp_path, {**digits_raw, "blocks": {"learnable": "yes"}}, "blocks.learnable", "true or false")
    check_error(tmp_path, {**digits_raw, "proxy": {"epochs": 2.5}}, "proxy.epochs", "an int >= 1")


def test_empty_choices(tmp_path, digits_raw):
    check_error(tmp_path, {**digits_raw, "blocks": {"op": {"choices": []}}}, "blocks.op.choices", "non-empty list")


def test_out_of_range_choices(tmp_path, digits_raw):
    check_error(
        tmp_path, {**digits_raw, "blocks": {"k_att": {"choices": [3, 4]}}}, "blocks.k_att.choices[1]", "an odd int"
    )
    check_error(
        tmp_path,
        {**digits_raw, "blocks": {"op": {"choices": ["conv", "transformer"]}}},
        "blocks.op.choices[1]",
        "one of ['conv', 'acmix']",
    )
    check_error(tmp_path, {**digits_raw, "blocks": {"alpha": {"low": 1.0, "high": 0.0}}}, "blocks.alpha", "low < high")
    check_error(tmp_path, {**digits_raw, "proxy": {"optimizer": "lion"}}, "proxy.optimizer", "['sgd', 'adamw']")


def test_bad_scope(tmp_path, digits_raw):
    stage0 = dict(digits_raw["stages"][0], blocks={"op": {"choices": ["conv"], "per": "network"}})
    raw = dict(digits_raw, stages=[stage0, digits_raw["stages"][1]])
    check_error(tmp_path, raw, "stages[0].blocks.op.per", "['block', 'stage']")


def test_heads_not_dividing_width(tmp_path, digits_raw):
    raw = {**digits_raw, "blocks": {**digits_raw["blocks"], "heads": {"choices": [4, 3]}}}
    check_error(tmp_path, raw, "stages[0].blocks.heads", "heads=3 does not divide the block width 16")


def test_too_few_stages(tmp_path, digits_raw):
    check_error(tmp_path, {**digits_raw, "stages": digits_raw["stages"][:1]}, "stages", "at least 2 stages")


def test_downsampling_below_one_pixel(tmp_path, digits_raw):
    stages = digits_raw["stages"] + [{"channels": 64, "stride": 2}] * 3  # 8 -> 4 -> 2 -> 1 -> below
    check_error(tmp_path, {**digits_raw, "stages": stages}, "stages[4].stride", "below 1 pixel")


def test_unreadable_and_bad_yaml(tmp_path):
    with pytest.raises(SpaceError, match="cannot read"):
        load_space(tmp_path / "missing.yaml")
    (tmp_path / "space.yaml").write_text("stages: [\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(tmp_path / "space.yaml")


def test_fingerprint_changes_with_the_space(tmp_path, digits_raw):
    a = load_space(write(tmp_path, digits_raw)).fingerprint
    b = load_space(write(tmp_path, {**digits_raw, "proxy": {**digits_raw["proxy"], "epochs": 2}})).fingerprint
    assert a != b and a == load_space(SPACES / "digits.yaml").fingerprint


def test_cli_describes_a_space(capsys):
    from nas.space import main

    assert main([str(SPACES / "digits.yaml"), "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "architectures: 220" in out and "all_acmix" in out and "MACs" in out


def test_cli_bad_space_exits_2(tmp_path, capsys, digits_raw):
    from nas.space import main

    assert main([str(write(tmp_path, {**digits_raw, "bogus": 1}))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bogus" in err


def test_a_binary_space_file_is_one_line(tmp_path, capsys):
    from nas.space import main

    path = tmp_path / "space.yaml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe" * 8)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "not a text file" in err


def test_conditional_spaces(tmp_path, digits_raw):
    """A space is conditional when some searched parameter exists in some architectures only."""
    assert load_space(SPACES / "symmetry.yaml").conditional  # ACmix settings only in ACmix blocks
    assert load_space(SPACES / "digits.yaml").conditional  # and a second stage of depth 1 or 2
    fixed = {
        **digits_raw,
        "blocks": {**digits_raw["blocks"], "op": "acmix"},
        "stages": [{**st, "depth": 2} for st in digits_raw["stages"]],
    }
    assert not load_space(write(tmp_path, fixed)).conditional  # every architecture has every parameter
    deeper = {**fixed, "stages": [{**fixed["stages"][0], "depth": {"choices": [1, 2]}}, *fixed["stages"][1:]]}
    assert load_space(write(tmp_path, deeper)).conditional  # a second block's k_att only at depth 2
    tied = {**deeper, "blocks": {**deeper["blocks"], "k_att": {"choices": [3, 5], "per": "stage"}}}
    assert not load_space(write(tmp_path, tied)).conditional  # depth searched, but nothing per block


def test_the_full_encoding_gives_gp_every_parameter_of_a_conditional_space(caplog):
    """Define-by-run sampling of a conditional space leaves GP parameters it cannot model (Optuna
    warns, and draws them at random); the full encoding (`sample(trial, full=True)`, what the
    search uses) asks every parameter in every trial, so GP models all of them."""
    from nas.search.study import make_sampler

    space = load_space(SPACES / "digits.yaml")

    def objective(full):
        def f(trial):
            blocks = [b for *_, b in space.sample(trial, full=full).blocks()]
            return sum(b.op == "acmix" for b in blocks), sum(b.k_att or 0 for b in blocks if b.op == "acmix")

        return f

    def warnings_of(sampler, full: bool) -> list[str]:
        caplog.clear()
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        optuna.logging.enable_propagation()
        try:
            with caplog.at_level(logging.WARNING, logger="optuna"):
                study.optimize(objective(full), n_trials=12)
        finally:
            optuna.logging.disable_propagation()
        return [r.getMessage() for r in caplog.records if "sampled independently" in r.getMessage()]

    assert warnings_of(optuna.samplers.GPSampler(seed=0), full=False)  # the condition arises on this space
    assert warnings_of(optuna.samplers.GPSampler(seed=0), full=True) == []
    assert warnings_of(make_sampler("gp", 0, 100, space), full=True) == []


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"blocks.alpha": {"choices": [0.5, 1.0], "per": "network"}, "blocks.k_conv": {"choices": [3, 5]}},
        {
            "blocks.op": {"choices": ["conv", "acmix"], "per": "stage"},
            "blocks.beta": {"choices": [0.5, 1.0], "per": "stage"},
        },
        {
            "blocks.op": {"choices": ["conv", "acmix"], "per": "network"},
            "blocks.kernel": {"choices": [3, 5], "per": "network"},
        },
        {"width_mult": {"choices": [1.0, 1.05, 2.0]}},
        {
            "blocks.alpha": {"choices": [0.5, 1.0], "per": "network"},
            "blocks.beta": {"choices": [0.5, 1.0, 2.0], "per": "network"},
        },
        {
            "blocks.alpha": {"choices": [0.5, 1.0], "per": "network"},
            "stages.0.blocks": {"op": "conv"},
            "stages.1.blocks": {"alpha": {"choices": [0.5, 1.0]}},
        },
        {
            "blocks.op": {"choices": ["conv", "acmix"], "per": "network"},
            "stages.1.blocks": {"op": {"choices": ["conv", "acmix"]}},
        },
    ],
    ids=[
        "digits",
        "tied-alpha-and-conv-kernels",
        "op-per-stage",
        "op-per-network",
        "width-mults",
        "two-network-acmix-settings",
        "network-alpha-overridden-where-acmix-is",
        "network-op-overridden-in-a-stage",
    ],
)
def test_size_counts_what_enumerating_every_parameter_combination_builds(tmp_path, digits_raw, change):
    """`SearchSpace.size` against brute force: every combination of the full encoding's
    parameters built into its network, and the distinct networks counted."""
    raw = copy.deepcopy(digits_raw)  # the module's fixture stays the digits space for every case
    for key, value in change.items():
        *path, last = key.split(".")
        node = raw
        for p in path:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    space = load_space(write(tmp_path, raw))
    names = list(space.encoding)
    choices = [space.encoding[n].choices for n in names]
    assert math.prod(len(c) for c in choices) <= 200_000  # small enough to enumerate
    ids = {space.point(dict(zip(names, combo))).arch_id for combo in itertools.product(*choices)}
    assert space.size == len(ids)
