"""The fidelity check's report: fidelity.json's contents and the table printed for it.

The report, printed and written to RUN/fidelity.json:

* per architecture: proxy mean ± std and long (reference) mean ± std over the K seeds;
* Kendall τ and Spearman ρ between the proxy's means and the long means, and between the proxy's
  first seed alone (what a one-seed search sees) and the long means;
* the reference's own test-retest τ (its first seed vs its second): how well one seed of the
  training you deploy ranks like another, the bar for a proxy; next to it the proxy's one-seed τ
  against the reference's single seeds (the mean over seed pairs, the like-for-like number) and
  its share of the reference's test-retest τ;
* the proxy's test-retest τ: first seed vs second seed, same architectures;
* the mean seed std of the proxy and of long training; the range of long means in units of
  the long seed std (how much there is to rank at all);
* the front long training gives (`nas.run.pareto` on the long means, the run's costs) and which of
  the proxy's front points stay on it;
* the printed front's (and the proxy's own front's) precision and recall against it, strictly and
  within the long training's seed noise (`noise_agreement`), each next to the long training's own
  front test-retest (the front of its first half of the seeds against the second half's), the
  ceiling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from nas.fidelity.reference import DEPLOYMENT, long_label
from nas.fidelity.stats import (
    ArchFidelity,
    fidelity_stats,
    format_stat,
    front_agreement,
    long_front,
    noise_agreement,
    pooled_std,
)

__all__ = ["report", "format_stat", "format_table", "promoted_lines"]


def report(
    archs: Sequence[ArchFidelity],
    proxy_front: Sequence[str],
    objectives: Sequence[str],
    seeds: Sequence[int],
    proxy_epochs: int,
    long_epochs: int,
    reference: Mapping[str, Any] | None = None,
    rung0_front: Sequence[str] | None = None,
    separable: Mapping[str, bool | None] | None = None,
    expected: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """fidelity.json's contents (without the run's name and the minutes). `reference` says what the
    long training is: {'reference': 'deployment' or 'same subset', 'long_train_images': N,
    'long_image_size': S, ...}. `proxy_front` is the run's front as printed (its points at the
    highest rung each reached) among `archs`; `rung0_front`, where given, the proxy's own front
    (rung 0 alone: what the run would print without promotion) among them; `separable`, the run's
    noise flag of each printed front point (False: within the noise of a dominated point); `expected`
    its pareto.json's `reproduction`, to set beside the precision and recall measured here."""
    lf = long_front(archs, objectives)
    sigma = pooled_std(a.long for a in archs)
    r0 = None if rung0_front is None else list(rung0_front)
    return {
        "objectives": list(objectives),
        "seeds": list(seeds),
        "proxy_epochs": proxy_epochs,
        "long_epochs": long_epochs,
        **(reference or {}),
        **fidelity_stats(archs, seeds),
        "proxy_front": list(proxy_front),
        "long_front": lf,
        "proxy_front_kept": [a for a in proxy_front if a in lf],
        "front_agreement": front_agreement(proxy_front, lf),
        "long_retest_front_agreement": _retest_front(archs, objectives, seeds),
        "noise_flags": None if separable is None else _noise_flags(separable, lf),
        "expected_reproduction": expected,
        "rung0_front_agreement": None if r0 is None else {"front": r0, **front_agreement(r0, lf)},
        "noise_agreement": noise_agreement(proxy_front, archs, objectives, sigma),
        "rung0_noise_agreement": None if r0 is None else noise_agreement(r0, archs, objectives, sigma),
        "long_retest_noise_agreement": _retest_noise(archs, objectives, seeds, sigma),
        "archs": [
            {
                "arch_id": a.arch_id,
                "reference": a.reference,
                "on_proxy_front": a.arch_id in proxy_front,
                "on_long_front": a.arch_id in lf,
                **a.costs,
                "search_mean": a.search,
                "search_rung": a.search_rung,
                "proxy_mean": a.proxy_mean,
                "proxy_std": a.proxy_std,
                "proxy_accuracies": [a.proxy.get(s) for s in seeds],
                "long_mean": a.long_mean,
                "long_std": a.long_std,
                "long_accuracies": [a.long.get(s) for s in seeds],
            }
            for a in archs
        ],
    }


def _halves(seeds: Sequence[int]) -> tuple[list[int], list[int]] | None:
    """The long training's seeds in two halves of equal size (the first K // 2 and the next): a
    test-retest of a reference of that many seeds a side. None below 2 seeds."""
    h = len(seeds) // 2
    return (list(seeds[:h]), list(seeds[h : 2 * h])) if h else None


def _with_seeds(archs: Sequence[ArchFidelity], seeds: Sequence[int]) -> list[ArchFidelity]:
    """The architectures with only these seeds' long accuracies (those with none left out)."""
    out = [replace(a, long={s: a.long[s] for s in seeds if s in a.long}) for a in archs]
    return [a for a in out if a.long]


