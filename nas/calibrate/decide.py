"""The pick: a candidate only where the numbers separate it, else the candidates tied, and the verdict.

The signal is the one with the best mean τ over the complete candidates (a mean over every
candidate, which one lucky τ moves little). The options are the candidates read with it (else,
when none qualifies with it, every candidate x signal). Among the qualifying options (their share's
interval clears the bar, their accuracy below the noise bar: `nas.calibrate.stats`) the one with
the best τ leads; every option whose τ it does not beat, by a paired bootstrap of the difference
on the same resamples (the difference's lower bound above 0), is tied with it. The pick is the
cheapest qualifying option of the tied ones; it is *decided* when the tied ones are a single
candidate (the leader beats the runner-up and every other), else *tied*. With none qualifying,
none is picked; the closest is the cheapest of those tied with the highest share (among the
candidates below the noise bar, else all), named the same way. (The highest share itself was tried
first: two calibrations of the default task with other seeds, every candidate tied, named two
different closest candidates; the cheapest of the tied was the same in both.) The verdict says which, with the
intervals, and what the held-out half of the panel says of the pick.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.calibrate.bootstrap import interval
from nas.calibrate.intervals import confirmation
from nas.fidelity.stats import format_stat
from nas.proxy import SIGNALS

if TYPE_CHECKING:  # the measurements' types only: the pick sits beside them, not above
    from nas.calibrate.stats import CandidateResult, SignalStats

__all__ = ["pick", "verdict", "format_ci"]

Option = tuple[str, str]  # (candidate key, signal)


def format_ci(ci: Sequence[float] | None, fmt: str = ".2f") -> str:
    """An interval for a table or a verdict: [lo, hi], or [-] when undefined."""
    return "[-]" if not ci else f"[{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.mean(vals) if vals else None


def _difference(results: Mapping[str, CandidateResult], a: Option, b: Option) -> list[float] | None:
    """The interval of τ(a) - τ(b) over the same resamples (None without resamples)."""
    sa, sb = results[a[0]].samples.get(a[1]), results[b[0]].samples.get(b[1])
    return None if sa is None or sb is None else interval(np.asarray(sa) - np.asarray(sb))


def _ranked(
    results: Mapping[str, CandidateResult], pool: Sequence[Option], lead: Option, signal: str
) -> dict[str, Any]:
    """Those of `pool` tied with `lead` (it included), cheapest first, the runner-up (the best τ of
    another candidate) and the difference's interval, and whether the lead is decided."""

    def st(o: Option) -> SignalStats:
        return results[o[0]].signals[o[1]]

    tied = [o for o in pool if o == lead or (_difference(results, lead, o) or [0.0])[0] <= 0]
    tied.sort(key=lambda o: (results[o[0]].cost, o[1] != signal, -(st(o).tau or -2.0)))
    others = [o for o in pool if o[0] != lead[0] and st(o).tau is not None]
    runner = max(others, key=lambda o: st(o).tau, default=None)
    return {
        "lead": lead,
        "tied": tied,
        "decided": len({o[0] for o in tied}) == 1,
        "runner_up": runner,
        "difference": None if runner is None else _difference(results, lead, runner),
    }


def pick(results: Sequence[CandidateResult]) -> dict[str, Any]:
    """The signal, the pick (or, with none qualifying, the closest) and how it was decided.

    Returns {'signal', 'mean_tau' (per signal), 'pick' (key, signal) or None, 'closest' (key,
    signal) or None, 'decided' (the pick, or the closest, separated from every other candidate;
    None when neither), 'tied' (the options tied with the leader, cheapest first), 'lead' (the best
    τ), 'runner_up', 'difference' (the interval of the lead's τ minus the runner-up's)}."""
    done = [r for r in results if r.complete and r.cost is not None and r.signals]
    by_key = {r.key: r for r in done}
    mean_tau = {s: _mean_or_none([r.signals[s].tau for r in done if s in r.signals]) for s in SIGNALS}
    ranked = [s for s in SIGNALS if mean_tau[s] is not None]
    signal = max(ranked, key=lambda s: (mean_tau[s], -SIGNALS.index(s))) if ranked else SIGNALS[0]
    every = [(r.key, s) for r in done for s in SIGNALS if s in r.signals]
    pool = [(r.key, signal) for r in done if signal in r.signals]
    qualifying = [o for o in pool if by_key[o[0]].signals[o[1]].qualified]
    if not qualifying:
        pool, qualifying = every, [o for o in every if by_key[o[0]].signals[o[1]].qualified]
    out: dict[str, Any] = {"signal": signal, "mean_tau": mean_tau, "pick": None, "closest": None, "decided": None}
    out.update(tied=[], lead=None, runner_up=None, difference=None)
    if qualifying:
        lead = max(qualifying, key=lambda o: (by_key[o[0]].signals[o[1]].tau, -by_key[o[0]].cost))
        out.update(_ranked(by_key, pool, lead, signal))
        out["pick"] = next(o for o in out["tied"] if by_key[o[0]].signals[o[1]].qualified)
        return out
    measured = [o for o in every if by_key[o[0]].signals[o[1]].tau is not None]
    quiet = [o for o in measured if (by_key[o[0]].signals["accuracy"].noise_ratio or np.inf) < 1]
    if quiet or measured:
        pool = quiet or measured

        def closeness(o: Option) -> tuple[float, float, float]:  # the share (none where deployment's τ is not positive)
            st = by_key[o[0]].signals[o[1]]
            return (-np.inf if st.share is None else st.share, st.tau, -by_key[o[0]].cost)

        lead = max(pool, key=closeness)
        out.update(_ranked(by_key, pool, lead, signal))
        out["closest"] = out["tied"][0]
    return out


