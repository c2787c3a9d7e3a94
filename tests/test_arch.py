import json

import pytest

from nas.net.arch import Arch, ArchError, BlockArch, StageArch, StemArch


def small_arch(op: str = "acmix", heads: int = 2) -> Arch:
    blk = BlockArch(op="acmix", heads=heads, k_att=3) if op == "acmix" else BlockArch(op="conv", kernel=5)
    return Arch(
        input_size=(16, 16),
        in_chans=1,
        stem=StemArch("3x3", 16),
        stages=(
            StageArch("basic", 16, 1, 1.0, (blk,)),
            StageArch("bottleneck", 64, 2, 0.25, (blk, BlockArch(op="conv"))),
        ),
    )


@pytest.mark.parametrize("op", ["conv", "acmix"])
def test_round_trips(tmp_path, op):
    arch = small_arch(op)
    assert Arch.from_dict(arch.to_dict()) == arch
    assert Arch.from_json(arch.to_json()) == arch
    json.dumps(arch.to_dict())  # primitives only
    for name in ("a.json", "a.yaml", "a.yml"):
        assert Arch.load(arch.save(tmp_path / name)) == arch
        assert Arch.load(tmp_path / name).arch_id == arch.arch_id


def test_ids_are_stable_and_canonical():
    a, b = small_arch(), small_arch()
    assert a.arch_id == b.arch_id and len(a.arch_id) == 12
    assert small_arch(heads=4).arch_id != a.arch_id
    # settings an op does not use do not change the network, nor its id
    conv = BlockArch.from_dict({"op": "conv", "kernel": 3, "heads": 8, "k_att": 5})
    assert conv == BlockArch(op="conv") and conv.heads is None
    d = a.to_dict()
    d["stages"][1]["blocks"][1]["alpha"] = 0.9
    assert Arch.from_dict(d).arch_id == a.arch_id
    # float/int spellings of the same value give the same id
    d["stages"][0]["bottle_ratio"] = 1
    assert Arch.from_dict(d).arch_id == a.arch_id


def test_block_map_and_geometry():
    arch = small_arch()
    rows = arch.block_map()
    assert [(r["stage"], r["index"], r["op"]) for r in rows] == [(0, 0, "acmix"), (1, 0, "acmix"), (1, 1, "conv")]
    assert rows[1]["width"] == 16 and rows[1]["heads"] == 2 and rows[2]["heads"] is None
    assert arch.feature_sizes() == [((8, 8), (8, 8)), ((8, 8), (4, 4))]


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(op="attn"), "op must be one of"),
        (dict(op="conv", kernel=4), "kernel must be one of"),
        (dict(op="acmix", k_att=4), "k_att must be an odd"),
        (dict(op="acmix", heads=0), "heads must be"),
        (dict(op="acmix", learnable="yes"), "learnable"),
        (dict(op="acmix", colour=1), "unknown block keys"),
    ],
)
def test_bad_blocks(bad, match):
    with pytest.raises(ArchError, match=match):
        BlockArch.from_dict(bad)


def test_bad_archs():
    d = small_arch().to_dict()
    with pytest.raises(ArchError, match="does not divide"):
        Arch.from_dict({**d, "stages": [{**d["stages"][0], "blocks": [{"op": "acmix", "heads": 3}]}]})
    with pytest.raises(ArchError, match="below 1 pixel"):
        Arch.from_dict({**d, "input_size": [2, 2]})
    with pytest.raises(ArchError, match="at least 2 stages"):
        Arch.from_dict({**d, "stages": d["stages"][:1]})
    with pytest.raises(ArchError, match="unknown arch keys"):
        Arch.from_dict({**d, "num_classes": 10})