def _retest_front(archs: Sequence[ArchFidelity], objectives: Sequence[str], seeds: Sequence[int]) -> dict | None:
    """The long training's own front test-retest: the front of its first half of seeds (seed 0 of 2)
    against the front of its second half over the same architectures (precision and recall as
    `front_agreement`): how well the reference's front reproduces itself, the ceiling for any
    printed front. None below 2 seeds."""
    halves = _halves(seeds)
    if halves is None:
        return None
    return front_agreement(*(long_front(_with_seeds(archs, h), objectives) for h in halves))


def _retest_noise(
    archs: Sequence[ArchFidelity], objectives: Sequence[str], seeds: Sequence[int], sigma: float | None
) -> dict | None:
    """`noise_agreement` of the front of the long training's first half of seeds against its second
    half's accuracies (each standard error sigma / sqrt(the half's seeds)): the ceiling of the
    within-noise numbers. None below 2 seeds."""
    halves = _halves(seeds)
    if halves is None:
        return None
    first, second = (_with_seeds(archs, h) for h in halves)
    return noise_agreement(long_front(first, objectives), second, objectives, sigma)


def _halves_label(s: Mapping[str, Any]) -> tuple[str, str]:
    """'seed 0', 'seed 1' (or 'seeds 0, 1', 'seeds 2, 3'): the retest's two halves of the seeds (a
    report with a retest has 2 seeds or more)."""
    first, second = _halves(s["seeds"])  # type: ignore[misc]
    return tuple(f"seed{'s' if len(h) > 1 else ''} {', '.join(map(str, h))}" for h in (first, second))  # type: ignore[return-value]


def _noise_flags(separable: Mapping[str, bool | None], long_front: Sequence[str]) -> dict[str, list[str]]:
    """The run's noise flags against the long front: of the printed front points the run called
    separable and those it called within noise, which stay on the long front."""
    kinds = {
        "separable": [a for a, s in separable.items() if s],
        "within_noise": [a for a, s in separable.items() if s is False],
    }
    return {**kinds, **{f"{k}_kept": [a for a in ids if a in long_front] for k, ids in kinds.items()}}


def _expected_lines(s: Mapping[str, Any], long: str) -> list[str]:
    """What the search expected of its front (`expected_reproduction`), to set beside the measured:
    its precision and recall in a retraining, and its printed points' chances on the noise-free
    front (P(front)) for those on the long front and those off it."""
    expected = s.get("expected_reproduction")
    if not expected or not s.get("front_agreement"):
        return []
    lines = [
        f"the search expected its front to reproduce at precision {expected['precision']:.2f}, recall "
        f"{expected['recall']:.2f} in a retraining with {expected['retrain_seeds']} new seeds at the rung it was "
        f"scored at (its seed noise alone: a {long} training that ranks otherwise scores lower)"
    ]
    chances = {a: p for a, p in (expected.get("p_front") or {}).items() if a in s["proxy_front"]}
    on = [p for a, p in chances.items() if a in s["long_front"]]
    off = [p for a, p in chances.items() if a not in s["long_front"]]
    if chances:
        on_mean, off_mean = (format_stat(sum(ps) / len(ps) if ps else None) for ps in (on, off))
        lines.append(
            f"its printed points' P(front): {sum(chances.values()):.1f} expected on the front of noise-free means, "
            f"{len(on)} on the {long} front; mean P(front) {on_mean} of those on it, {off_mean} of those off it"
        )
    return lines


