import ast
import math
from pathlib import Path

import pytest

import nas
from nas.space import SearchSpace
from nas.space.decision import SpaceError
from nas.space.file import parse_decision, read_yaml, space_fields

NAS = Path(nas.__file__).parent
TWO_STAGES = {"input_size": 16, "stages": [{"channels": 16}, {"channels": 32}]}


@pytest.mark.parametrize(
    "key, raw, default",
    [
        ("k_att", {"choices": [5, 3, 7]}, 5),  # the first choice
        ("alpha", {"low": 0.0, "high": 1.0, "step": 0.25}, 0.5),  # a stepped range's middle value
        ("depth", {"low": 1, "high": 4}, 3),  # an int range is stepped by 1: [1, 2, 3, 4][2]
        ("alpha", {"low": 0.0, "high": 3.0}, 1.5),  # a continuous range's midpoint
        ("alpha", {"low": 0.25, "high": 4.0, "log": True}, 1.0),  # geometric for a log range
        ("heads", {"choices": [2, 4], "default": 4}, 4),  # as given
        ("alpha", {"choices": [0.5, 1.0], "default": 1}, 1.0),  # as given, a float decision's as a float
    ],
)
def test_decision_defaults(key, raw, default):
    dec = parse_decision(key, raw, key, None, ("block", "stage"), "block")
    assert dec.default == default and type(dec.default) is type(default)
    assert dec.contains(dec.default) or dec.values() is None


def test_a_plain_value_is_fixed_in_the_default_scope():
    dec = parse_decision("kernel", 5, "blocks.kernel", "f.yaml", ("block", "stage"), "stage")
    assert dec.is_fixed and dec.choices == (5,) and dec.per == "stage" and dec.default == 5
    with pytest.raises(SpaceError, match=r"^f\.yaml: blocks\.kernel: expected one of \[1, 3, 5, 7\], got 4$"):
        parse_decision("kernel", 4, "blocks.kernel", "f.yaml", ("block",), "block")


def test_space_fields_fill_in_the_formats_defaults():
    fields = space_fields(TWO_STAGES, name="tiny")
    assert fields["name"] == "tiny" and fields["input_size"] == (16, 16) and fields["in_chans"] == 3
    assert [st.stride for st in fields["stages"]] == [1, 2]  # the first stage keeps the stem's map
    assert fields["stages"][0].block == "bottleneck" and fields["stages"][0].bottle_ratio == 0.25
    assert fields["proxy"].image_size == 16  # the proxy trains at the input's size unless told
    assert SearchSpace(**fields) == SearchSpace.from_dict(TWO_STAGES, name="tiny")


def test_yaml_exponents_are_numbers(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text("proxy: {lr: 1e-3, weight_decay: 5E-4}\n")
    assert read_yaml(p) == {"proxy": {"lr": 0.001, "weight_decay": 0.0005}}


def _imports(module: str) -> set[str]:
    """The nas modules that `module` imports anywhere in its file (inside functions too)."""
    tree = ast.parse((NAS / "space" / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("nas.")}


def test_the_space_modules_import_one_way():
    """decision <- file <- space: the parser builds on the decisions, the space on both."""
    assert not _imports("decision") & {"nas.space.file", "nas.space.space", "nas.space"}
    assert not _imports("file") & {"nas.space.space", "nas.space"}
    assert {"nas.space.decision", "nas.space.file"} <= _imports("space")


def test_a_space_from_its_fields_is_checked_for_geometry():
    raw = {**TWO_STAGES, "input_size": 1, "stem": {"type": "3x3"}}
    with pytest.raises(SpaceError, match="too small"):
        SearchSpace.from_dict(raw)
    assert math.isfinite(SearchSpace.from_dict(TWO_STAGES).size)
