"""The samplers propose architectures the study has not seen (nas.samplers), in real Optuna studies."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from nas.samplers import EvolutionSampler, UniqueSampler
from nas.search.study import make_sampler
from nas.space import load_space

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


def objective(space):
    """Accuracy-like and cost-like values that depend on the architecture alone."""

    def f(trial):
        arch = space.sample(trial, full=True)
        trial.set_user_attr("arch_id", arch.arch_id)
        blocks = [b for *_, b in arch.blocks()]
        acmix = sum(b.op == "acmix" for b in blocks)
        width = sum(st.channels for st in arch.stages)
        return 0.5 + 0.1 * acmix - 0.001 * width + 0.01 * len(blocks), width * len(blocks) + 10 * acmix

    return f


def test_evolution_finds_every_architecture_of_a_small_space_once_then_says_it_is_exhausted():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(SPACES / "digits.yaml")  # 220 architectures
    sampler = EvolutionSampler(space, population=16, tournament=4, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(objective(space), n_trials=space.size)
    ids = [t.user_attrs["arch_id"] for t in study.trials]
    assert len(set(ids)) == len(ids) == space.size == 220  # every one, none twice
    assert not sampler.exhausted
    study.optimize(objective(space), n_trials=1)  # nothing unseen is left
    assert sampler.exhausted and sampler.take_kind(study.trials[-1].number) == "exhausted"


def test_evolution_mutates_one_decision_of_a_population_member():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(SPACES / "symmetry.yaml")
    sampler = EvolutionSampler(space, population=12, tournament=4, seed=1, start=12)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(objective(space), n_trials=80)
    kinds = [sampler.take_kind(t.number) for t in study.trials]
    assert kinds[:12] == ["random"] * 12 and kinds[12:] == ["mutated"] * 68
    for t in study.trials[12:]:
        # the parent: a complete trial told before this one was asked, within the aging window
        told = [p for p in study.trials[: t.number] if p.state == optuna.trial.TrialState.COMPLETE][-12:]
        assert any(sum(p.params[k] != t.params[k] for k in space.encoding) == 1 for p in told), t.number
    ids = [t.user_attrs["arch_id"] for t in study.trials]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_optunas_samplers_propose_unseen_architectures_repairing_their_duplicates(name):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(SPACES / "digits.yaml")
    sampler = make_sampler(name, 0, 100, space)
    assert isinstance(sampler, UniqueSampler)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(objective(space), n_trials=60 if name != "gp" else 14)  # GP: 10 random start-up, then its own
    ids = [t.user_attrs["arch_id"] for t in study.trials]
    assert len(set(ids)) == len(ids)
    kinds = [sampler.take_kind(t.number) for t in study.trials]
    assert set(kinds) <= {"sampled", "repaired", "fill-in"} and kinds.count("fill-in") <= 2
    if name == "tpe":  # on 220 architectures TPE soon proposes what it has seen: repaired, not retrained
        assert kinds.count("repaired") > 0


def test_a_history_window_shows_the_sampler_the_recent_finished_trials():
    from nas.samplers import HistoryWindow

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    window = HistoryWindow(10)
    for _ in range(10):
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        assert window.of(study) is study  # a short history: the study itself
    seen = []
    for n in range(10, 60):
        running = study.ask()
        running.suggest_float("x", 0, 1)
        view = window.of(study)
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in view.trials)  # nothing in flight
        assert view.trials[-1].params == study.trials[running.number - 1].params  # up to the latest finished
        assert 9 <= len(view.trials) <= 15  # the last 10 (but the one in flight), at most 1.5 x 10
        seen.append(len(view.trials))
        study.tell(running, 0.5)
    assert min(seen) == 9 and max(seen) == 13  # made anew every 5 trials, growing in between


@pytest.mark.parametrize("name", ["tpe", "gp"])
def test_a_windowed_sampler_runs_past_its_window_with_trials_in_flight(name, monkeypatch):
    # TPE's constant liar writes the proposal onto the asked trial in the storage it is handed: with
    # a window that is the window's copy, where the real trial's id does not exist (it crashed at the
    # 501st trial of every long TPE search).
    import nas.search.study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    monkeypatch.setattr(nas.search.study, "HISTORY_WINDOW", 12)
    space = load_space(SPACES / "digits.yaml")
    sampler = make_sampler(name, 0, 100, space)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    f, flying = objective(space), []
    for _ in range(40 if name == "tpe" else 24):
        flying.append(study.ask())
        if len(flying) == 3:  # three in flight, the oldest finishes first
            trial = flying.pop(0)
            study.tell(trial, f(trial))
    asked = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(asked) >= (37 if name == "tpe" else 21)
    assert len({t.user_attrs["arch_id"] for t in asked}) == len(asked)
    assert all(t.state != optuna.trial.TrialState.FAIL for t in study.trials)  # nothing of the window leaks in


# -- any Optuna study: a space of Optuna distributions, no SearchSpace
PLAIN = {
    "op": optuna.distributions.CategoricalDistribution(["conv", "pool", "skip", None]),
    "depth": optuna.distributions.IntDistribution(1, 6),
    "width": optuna.distributions.IntDistribution(16, 256, log=True),
    "drop": optuna.distributions.FloatDistribution(0.0, 0.5, step=0.25),
    "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
}


def plain_objective(trial):
    p = {name: trial._suggest(name, d) for name, d in PLAIN.items()}
    return (p["op"] == "conv") + 0.1 * p["depth"] - p["drop"] - abs(p["lr"] - 0.01), p["depth"] * p["width"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: EvolutionSampler(PLAIN, population=8, tournament=2, seed=0),
        lambda: EvolutionSampler(PLAIN, population=8, tournament=2, seed=0, start=4),
        lambda: UniqueSampler(optuna.samplers.TPESampler(seed=0, multivariate=True), PLAIN, seed=0),
        lambda: make_sampler("evolution", 0, 40, PLAIN),
    ],
)
def test_the_samplers_work_on_any_optuna_study_with_a_space_of_distributions(make):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(plain_objective, n_trials=40)
    points = [tuple(t.params[n] for n in PLAIN) for t in study.trials]
    assert len(set(points)) == 40  # no point twice
    for t in study.trials:
        assert all(d._contains(d.to_internal_repr(t.params[n])) for n, d in PLAIN.items()), t.params
        assert t.params["drop"] in (0.0, 0.25, 0.5) and isinstance(t.params["width"], int)
    kinds = {sampler.take_kind(t.number) for t in study.trials}
    assert kinds <= {"random", "mutated", "sampled", "repaired"}


def test_a_key_makes_parameter_sets_one_point_and_a_small_space_runs_out():
    from nas.samplers import Encoding

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"a": optuna.distributions.IntDistribution(0, 4), "b": optuna.distributions.IntDistribution(0, 4)}
    encoding = Encoding(space, key=lambda p: p["a"] + p["b"])  # 9 points: the sums 0..8
    sampler = EvolutionSampler(encoding, population=4, tournament=2, seed=0, start=2)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_int("a", 0, 4) - t.suggest_int("b", 0, 4), n_trials=9)
    assert sorted(t.params["a"] + t.params["b"] for t in study.trials) == list(range(9))
    study.optimize(lambda t: t.suggest_int("a", 0, 4) - t.suggest_int("b", 0, 4), n_trials=1)
    assert sampler.exhausted
    with pytest.raises(TypeError, match="expected an Optuna CategoricalDistribution"):
        Encoding({"x": "not a distribution"})


def test_the_evolution_proposes_a_one_parameter_child_of_a_member_from_its_start_on():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {f"e{i}": optuna.distributions.CategoricalDistribution(["a", "b", "c", "d"]) for i in range(6)}
    sampler = EvolutionSampler(space, population=10, tournament=3, seed=2, start=5)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def f(trial):
        ops = [trial.suggest_categorical(n, ["a", "b", "c", "d"]) for n in space]
        return ops.count("a") + 0.5 * ops.count("b"), ops.count("a") + ops.count("c")

    study.optimize(f, n_trials=60)
    kinds = [sampler.take_kind(t.number) for t in study.trials]
    assert kinds[:5] == ["random"] * 5 and set(kinds[5:]) == {"mutated"}
    for t in study.trials[5:]:
        told = study.trials[: t.number][-10:]
        assert any(sum(p.params[k] != t.params[k] for k in space) == 1 for p in told), t.number


def test_the_registry_names_every_sampler_once():
    from nas.samplers import SAMPLERS
    from nas.samplers import make_sampler as make_named
    from nas.search.options import SAMPLERS as OPTIONS

    assert OPTIONS is SAMPLERS and SAMPLERS[0] == "evolution" and len(set(SAMPLERS)) == len(SAMPLERS)
    with pytest.raises(ValueError, match="unknown sampler 'cmaes'"):
        make_named("cmaes", PLAIN, 0, 100)
