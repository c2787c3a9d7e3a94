"""A calibration's report: calibration.json's contents, the table printed for it, and proxy.yaml.

calibration.json holds deployment's numbers, the panel and its halves, the bootstrap's method,
every candidate's measurements with their intervals ([lo, hi]), the signal, the pick (or the
closest), whether it was decided or tied and with which, its held-out confirmation and the verdict;
proxy.yaml the picked proxy as a `proxy:` section (with `rank_by`) and the calibration it came from,
for `python -m nas.search --proxy proxy.yaml`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import yaml

from nas.calibrate.bootstrap import LEVEL, RESAMPLES
from nas.calibrate.decide import format_ci, pick, verdict
from nas.calibrate.intervals import Reference, confirmation, reference
from nas.calibrate.panel import Candidate
from nas.calibrate.stats import (
    DeploymentResult,
    measure_candidate,
    measure_deployment,
    median_gap,
    pooled_std,
    set_costs,
)
from nas.fidelity.stats import format_stat
from nas.proxy import SIGNALS, ProxyConfig
from nas.run.folder import RunFolder

__all__ = ["CALIBRATION_JSON", "PROXY_YAML", "format_table", "calibration_report", "proxy_file_text"]

CALIBRATION_JSON, PROXY_YAML = "calibration.json", "proxy.yaml"
BOOTSTRAP_METHOD = (
    "percentile bootstrap over panel networks (with replacement) and seed pairs (per network drawn, which proxy "
    "seed meets which deployment seed), on the same resamples for every candidate (paired differences)"
)


def _cell(st: Mapping[str, Any]) -> str:
    """One signal's cell: τ, share and the share's interval, ✓ where it qualifies."""
    ci = st.get("share_ci")
    lo_hi = f"[{format_stat(ci[0]):>5} {format_stat(ci[1]):>5}]" if ci else f"[{'-':>5} {'-':>5}]"
    return f"{format_stat(st['tau']):>5} {format_stat(st['share']):>5} {lo_hi} {'✓' if st['qualified'] else ' '}"


def _mark(report: Mapping[str, Any], key: str) -> str:
    chosen = report.get("pick") or report.get("closest")
    if chosen and chosen[0] == key:
        return "◀ picked" if report.get("pick") else "◀ closest"
    return "tied" if any(k == key for k, _ in report.get("tied") or []) else ""


def _head(report: Mapping[str, Any]) -> list[str]:
    """The table's first lines: deployment, the halves and the bar."""
    d, halves = report["deploy"], report.get("halves") or {}
    pick_half, held = halves.get("pick") or {}, halves.get("held_out")
    need = report["share"] * pick_half["retest"] if pick_half.get("retest") is not None else None
    level = (report.get("bootstrap") or {}).get("level", 0.9)
    return [
        f"deployment: {d['train_images']:,} images x {d['epochs']} epochs at {d['image_size']}px, "
        f"{format_stat(d['seconds'], '.1f')} s per evaluation ({format_stat(d.get('cpu_seconds'), '.1f')} CPU s); "
        f"accuracy {format_stat(d['min'] and 100 * d['min'], '.1f')}-"
        f"{format_stat(d['max'] and 100 * d['max'], '.1f')}%, "
        f"seed std {format_stat(d['seed_std'] and 100 * d['seed_std'])} points, "
        f"median gap {format_stat(d['median_gap'] and 100 * d['median_gap'])} points; "
        f"test-retest τ {format_stat(d['retest'])} over the {len(report['panel'])} networks",
        f"picked on {pick_half.get('networks', '-')} networks (deployment's test-retest τ there "
        f"{format_stat(pick_half.get('retest'))} {format_ci(pick_half.get('retest_ci'))}), "
        + (
            f"held out: the other {held['networks']} (τ {format_stat(held['retest'])} {format_ci(held['retest_ci'])})"
            if held
            else "no held-out half (a panel under 8 networks is not split)"
        )
        + f"; {round(100 * level)}% bootstrap intervals; a qualifying proxy's share interval clears "
        f"{report['share']} (τ >= {format_stat(need)} there) with an accuracy seed std below the median gap between "
        "neighbouring panel networks",
    ]