def _pct(x: float | None, std: float | None = None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def _agreement_lines(s: Mapping[str, Any], long: str) -> list[str]:
    """The front's precision and recall against the long front over the checked pool, the printed
    front's and (in a promoted run) the proxy's own, and the printed accuracies' τ."""
    lines = []
    for key, what in (("front_agreement", "the printed front"), ("rung0_front_agreement", "the proxy's own front")):
        f = s.get(key)
        if not f or (key == "rung0_front_agreement" and f["front"] == s["proxy_front"]):
            continue  # an old report, or a run without promotion: the two fronts are one
        lines.append(
            f"{what} against the {long} front over these {s['architectures']} architectures: precision "
            f"{format_stat(f['precision'])}, recall {format_stat(f['recall'])}"
            + (f"; missed {', '.join(f['missed'])}" if f["missed"] else "")
        )
    retest = s.get("long_retest_front_agreement")
    if retest and s.get("front_agreement"):
        a, b = _halves_label(s)
        lines.append(
            f"the {long} training's own front test-retest ({a}'s front against {b}'s over the same "
            f"architectures): precision {format_stat(retest['precision'])}, "
            f"recall {format_stat(retest['recall'])}: the most any printed front can be expected to reach"
        )
    lines += _noise_lines(s, long)
    flags = s.get("noise_flags")
    if flags and (flags["separable"] or flags["within_noise"]):
        lines.append(
            f"the search's noise flags: {len(flags['separable_kept'])} of the {len(flags['separable'])} printed front "
            f"points it called separable, and {len(flags['within_noise_kept'])} of the {len(flags['within_noise'])} "
            f"it called within noise, are on the {long} front"
        )
    lines += _expected_lines(s, long)
    lines += promoted_lines(s, long)
    if s.get("search_kendall_tau") is not None and any(a.get("search_rung") for a in s["archs"]):
        lines.append(
            f"the accuracies the run prints (each at the highest rung it reached) vs the {long} means: Kendall τ "
            f"{format_stat(s['search_kendall_tau'])}, Spearman ρ {format_stat(s['search_spearman_rho'])}"
        )
    return lines


def promoted_lines(s: Mapping[str, Any], long: str) -> list[str]:
    """Over the promoted architectures of the pool: does the promotion's rung rank them more like
    the long training than the proxy does? (Where the printed front is decided.)"""
    rung, proxy = s.get("promoted_kendall_tau"), s.get("promoted_proxy_kendall_tau")
    if rung is None or proxy is None:
        return []
    verdict = "more" if rung > proxy else "no more"
    return [
        f"over the {s['promoted']} promoted architectures of the pool, where the printed front is decided: the "
        f"promoted means rank like the {long} means with Kendall τ {format_stat(rung)}, the proxy's with "
        f"{format_stat(proxy)} (the {long} training's own test-retest over them: "
        f"{format_stat(s.get('promoted_long_retest_tau'))}): here the promotion's rung ranks them {verdict} like the {long} "
        "training than the proxy does"
    ]


def _noise_lines(s: Mapping[str, Any], long: str) -> list[str]:
    """The within-noise agreement of the printed front, the proxy's own and the long training's
    retest (`noise_agreement`), in one line; none in an old report."""
    n = s.get("noise_agreement")
    if not n:
        return []

    def part(f: Mapping[str, Any]) -> str:
        gap = "-" if f["max_gap"] is None else f"{100 * f['max_gap']:.2f}"
        return f"precision {format_stat(f['precision'])}, recall {format_stat(f['recall'])}, largest gap {gap} points"

    own, retest = s.get("rung0_noise_agreement"), s.get("long_retest_noise_agreement")
    own_part = (
        f"; the proxy's own front {part(own)}"
        if own and s["rung0_front_agreement"]["front"] != s["proxy_front"]
        else ""
    )
    retest_part = (
        "; the {} training's own {} front against {}: {}".format(long, *_halves_label(s), part(retest))
        if retest
        else ""
    )
    return [
        f"within the {long} noise (means closer than {n['z']:g} standard errors of their difference not told "
        f"apart, seed std {_pct(n['sigma'])} points): the printed front {part(n)}{own_part}{retest_part}"
    ]


def format_table(summary: Mapping[str, Any]) -> str:
    """The report for the terminal."""
    k = len(summary["seeds"])
    long = "deploy" if summary.get("reference") == DEPLOYMENT else "long"
    lines = [
        f"against {long_label(summary)}",
        f"  {'arch id':12}  {'proxy %s ep. (%d seeds)' % (summary['proxy_epochs'], k):>22}  "
        f"{'%s %s ep. (%d seeds)' % (long, summary['long_epochs'], k):>22}  front: proxy → {long}",
    ]
    for a in summary["archs"]:
        lines.append(
            f"  {a['arch_id']:12}  {_pct(a['proxy_mean'], a['proxy_std']):>22}  "
            f"{_pct(a['long_mean'], a['long_std']):>22}  {'●' if a['on_proxy_front'] else '·'} → "
            f"{'●' if a['on_long_front'] else '·'}  {a['reference'] or ''}"
        )
    s = summary
    second = s["seeds"][1] if k > 1 else "?"
    lines += [
        f"\nKendall τ {format_stat(s['kendall_tau'])}, Spearman ρ {format_stat(s['spearman_rho'])} between the "
        f"proxy's means and the {long} means of {s['architectures']} architectures; the proxy's first seed alone: τ "
        f"{format_stat(s['seed0_kendall_tau'])}, ρ {format_stat(s['seed0_spearman_rho'])}",
        f"the {long} training's own test-retest τ (seed {s['seeds'][0]} vs seed {second}): "
        f"{format_stat(s.get('long_test_retest_tau'))}; one proxy seed vs one {long} seed: τ "
        f"{format_stat(s.get('pair_kendall_tau'))}, {format_stat(s.get('retest_share'))} of it (at 1, one proxy "
        f"seed ranks like one {long} seed as well as another {long} seed does)",
        f"the proxy's test-retest τ (seed {s['seeds'][0]} vs seed {second}): {format_stat(s['test_retest_tau'])}",
        f"seed std: proxy {_pct(s['proxy_seed_std'])} points, {long} {_pct(s['long_seed_std'])} points; {long} means "
        f"span {_pct(s['long_range'])} points = {format_stat(s['long_range_over_seed_std'], '.1f')} {long} seed stds",
        f"front of the {long} means: {', '.join(s['long_front']) or 'none'}; {len(s['proxy_front_kept'])} of "
        f"{len(s['proxy_front'])} proxy front points stay on it"
        + (f" ({', '.join(s['proxy_front_kept'])})" if s["proxy_front_kept"] else ""),
        *_agreement_lines(s, long),
    ]
    if "minutes" in s:
        lines.append(
            f"{s.get('evaluations_run', 0)} evaluations trained in {s['minutes']:.1f} min; "
            f"{s.get('evaluations_reused', 0)} proxy evaluations reused from the run"
        )
    return "\n".join(lines)
