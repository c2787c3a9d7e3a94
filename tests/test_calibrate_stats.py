"""nas.calibrate's intervals and pick on synthetic panels with known answers: the bootstrap's τ is
scipy's, a candidate that ranks like deployment is picked and decided over noise, two that rank
alike are tied (the cheapest picked), the held-out half is the same on every run and says when the
pick fails there."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
from scipy import stats

from nas.calibrate import (
    CandidateResult,
    draw,
    kendall_tau_b,
    measured_signal,
    pick,
    reference,
    split_panel,
    top_recall,
    verdict,
)
from nas.calibrate.bootstrap import interval, pair_recall, recall_samples, retest_samples, tau_samples
from nas.calibrate.intervals import confirmation
from nas.proxy import SIGNALS

SEEDS = [0, 1]


def test_the_vectorised_tau_is_scipys_tau_b_ties_and_missing_values_included():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, (20, 9)).astype(float), rng.normal(size=(20, 9))  # many ties in x
    assert kendall_tau_b(x, y) == pytest.approx([stats.kendalltau(a, b).statistic for a, b in zip(x, y)])
    x[0, 2] = np.nan  # a missing value leaves its network out, as dropping it does
    keep = [i for i in range(9) if i != 2]
    assert kendall_tau_b(x[0], y[0]) == pytest.approx(stats.kendalltau(x[0, keep], y[0, keep]).statistic)
    assert np.isnan(kendall_tau_b(np.ones(5), np.arange(5.0)))  # a constant ranking has no τ


def test_recall_counts_deployments_top_quarter_in_the_proxys():
    deploy = np.arange(8.0)  # top quarter: networks 6 and 7
    assert top_recall(deploy, deploy) == 1
    assert top_recall(-deploy, deploy) == 0
    assert top_recall(np.array([0, 1, 2, 3, 4, 5, 9, 0.5]), deploy) == 0.5  # 6 in, 7 ranked low
    assert pair_recall(np.c_[deploy, deploy], np.c_[deploy, deploy]) == 1


def test_the_resamples_pair_seeds_of_the_networks_drawn_and_are_the_same_every_time():
    a, b = draw(range(10), 2, 50, seed=[3, 0]), draw(range(10), 2, 50, seed=[3, 0])
    assert all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in ("rows", "proxy_seed", "deploy_seed", "other_seed")
    )
    assert a.rows.shape == (50, 10) and a.proxy_seed.shape == a.deploy_seed.shape == (50, 10, 2)
    assert (a.other_seed != a.deploy_seed[..., 0]).all()  # the test-retest τ compares two different seeds
    assert not np.array_equal(a.rows, draw(range(10), 2, 50, seed=[4, 0]).rows)
    # one network drawn everywhere: every τ undefined, no interval (not a crash)
    one = draw([0], 2, 20, seed=0)
    values = np.arange(10.0).reshape(5, 2)
    assert np.isnan(tau_samples(values, values, one)).all() and interval(tau_samples(values, values, one)) is None
    assert recall_samples(values, values, one).shape == (20,)
    assert retest_samples(values, one).shape == (20,)


def test_the_panel_halves_are_fixed_by_the_seed_disjoint_and_whole():
    pick_rows, held = split_panel(24, 0)
    assert (pick_rows, held) == split_panel(24, 0)  # the same calibration splits the same way
    assert len(pick_rows) == len(held) == 12 and sorted(pick_rows + held) == list(range(24))
    assert split_panel(24, 1) != (pick_rows, held)  # another seed, another split
    odd = split_panel(9, 0)
    assert len(odd[0]) == 5 and len(odd[1]) == 4
    assert split_panel(7, 0) == (list(range(7)), None)  # too small to split: the pick on all, no held-out half


# --------------------------------------------------------------------------- synthetic panels

N = 64  # halves of 32: on halves of 12 or 20 even the true ranking's share interval can reach below 0.9


def _deploy(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[dict[int, float]]]:
    """64 networks 1 point apart (their true accuracies), deployment's seed noise 8 points: its
    test-retest τ about 0.6."""
    true = np.arange(N, dtype=float)
    values = true[:, None] + 8 * rng.normal(size=(N, 2))
    return true, values, [dict(zip(SEEDS, v)) for v in values]


def _quiet(true: np.ndarray, rng: np.random.Generator, noise: float = 0.1) -> np.ndarray:
    """A proxy that ranks the true accuracies with a seed noise well below the 1-point gaps."""
    return 0.5 * true[:, None] + 3 + noise * rng.normal(size=(len(true), 2))


def _candidate(key: str, cost: float, per_signal: dict[str, np.ndarray], ref) -> CandidateResult:
    r = CandidateResult(key, 100, 1, 16, 2 * N, 2 * N, cost, cost, cost=cost, cost_ratio=cost / 100)
    acc_values = [dict(zip(SEEDS, v)) for v in per_signal["accuracy"]]
    r.signals["accuracy"], r.samples["accuracy"] = measured_signal("accuracy", acc_values, ref, 0.9)
    for s in SIGNALS[1:]:
        values = [dict(zip(SEEDS, v)) for v in per_signal[s]]
        r.signals[s], r.samples[s] = measured_signal(s, values, ref, 0.9, r.signals["accuracy"].noise_ratio)
    return r


def _all(values: np.ndarray) -> dict[str, np.ndarray]:
    return {s: values for s in SIGNALS}


def test_a_candidate_ranking_like_deployment_is_picked_over_noise_and_decided():
    rng = np.random.default_rng(1)
    true, _, accs = _deploy(rng)
    ref = reference(accs, SEEDS, seed=0)
    assert ref.held_out is not None and len(ref.pick.rows) == len(ref.held_out.rows) == 32
    assert 0.5 < ref.pick.retest < 1  # deployment disagrees with itself
    good_values = _quiet(true, rng)
    good = _candidate("good", 10.0, _all(good_values), ref)
    noise = _candidate("noise", 1.0, _all(rng.normal(size=(N, 2))), ref)  # cheaper, ranks at random
    st, junk = good.signals["accuracy"], noise.signals["accuracy"]
    # the true ranking agrees with each deployment seed better than one seed with the other
    assert st.share > 1 and st.tau_ci[0] <= st.tau <= st.tau_ci[1] and st.share_ci[0] >= 0.9 and st.qualified
    assert st.noise_ratio < 1 and st.networks == 32
    assert st.recall >= 0.5 and 0 <= st.recall_ci[0] <= st.recall_ci[1] <= 1
    assert st.held_out["networks"] == 32 and st.held_out["share_ci"][0] >= 0.9
    json.dumps([asdict(good.signals[s]) for s in SIGNALS], allow_nan=False)  # calibration.json takes them as they are
    assert abs(junk.tau) < 0.35 and junk.tau_ci[0] < 0 < junk.tau_ci[1] and not junk.qualified
    choice = pick([noise, good])
    assert choice["pick"] == ("good", choice["signal"]) and choice["decided"] is True
    assert choice["runner_up"][0] == "noise" and choice["difference"][0] > 0
    text = verdict(choice, {"good": good, "noise": noise}, ref.pick.retest, 0.9)
    assert text.startswith("picked good") and "decided" in text and "held out (32 other networks)" in text
    assert "confirmed" in text and confirmation(st.held_out, 0.9) == "confirmed"
    # the same records, the same report: the resamples are drawn from the calibration's seed
    again = _candidate("good", 10.0, _all(good_values), reference(accs, SEEDS, seed=0))
    assert again.signals["accuracy"].share_ci == st.share_ci and again.signals["accuracy"].held_out == st.held_out


def test_candidates_the_intervals_cannot_separate_are_tied_and_the_cheapest_is_picked():
    rng = np.random.default_rng(2)
    true, _, accs = _deploy(rng)
    ref = reference(accs, SEEDS, seed=0)
    dear = _candidate("dear", 50.0, _all(_quiet(true, rng)), ref)
    cheap = _candidate("cheap", 5.0, _all(_quiet(true, rng, noise=0.3)), ref)  # a little noisier, as good within it
    assert dear.signals["accuracy"].qualified and cheap.signals["accuracy"].qualified
    choice = pick([dear, cheap])
    assert choice["decided"] is False and {k for k, _ in choice["tied"]} == {"dear", "cheap"}
    assert choice["pick"][0] == "cheap"
    text = verdict(choice, {"dear": dear, "cheap": cheap}, ref.pick.retest, 0.9)
    assert "tied: 2 candidates are not separated from the best τ" in text and "cheapest of them" in text


def test_none_qualifies_when_every_interval_reaches_below_the_bar_and_a_failed_confirmation_is_said():
    rng = np.random.default_rng(3)
    true, _, accs = _deploy(rng)
    ref = reference(accs, SEEDS, seed=0)
    # ranks like deployment on the pick half, the reverse on the held-out half
    flipped = true.copy()
    flipped[ref.held_out.rows] = -flipped[ref.held_out.rows]
    lucky = _candidate("lucky", 1.0, _all(_quiet(flipped, rng)), ref)
    st = lucky.signals["accuracy"]
    assert st.qualified and confirmation(st.held_out, 0.9) == "failed"
    text = verdict(pick([lucky]), {"lucky": lucky}, ref.pick.retest, 0.9)
    assert "FAILED: its share's whole interval is below the bar 0.9" in text
    weak = _candidate("weak", 1.0, _all(_quiet(true, rng, noise=4.0)), ref)
    w = weak.signals["accuracy"]
    assert w.share_ci[0] < 0.9 and not w.qualified
    dear = _candidate("dear", 9.0, _all(_quiet(true, rng, noise=4.0)), ref)  # as weak, as noisy
    choice = pick([dear, weak])
    # none picked; the closest is the cheapest of those the intervals cannot tell from the highest share
    assert choice["pick"] is None and {k for k, _ in choice["tied"]} == {"weak", "dear"}
    assert choice["closest"][0] == "weak" and choice["decided"] is False
    text = verdict(choice, {"weak": weak, "dear": dear}, ref.pick.retest, 0.9)
    assert text.startswith("no candidate's share interval clears") and "the closest is the cheapest of them" in text