def format_table(report: Mapping[str, Any]) -> str:
    """calibration.json's table for the terminal (and the README)."""
    sig = report["signal"]
    lines = [
        *_head(report),
        f"{'':17} {'':>7} {'':>7} {'':>8} {'accuracy noise':^20} "
        + " ".join(f"{s:^24}" for s in SIGNALS)
        + f" {'held out, ' + sig:^20} {'top-¼ recall':^17}",
        f"{'proxy':17} {'s/eval':>7} {'CPU s':>7} {'x deploy':>8} {'std':>6} {'retest':>6} {'s/gap':>6} "
        + " ".join(f"{'τ':>5} {'share':>5} {'[share interval]':>13} " for _ in SIGNALS)
        + f" {'τ':>5} {'share':>5} {'[lo':>5} {'hi]':>5} {'':>4}{sig}",
    ]
    for r in report["candidates"]:
        if not r["signals"]:
            lines.append(f"{r['key']:17} {'-':>7}   measured {r['evaluations']} of {r['expected']} evaluations")
            continue
        acc, chosen = r["signals"]["accuracy"], r["signals"][sig]
        held = chosen.get("held_out") or {}
        lines.append(
            f"{r['key']:17} {format_stat(r['seconds'], '.1f'):>7} {format_stat(r.get('cpu_seconds'), '.1f'):>7} "
            f"{format_stat(r['cost_ratio'], '.3f'):>8} {format_stat(acc['seed_std'] and 100 * acc['seed_std']):>6} "
            f"{format_stat(acc['retest']):>6} {format_stat(acc['noise_ratio']):>6} "
            + " ".join(_cell(r["signals"][s]) for s in SIGNALS)
            + f" {format_stat(held.get('tau')):>5} {format_stat(held.get('share')):>5} "
            + (
                f"{format_stat(held['share_ci'][0]):>5} {format_stat(held['share_ci'][1]):>5}"
                if held.get("share_ci")
                else f"{'-':>5} {'-':>5}"
            )
            + f" {format_stat(chosen.get('recall')):>5} {format_ci(chosen.get('recall_ci'))} {_mark(report, r['key'])}"
            + ("" if r["evaluations"] >= r["expected"] else f"  ({r['evaluations']}/{r['expected']})")
        )
    mean = report["mean_tau"]
    lines.append(
        f"{'mean τ':17} {'':>7} {'':>7} {'':>8} {'':>20} "
        + " ".join(f"{format_stat(mean[s]):>5}{'':19}" for s in SIGNALS)
    )
    lines.append(
        f"s/eval, CPU s: wall and CPU seconds per evaluation; x deploy: its {report.get('cost_by', 'wall')} "
        "seconds over deployment's; accuracy: its seed std (points), test-retest τ and seed std over the "
        "median gap between neighbouring panel networks (the whole panel); per rank signal, on the networks the pick "
        "is made on: τ, one proxy seed vs one deployment seed (mean over the seed pairs), its share of deployment's "
        "test-retest τ there and the share's interval; ✓ qualifies; held out: the same for the signal on the other "
        "half; top-¼ recall: of deployment's top quarter, the share in the proxy's top quarter (pick half)"
    )
    lines.append(report["verdict"])
    return "\n".join(lines)


def _deploy_section(
    definition: Mapping[str, Any],
    cand: Candidate,
    deploy: DeploymentResult,
    panel: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
) -> dict[str, Any]:
    """calibration.json's `deploy`: the setting, how much of it is measured, its time and its noise."""
    means = [statistics.mean(d.values()) for d in deploy.accuracies if d]
    return {
        **definition["deploy"],
        "key": cand.key,
        "evaluations": sum(len(d) for d in deploy.accuracies),
        "expected": len(panel) * len(seeds),
        "seconds": deploy.seconds,
        "cpu_seconds": deploy.cpu_seconds,
        "retest": deploy.retest,
        "seed_std": pooled_std(deploy.accuracies),
        "median_gap": median_gap(means),
        "min": min(means) if means else None,
        "max": max(means) if means else None,
    }


