"""requirements.lock, the pinned install: complete for pyproject.toml and within its ranges."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def pinned() -> dict[str, str]:
    """The lock's pins that apply to this interpreter and platform: name -> version."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "-")):
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(default_environment()):
                (spec,) = req.specifier
                assert spec.operator == "==", line
                pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_the_lock_pins_every_dependency_of_pyproject_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = pinned()
    for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: refresh it (docs/development.md)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}"
        )
        for extra in req.extras:  # ray[tune]: its extra's packages are pinned too
            assert all(canonicalize_name(r.name) in pins for r in _extra_requirements(req.name, extra))


def test_the_installed_environment_is_the_lock():
    from importlib.metadata import distributions

    pins = pinned()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    drift = {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v}
    assert not drift, f"installed versions differ from requirements.lock (lock, installed): {drift}"


def _extra_requirements(dist: str, extra: str) -> list[Requirement]:
    from importlib.metadata import requires

    env = {**default_environment(), "extra": extra}
    return [
        r
        for r in map(Requirement, requires(dist) or [])
        if r.marker is not None and "extra" in str(r.marker) and r.marker.evaluate(env)
    ]