def _names(tied: Sequence[Option], most: int = 8) -> str:
    keys = list(dict.fromkeys(k for k, _ in tied))
    return ", ".join(keys[:most]) + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _how(choice: Mapping[str, Any]) -> str:
    """How the pick (or the closest) was chosen: decided against the runner-up, or among the tied."""
    lead, runner = choice["lead"], choice["runner_up"]
    if choice["decided"]:
        against = (
            f"its τ beats the runner-up {runner[0]} ({runner[1]}) by {format_ci(choice['difference'])}"
            if runner
            else "no other candidate"
        )
        return f"decided ({against})"
    n = len({k for k, _ in choice["tied"]})
    if choice["pick"]:
        return (
            f"tied: {n} candidates are not separated from the best τ ({lead[0]}, {lead[1]}): "
            f"{_names(choice['tied'])}; the pick is the cheapest of them that qualifies"
        )
    return (
        f"tied: {n} candidates are not separated from the highest share ({lead[0]}, {lead[1]}): "
        f"{_names(choice['tied'])}; the closest is the cheapest of them"
    )


def _held_out(st: SignalStats, share: float) -> str:
    held = st.held_out
    if not held:
        return "no held-out half (a panel under 8 networks is not split)"
    state = confirmation(held, share)
    said = {
        "confirmed": "confirmed (its share's interval clears the bar)",
        "failed": f"FAILED: its share's whole interval is below the bar {share}",
        "inconclusive": f"not confirmed: its share's interval reaches below the bar {share}",
        "none": "no interval",
    }[state]
    return (
        f"held out ({held['networks']} other networks): τ {format_stat(held['tau'])} {format_ci(held['tau_ci'])}, "
        f"share {format_stat(held['share'])} {format_ci(held['share_ci'])}: {said}"
    )


def verdict(
    choice: Mapping[str, Any], results: Mapping[str, CandidateResult], deploy_retest: float | None, share: float
) -> str:
    """The calibration's conclusion in a few sentences; `deploy_retest` is deployment's test-retest τ
    on the networks the pick is made on."""
    chosen = choice["pick"] or choice["closest"]
    if not chosen:
        return "no candidate is measured completely yet: nothing picked"
    key, signal = chosen
    r = results[key]
    st = r.signals[signal]
    numbers = (
        f"τ {format_stat(st.tau)} {format_ci(st.tau_ci)} = {format_stat(st.share)} {format_ci(st.share_ci)} of "
        f"deployment's test-retest τ {format_stat(deploy_retest)} on the {st.networks} networks it is picked on, "
        f"accuracy seed std {format_stat(r.signals['accuracy'].noise_ratio)} of the median gap"
    )
    if choice["pick"]:
        head = f"picked {key} ranked by {signal}, {_how(choice)}: {numbers}, at " + (
            f"{format_stat(r.cost, '.1f')} {'CPU ' if r.cost == r.cpu_seconds else ''}s per evaluation, "
            f"{format_stat(r.cost_ratio and 1 / r.cost_ratio, '.0f')}x cheaper than deployment"
        )
    else:
        head = (
            f"no candidate's share interval clears {share} x deployment's test-retest τ with an accuracy seed std "
            f"below its median gap; closest: {key} ranked by {signal}, {_how(choice)}: {numbers}; "
            "written unqualified"
        )
    return f"{head}. {_held_out(st, share)}"
