"""The search-space file: a YAML file (or the mapping it parses to) checked key by key into the
fields of a `SearchSpace`.

Every mistake is a `SpaceError` that names the file and the key path and says what is allowed
(see `nas.space` for the format). `SearchSpace.from_yaml` and `SearchSpace.from_dict` are the
entry points; this module knows the format, the space knows what it builds.

    >>> fields = space_fields({'input_size': 16, 'stages': [{'channels': 16}, {'channels': 32}]})
    >>> fields['input_size'], fields['stages'][1].stride, fields['width_mult'].default
    ((16, 16), 2, 1.0)
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from nas.checks import is_int, is_num
from nas.net.arch import BLOCK_KINDS, STEM_POOLS, STEM_TYPES, StemArch
from nas.proxy import ProxyConfig, ProxyError
from nas.space.decision import BLOCK_DECISIONS, BLOCK_DEFAULTS, KINDS, SCOPES, Decision, Kind, SpaceError, StageSpace

__all__ = ["read_yaml", "space_fields", "parse_decision"]

_TOP_KEYS = (
    "name",
    "description",
    "input_size",
    "in_chans",
    "stem",
    "width_mult",
    "num_features",
    "blocks",
    "stages",
    "proxy",
)
_STAGE_KEYS = ("depth", "channels", "stride", "block", "bottle_ratio", "blocks")
_DECISION_KEYS = {"choices", "low", "high", "step", "log", "per", "default"}

Bad = Callable[[str, str], SpaceError]  # (key path, message) -> the error, its file bound


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's numbers: `lr: 1e-3` is the number a user means, where
    YAML 1.1 (PyYAML's default) reads an exponent without a dot as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a space file. Raises SpaceError when it cannot be read or parsed."""
    try:
        return yaml.load(path.read_text(), Loader=_Loader)
    except OSError as e:
        raise SpaceError(path, "", f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise SpaceError(path, "", "not a text file (not UTF-8): a search space is YAML") from None
    except yaml.YAMLError as e:
        raise SpaceError(path, "", f"not valid YAML: {' '.join(str(e).split())}") from None


# -- the space ------------------------------------------------------------------------------------
def space_fields(raw: Any, file: str | None = None, name: str = "space") -> dict[str, Any]:
    """The checked keyword arguments of a `SearchSpace` from a parsed YAML mapping (also the
    output of `SearchSpace.to_dict`). The geometry (strides, head counts against widths) is the
    space's own check, `SearchSpace.from_dict` runs it on the result.

    Raises:
        SpaceError: the first bad key, in the order of the format's keys.
    """
    bad: Bad = partial(SpaceError, file)
    _check_keys(raw, bad)
    size = _input_size(raw, bad)
    in_chans = _int_at_least(raw, "in_chans", 3, 1, bad, "an int >= 1")
    num_features = _int_at_least(raw, "num_features", 0, 0, bad, "an int >= 0 (0: no final 1x1 conv)")
    sname, desc = _string(raw, "name", name, bad), _string(raw, "description", "", bad)
    stem = _stem(raw.get("stem", {}), bad)
    width_mult = parse_decision("width_mult", raw.get("width_mult", 1.0), "width_mult", file, ("network",), "network")
    defaults = {k: Decision(k, choices=(v,), per="block", default=v) for k, v in BLOCK_DEFAULTS.items()}
    base = _blocks(raw.get("blocks", {}) or {}, "blocks", file, SCOPES, defaults)
    stages = _stages(raw["stages"], file, base)
    return dict(
        name=sname,
        input_size=tuple(size),
        in_chans=in_chans,
        stem=stem,
        width_mult=width_mult,
        num_features=num_features,
        stages=stages,
        proxy=_proxy(raw.get("proxy", {}) or {}, file, size),
        description=desc,
        path=file,
    )


def _check_keys(raw: Any, bad: Bad) -> None:
    """A mapping with known top-level keys and the required ones."""
    if not isinstance(raw, dict):
        raise bad("", f"expected a mapping at the top level, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise bad(unknown[0], f"unknown key; allowed: {list(_TOP_KEYS)}")
    for req in ("input_size", "stages"):
        if req not in raw:
            raise bad(req, "missing (required)")


def _input_size(raw: dict[str, Any], bad: Bad) -> list[int]:
    """`input_size` as [H, W] (an int is a square)."""
    size = raw["input_size"]
    if is_int(size):
        size = [size, size]
    if not (isinstance(size, list) and len(size) == 2 and all(is_int(s) and s >= 1 for s in size)):
        raise bad("input_size", f"expected an int >= 1 or [H, W], got {raw['input_size']!r}")
    return size


def _int_at_least(raw: dict[str, Any], key: str, default: int, least: int, bad: Bad, allowed: str) -> int:
    """The int at `key` (or `default`), at least `least`."""
    v = raw.get(key, default)
    if not (is_int(v) and v >= least):
        raise bad(key, f"expected {allowed}, got {v!r}")
    return v


def _string(raw: dict[str, Any], key: str, default: str, bad: Bad) -> str:
    """The string at `key` (or `default`)."""
    v = raw.get(key, default)
    if not isinstance(v, str):
        raise bad(key, f"expected a string, got {v!r}")
    return v


def _stem(raw: Any, bad: Bad) -> StemArch:
    """The `stem:` mapping: type, channels, pool."""
    if not isinstance(raw, dict):
        raise bad("stem", f"expected a mapping with type/channels/pool, got {raw!r}")
    for k in raw:
        if k not in ("type", "channels", "pool"):
            raise bad(f"stem.{k}", "unknown key; allowed: ['type', 'channels', 'pool']")
    stem_type = raw.get("type", "3x3")
    if stem_type not in STEM_TYPES:
        raise bad("stem.type", f"expected one of {list(STEM_TYPES)}, got {stem_type!r}")
    channels = raw.get("channels", 32)
    if not (is_int(channels) and channels >= 1):
        raise bad("stem.channels", f"expected an int >= 1, got {channels!r}")
    pool = raw.get("pool", None)
    if pool not in STEM_POOLS:
        raise bad("stem.pool", f"expected one of {list(STEM_POOLS)}, got {pool!r}")
    return StemArch(type=stem_type, channels=channels, pool=pool)


def _stages(raw: Any, file: str | None, base: Mapping[str, Decision]) -> tuple[StageSpace, ...]:
    """The `stages:` list (at least two), each stage's block decisions over the top-level `base`."""
    if not isinstance(raw, list) or len(raw) < 2:
        raise SpaceError(file, "stages", "expected a list of at least 2 stages (timm ByobNet needs 2)")
    return tuple(_stage(i, st, file, base) for i, st in enumerate(raw))


def _stage(i: int, raw: Any, file: str | None, base: Mapping[str, Decision]) -> StageSpace:
    """Stage `i`: its structure (block kind, stride, bottleneck ratio) and decisions."""
    w, bad = f"stages[{i}]", partial(SpaceError, file)
    if not isinstance(raw, dict):
        raise bad(w, f"expected a mapping with keys {list(_STAGE_KEYS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(_STAGE_KEYS))
    if unknown:
        raise bad(f"{w}.{unknown[0]}", f"unknown key; allowed: {list(_STAGE_KEYS)}")
    if "channels" not in raw:
        raise bad(f"{w}.channels", "missing (required)")
    block = raw.get("block", "bottleneck")
    if block not in BLOCK_KINDS:
        raise bad(f"{w}.block", f"expected one of {list(BLOCK_KINDS)}, got {block!r}")
    stride = raw.get("stride", 1 if i == 0 else 2)
    if not (is_int(stride) and stride in (1, 2)):
        raise bad(f"{w}.stride", f"expected 1 or 2, got {stride!r}")
    ratio = raw.get("bottle_ratio", 0.25 if block == "bottleneck" else 1.0)
    if not (is_num(ratio) and 0 < ratio <= 4):
        raise bad(f"{w}.bottle_ratio", f"expected a number in (0, 4], got {ratio!r}")
    return StageSpace(
        block=block,
        stride=stride,
        bottle_ratio=float(ratio),
        depth=parse_decision("depth", raw.get("depth", 1), f"{w}.depth", file, ("stage",), "stage"),
        channels=parse_decision("channels", raw["channels"], f"{w}.channels", file, ("stage",), "stage"),
        decisions=_blocks(raw.get("blocks", {}) or {}, f"{w}.blocks", file, ("block", "stage"), base),
    )


def _blocks(
    raw: Any, where: str, file: str | None, scopes: tuple[str, ...], base: Mapping[str, Decision]
) -> dict[str, Decision]:
    """A `blocks:` mapping of block decisions over `base` (the defaults it overrides)."""
    if not isinstance(raw, dict):
        raise SpaceError(file, where, f"expected a mapping of decisions {list(BLOCK_DECISIONS)}, got {raw!r}")
    out = dict(base)
    for k, v in raw.items():
        if k not in BLOCK_DECISIONS:
            raise SpaceError(file, f"{where}.{k}", f"unknown decision; allowed: {list(BLOCK_DECISIONS)}")
        out[k] = parse_decision(k, v, f"{where}.{k}", file, scopes, "block")
    return out


def _proxy(raw: Any, file: str | None, size: list[int]) -> ProxyConfig:
    """The `proxy:` mapping; its image size defaults to the input's height."""
    try:
        proxy = ProxyConfig.from_dict(raw)
    except ProxyError as e:
        raise SpaceError(file, f"proxy.{e.key}" if e.key else "proxy", e.msg) from None
    return proxy if proxy.image_size is not None else replace(proxy, image_size=size[0])


# -- one decision ---------------------------------------------------------------------------------
def parse_decision(
    key: str, raw: Any, where: str, file: str | None, scopes: tuple[str, ...], default_per: str
) -> Decision:
    """The decision `key` written at `where`: a plain value (fixed, in scope `default_per`) or a
    mapping of choices or a range, in one of `scopes`, with an optional default."""
    kind, bad = KINDS[key], partial(SpaceError, file)
    if not isinstance(raw, dict):
        v = _value(kind, raw, where, bad)
        return Decision(key, choices=(v,), per=default_per, default=v)
    unknown = sorted(set(raw) - _DECISION_KEYS)
    if unknown:
        raise bad(f"{where}.{unknown[0]}", f"unknown key; a decision allows {sorted(_DECISION_KEYS)}")
    per = raw.get("per", default_per)
    if per not in scopes:
        raise bad(f"{where}.per", f"expected one of {list(scopes)}, got {per!r}")
    if "choices" in raw:
        dec = _choices(key, raw, where, per, bad)
    elif "low" in raw or "high" in raw:
        dec = _range(key, raw, where, per, bad)
    else:
        raise bad(where, "a decision mapping needs choices: [...] or low:/high:")
    return replace(dec, default=_default(dec, raw, where, bad))


def _value(kind: Kind, v: Any, path: str, bad: Bad) -> Any:
    """`v` checked against `kind` (a float kind's value as a float)."""
    if not kind.check(v):
        raise bad(path, f"expected {kind.allowed}, got {v!r}")
    return float(v) if kind.type == "float" else v


def _choices(key: str, raw: dict[str, Any], where: str, per: str, bad: Bad) -> Decision:
    """A `choices: [...]` decision: a non-empty list of distinct allowed values."""
    kind = KINDS[key]
    if any(k in raw for k in ("low", "high", "step", "log")):
        raise bad(where, "give either choices or low/high, not both")
    ch = raw["choices"]
    if not isinstance(ch, list) or not ch:
        raise bad(f"{where}.choices", f"expected a non-empty list of {kind.allowed}, got {ch!r}")
    vals = tuple(_value(kind, v, f"{where}.choices[{i}]", bad) for i, v in enumerate(ch))
    if len(set(vals)) != len(vals):
        raise bad(f"{where}.choices", f"duplicate values in {ch!r}")
    return Decision(key, choices=vals, per=per)


def _range(key: str, raw: dict[str, Any], where: str, per: str, bad: Bad) -> Decision:
    """A `low:`/`high:` decision (optional `step:`, `log:`) of a numeric kind, every value allowed."""
    kind = KINDS[key]
    if kind.type not in ("int", "float"):
        raise bad(where, f"a range needs a numeric decision; use choices: for {kind.allowed}")
    if "low" not in raw or "high" not in raw:
        raise bad(where, "a range needs both low and high")
    lo, hi, step, log = raw["low"], raw["high"], raw.get("step"), raw.get("log", False)
    num, noun = (is_int, "int") if kind.type == "int" else (is_num, "number")
    for k, v in (("low", lo), ("high", hi)):
        if not num(v):
            raise bad(f"{where}.{k}", f"expected {'an int' if kind.type == 'int' else 'a number'}, got {v!r}")
    if not lo < hi:
        raise bad(where, f"expected low < high, got low={lo!r} high={hi!r}")
    if step is not None and not (num(step) and step > 0):
        raise bad(f"{where}.step", f"expected a positive {noun}, got {step!r}")
    if not isinstance(log, bool):
        raise bad(f"{where}.log", f"expected true or false, got {log!r}")
    if log and (step not in (None, 1) or lo <= 0):
        raise bad(f"{where}.log", "a log range needs low > 0 and no step")
    if kind.type == "float":
        lo, hi, step = float(lo), float(hi), None if step is None else float(step)
    dec = Decision(key, low=lo, high=hi, step=step, log=log, per=per)
    vals = dec.values()
    for v in vals if vals is not None else (lo, hi):
        _value(kind, v, where, bad)
    return dec


def _default(dec: Decision, raw: dict[str, Any], where: str, bad: Bad) -> Any:
    """The `default:` given (one of the values), else the first choice, a stepped range's middle
    value, or a continuous range's midpoint (geometric for a log range)."""
    if "default" in raw:
        dv = raw["default"]
        if not dec.contains(dv):
            raise bad(f"{where}.default", f"{dv!r} is not one of the decision's values")
        return float(dv) if KINDS[dec.key].type == "float" else dv
    vals = dec.values()
    if dec.choices is not None:
        return vals[0]
    if vals is not None:
        return vals[len(vals) // 2]
    return math.sqrt(dec.low * dec.high) if dec.log else (dec.low + dec.high) / 2