def _halves(ref: Reference | None, panel: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """calibration.json's `halves`: the networks the pick is made on and those it is confirmed on,
    with deployment's test-retest τ on each."""
    if ref is None:
        return None
    return {
        name: None if half is None else {**half.summary(), "arch_ids": [panel[i]["arch_id"] for i in half.rows]}
        for name, half in (("pick", ref.pick), ("held_out", ref.held_out))
    }


def calibration_report(
    folder: RunFolder,
    definition: Mapping[str, Any],
    cands: Sequence[Candidate],
    panel: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    share: float,
) -> dict[str, Any]:
    """calibration.json's contents (without the minutes): deployment's numbers, the panel and its
    halves, each candidate's measurements, the signal and the pick (or the closest), how it was
    decided, its confirmation and the verdict; nothing is picked before deployment is measured
    completely."""
    deploy_cand = cands[0]
    deploy = measure_deployment(folder, deploy_cand, panel, seeds)
    ref = reference(deploy.accuracies, seeds, definition["seed"]) if deploy.complete else None
    results = {c.key: measure_candidate(folder, c, panel, seeds, ref, share) for c in cands[1:]}
    by_cpu = set_costs(results, deploy)
    choice = pick(list(results.values()))
    chosen = choice["pick"] or choice["closest"]
    report = {
        "folder": str(folder.path),
        "space": definition["space"],
        "space_fingerprint": definition["space_fingerprint"],
        "dataset": definition["dataset"],
        "seeds": list(seeds),
        "share": share,
        "cost_by": "cpu" if by_cpu else "wall",
        "bootstrap": {"method": BOOTSTRAP_METHOD, "resamples": RESAMPLES, "level": LEVEL, "seed": definition["seed"]},
        "deploy": _deploy_section(definition, deploy_cand, deploy, panel, seeds),
        "halves": _halves(ref, panel),
        "panel": [
            {**{k: p[k] for k in ("name", "arch_id", "macs", "params")}, "deploy_accuracies": [d.get(s) for s in seeds]}
            for p, d in zip(panel, deploy.accuracies)
        ],
        "candidates": [
            {
                **{k: v for k, v in asdict(r).items() if k not in ("signals", "samples")},
                "signals": {s: asdict(st) for s, st in r.signals.items()},
            }
            for r in results.values()
        ],
        **choice,
        "confirmation": confirmation(results[chosen[0]].signals[chosen[1]].held_out, share) if chosen else "none",
        "verdict": verdict(choice, results, ref.pick.retest, share)
        if ref is not None
        else "deployment training is not measured completely yet: nothing picked",
    }
    if ref is None:
        report["pick"] = report["closest"] = report["decided"] = None
    return report


# the deployment numbers proxy.yaml's calibration section repeats from calibration.json
_PROXY_FILE_DEPLOY = (
    "key",
    "train_images",
    "epochs",
    "image_size",
    "seconds",
    "cpu_seconds",
    "retest",
    "seed_std",
    "median_gap",
)


def proxy_file_text(
    folder: RunFolder,
    definition: Mapping[str, Any],
    report: Mapping[str, Any],
    base: ProxyConfig,
    choice: Sequence[str],
) -> str:
    """proxy.yaml: a comment saying where it comes from and how to search with it, the chosen
    candidate as a `proxy:` section ranked by the chosen signal, and its `calibration:`."""
    key, signal = choice
    cand = next(c for c in report["candidates"] if c["key"] == key)
    proxy = replace(
        base, subset=cand["subset"], epochs=cand["epochs"], image_size=cand["image_size"], rank_by=signal
    ).checked()
    st = cand["signals"][signal]
    head = (
        f"# A proxy fitted by python -m nas.calibrate ({folder.path / CALIBRATION_JSON}):\n"
        f"# {report['verdict']}\n# {key}: {cand['seconds']:.1f} s per evaluation, τ {format_stat(st['tau'])} "
        f"against deployment ({format_stat(st['share'])} {format_ci(st.get('share_ci'))} of its test-retest τ), "
        f"{'decided' if report.get('decided') else 'tied'}, held out: {report.get('confirmation')}\n"
        f"# search with it: python -m nas.search --space {definition['space_file']} --dataset "
        f"{definition['dataset']}"
        + (f" --data-dir {definition['data_dir']}" if definition["data_dir"] else "")
        + f" --proxy {folder.path / PROXY_YAML}\n"
    )
    body = {
        "proxy": {**proxy.to_dict(), "rank_by": signal},
        "calibration": _calibration_section(folder, definition, report, key, signal),
    }
    return head + yaml.safe_dump(json.loads(json.dumps(body)), sort_keys=False, allow_unicode=True)


def _calibration_section(
    folder: RunFolder, definition: Mapping[str, Any], report: Mapping[str, Any], key: str, signal: str
) -> dict[str, Any]:
    """proxy.yaml's `calibration:`: what the proxy was measured against and the table it was picked from."""
    cand = next(c for c in report["candidates"] if c["key"] == key)
    return {
        "folder": str(folder.path),
        "qualified": report["pick"] is not None,
        "candidate": key,
        "signal": signal,
        "decided": report.get("decided"),  # separated from every other candidate, else tied with `tied`
        "tied": [list(o) for o in report.get("tied") or []],
        "confirmation": report.get("confirmation"),  # on the held-out half: confirmed, inconclusive, failed, none
        "held_out": cand["signals"][signal].get("held_out"),
        "space": definition["space"],
        "space_fingerprint": definition["space_fingerprint"],
        "dataset": definition["dataset"],
        "seed": definition["seed"],
        "verdict": report["verdict"],
        "deploy": {k: report["deploy"][k] for k in _PROXY_FILE_DEPLOY},
        "cost_by": report["cost_by"],
        "table": [
            {
                "key": c["key"],
                "seconds": c["seconds"],
                "cpu_seconds": c["cpu_seconds"],
                "cost_ratio": c["cost_ratio"],
                "accuracy_noise_ratio": c["signals"]["accuracy"]["noise_ratio"],
                **{
                    s: {k: v.get(k) for k in ("tau", "share", "qualified", "tau_ci", "share_ci")}
                    for s, v in c["signals"].items()
                },
            }
            for c in report["candidates"]
            if c["signals"]
        ],
    }
