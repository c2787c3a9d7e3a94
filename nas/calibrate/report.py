"""A calibration's report: calibration.json's contents, the table printed for it, and proxy.yaml.

calibration.json holds deployment's numbers, the panel, every candidate's measurements, the signal,
the pick (or the closest) and the verdict; proxy.yaml the picked proxy as a `proxy:` section (with
`rank_by`) and the calibration it came from, for `python -m nas.search --proxy proxy.yaml`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import yaml

from nas.calibrate.panel import Candidate
from nas.calibrate.stats import (
    DeploymentResult,
    measure_candidate,
    measure_deployment,
    median_gap,
    pick,
    pooled_std,
    set_costs,
    verdict,
)
from nas.fidelity.stats import format_stat
from nas.proxy import SIGNALS, ProxyConfig
from nas.run.folder import RunFolder

__all__ = ["CALIBRATION_JSON", "PROXY_YAML", "format_table", "calibration_report", "proxy_file_text"]

CALIBRATION_JSON, PROXY_YAML = "calibration.json", "proxy.yaml"


def format_table(report: Mapping[str, Any]) -> str:
    """calibration.json's table for the terminal (and the README)."""
    d = report["deploy"]
    need = report["share"] * d["retest"] if d["retest"] is not None else None
    lines = [
        f"deployment: {d['train_images']:,} images x {d['epochs']} epochs at {d['image_size']}px, "
        f"{format_stat(d['seconds'], '.1f')} s per evaluation ({format_stat(d.get('cpu_seconds'), '.1f')} CPU s); "
        f"accuracy {format_stat(d['min'] and 100 * d['min'], '.1f')}-"
        f"{format_stat(d['max'] and 100 * d['max'], '.1f')}%, "
        f"seed std {format_stat(d['seed_std'] and 100 * d['seed_std'])} points, "
        f"median gap {format_stat(d['median_gap'] and 100 * d['median_gap'])} points; "
        f"test-retest τ {format_stat(d['retest'])} "
        f"(a qualifying proxy reaches τ >= {format_stat(need)} with an accuracy seed std below its median gap between "
        f"neighbouring panel networks)",
        f"{'':17} {'':>7} {'':>7} {'':>8} {'accuracy noise':^20} " + " ".join(f"{s:^13}" for s in SIGNALS),
        f"{'proxy':17} {'s/eval':>7} {'CPU s':>7} {'x deploy':>8} {'std':>6} {'retest':>6} {'s/gap':>6} "
        + " ".join(f"{'τ':>5} {'share':>5}  " for _ in SIGNALS),
    ]
    for r in report["candidates"]:
        if not r["signals"]:
            lines.append(f"{r['key']:17} {'-':>7}   measured {r['evaluations']} of {r['expected']} evaluations")
            continue
        acc = r["signals"]["accuracy"]
        cells = [
            f"{format_stat(st['tau']):>5} {format_stat(st['share']):>5} {'✓' if st['qualified'] else ' '}"
            for st in (r["signals"][s] for s in SIGNALS)
        ]
        lines.append(
            f"{r['key']:17} {format_stat(r['seconds'], '.1f'):>7} {format_stat(r.get('cpu_seconds'), '.1f'):>7} "
            f"{format_stat(r['cost_ratio'], '.3f'):>8} {format_stat(acc['seed_std'] and 100 * acc['seed_std']):>6} "
            f"{format_stat(acc['retest']):>6} {format_stat(acc['noise_ratio']):>6} "
            + " ".join(cells)
            + ("" if r["evaluations"] >= r["expected"] else f"  ({r['evaluations']}/{r['expected']})")
        )
    mean = report["mean_tau"]
    lines.append(
        f"{'mean τ':17} {'':>7} {'':>7} {'':>8} {'':>20} "
        + " ".join(f"{format_stat(mean[s]):>5}{'':8}" for s in SIGNALS)
    )
    lines.append(
        f"s/eval, CPU s: wall and CPU seconds per evaluation; x deploy: its {report.get('cost_by', 'wall')} "
        "seconds over deployment's; accuracy: its seed std (points), test-retest τ and seed std over the "
        "median gap between neighbouring panel networks; per rank signal: τ, one proxy seed vs one deployment seed "
        "(mean over the seed pairs), and its share of deployment's test-retest τ; ✓ qualifies"
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


def calibration_report(
    folder: RunFolder,
    definition: Mapping[str, Any],
    cands: Sequence[Candidate],
    panel: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    share: float,
) -> dict[str, Any]:
    """calibration.json's contents (without the minutes): deployment's numbers, the panel, each
    candidate's measurements, the signal and the pick (or the closest), and the verdict; nothing is
    picked before deployment is measured completely."""
    deploy_cand = cands[0]
    deploy = measure_deployment(folder, deploy_cand, panel, seeds)
    measured = deploy.accuracies if deploy.complete else []
    results = {c.key: measure_candidate(folder, c, panel, seeds, measured, deploy.retest, share) for c in cands[1:]}
    by_cpu = set_costs(results, deploy)
    choice = pick(list(results.values()))
    report = {
        "folder": str(folder.path),
        "space": definition["space"],
        "space_fingerprint": definition["space_fingerprint"],
        "dataset": definition["dataset"],
        "seeds": list(seeds),
        "share": share,
        "cost_by": "cpu" if by_cpu else "wall",
        "deploy": _deploy_section(definition, deploy_cand, deploy, panel, seeds),
        "panel": [
            {**{k: p[k] for k in ("name", "arch_id", "macs", "params")}, "deploy_accuracies": [d.get(s) for s in seeds]}
            for p, d in zip(panel, deploy.accuracies)
        ],
        "candidates": [
            {
                **{k: v for k, v in asdict(r).items() if k != "signals"},
                "signals": {s: asdict(st) for s, st in r.signals.items()},
            }
            for r in results.values()
        ],
        **choice,
        "verdict": verdict(choice, results, deploy.retest, share)
        if deploy.complete
        else "deployment training is not measured completely yet: nothing picked",
    }
    if not deploy.complete:
        report["pick"] = report["closest"] = None
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
        f"against deployment ({format_stat(st['share'])} of its test-retest τ)\n"
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
    return {
        "folder": str(folder.path),
        "qualified": report["pick"] is not None,
        "candidate": key,
        "signal": signal,
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
                **{s: {k: v[k] for k in ("tau", "share", "qualified")} for s, v in c["signals"].items()},
            }
            for c in report["candidates"]
            if c["signals"]
        ],
    }
