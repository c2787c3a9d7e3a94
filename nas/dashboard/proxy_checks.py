"""The proxy's checks on the page: the fidelity panel (`python -m nas.fidelity`'s fidelity.json:
proxy against long accuracy per architecture, its statistics and table) and the table of the
calibration the run's proxy came from (run.yaml `calibration`, from `python -m nas.calibrate`)."""

from __future__ import annotations

import html
import json
from typing import Any

from nas.dashboard.cells import format_number, format_percent, html_table
from nas.fidelity.reference import DEPLOYMENT, long_label
from nas.fidelity.report import promoted_lines
from nas.run.folder import RunConfig, RunFolder


def fidelity_panel(run: RunFolder) -> tuple[Any, str] | None:
    """The fidelity check's scatter (proxy mean vs long mean per architecture, std over seeds as
    error bars, τ, ρ and test-retest in the title) and its table; None without fidelity.json."""
    path = run.path / "fidelity.json"
    if not path.is_file():
        return None
    s = json.loads(path.read_text())
    deploy = s.get("reference") == DEPLOYMENT  # a report from before the deployment-like default: the same subset
    long = "deployment" if deploy else "longer training"
    return _fidelity_figure(s, long), _fidelity_head(s, deploy, long) + _fidelity_table(s, long)


def _fidelity_figure(s: dict[str, Any], long: str) -> Any:
    """The scatter of fidelity.json `s`: proxy mean vs `long` mean of each architecture that has both."""
    import plotly.graph_objects as go

    rows = [a for a in s["archs"] if a["proxy_mean"] is not None and a["long_mean"] is not None]
    fig = go.Figure(
        go.Scatter(
            x=[100 * a["proxy_mean"] for a in rows],
            y=[100 * a["long_mean"] for a in rows],
            mode="markers",
            error_x=dict(type="data", array=[100 * (a["proxy_std"] or 0) for a in rows]),
            error_y=dict(type="data", array=[100 * (a["long_std"] or 0) for a in rows]),
            marker=dict(size=9, color=["#d62728" if a["on_proxy_front"] else "#1f77b4" for a in rows]),
            text=[
                a["arch_id"]
                + (" (proxy front)" if a["on_proxy_front"] else "")
                + (" (long front)" if a["on_long_front"] else "")
                for a in rows
            ],
            hovertemplate="%{text}<br>proxy %{x:.2f}, long %{y:.2f}<extra></extra>",
            name="architectures",
        )
    )
    fig.update_layout(
        title=dict(
            text=f"proxy vs {long}: Kendall τ {format_number(s['kendall_tau'])}, Spearman ρ "
            f"{format_number(s['spearman_rho'])}; {long}'s own test-retest τ {format_number(s.get('long_test_retest_tau'))}",
            subtitle=dict(
                text=f"{s['proxy_epochs']} vs {s['long_epochs']} epochs, seeds "
                f"{', '.join(map(str, s['seeds']))}; error bars: std over seeds; red: proxy front"
            ),
        ),
        xaxis=dict(title=dict(text=f"proxy accuracy % ({s['proxy_epochs']} epochs, mean)")),
        yaxis=dict(title=dict(text=f"{long} accuracy % after {s['long_epochs']} epochs (mean)")),
        height=380,
        margin=dict(l=60, r=20, t=80, b=50),
        template="plotly_white",
    )
    return fig


def _fidelity_head(s: dict[str, Any], deploy: bool, long: str) -> str:
    """The heading and the paragraph of statistics over the fidelity table."""
    return (
        f"<h2>Does the proxy rank like {'deployment training' if deploy else 'longer training'}? "
        f"(<code>python -m nas.fidelity</code>)</h2><p>Against {html.escape(long_label(s))}: Kendall τ "
        f"{format_number(s['kendall_tau'])}, Spearman ρ {format_number(s['spearman_rho'])} (first seed alone: τ "
        f"{format_number(s['seed0_kendall_tau'])}); the reference's own test-retest τ {format_number(s.get('long_test_retest_tau'))}, "
        f"one proxy seed vs one reference seed τ {format_number(s.get('pair_kendall_tau'))}; the proxy's test-retest τ "
        f"{format_number(s['test_retest_tau'])}; seed std: proxy {format_percent(s['proxy_seed_std'], None)}, {long} "
        f"{format_percent(s['long_seed_std'], None)} points; {len(s['proxy_front_kept'])} of {len(s['proxy_front'])} proxy "
        f"front points stay on the {long} front.</p>"
        + "".join(f"<p>{html.escape(line[0].upper() + line[1:])}.</p>" for line in promoted_lines(s, long))
    )


def _fidelity_table(s: dict[str, Any], long: str) -> str:
    """Every architecture of the fidelity check: its means ± std and which fronts it is on."""
    return html_table(
        ["arch id", "proxy (mean ± std)", f"{long} (mean ± std)", "proxy front", f"{long} front"],
        [
            [
                f"<code>{html.escape(a['arch_id'])}</code>",
                format_percent(a["proxy_mean"], a["proxy_std"]),
                format_percent(a["long_mean"], a["long_std"]),
                "●" if a["on_proxy_front"] else "",
                "●" if a["on_long_front"] else "",
            ]
            for a in s["archs"]
        ],
        left=(0,),
    )


def calibration_section(config: RunConfig) -> str:
    """The table of the calibration the run's proxy came from (run.yaml `calibration`, from
    `nas.search --proxy`); '' for a run on a proxy that was not calibrated."""
    cal = config.calibration
    if not cal.get("table"):
        return ""
    signals = [k for k in cal["table"][0] if isinstance(cal["table"][0][k], dict)]
    rows = [
        [
            f"<code>{html.escape(r['key'])}</code>" + (" ◀ this run" if r["key"] == cal.get("candidate") else ""),
            format_number(r["seconds"], ".1f"),
            format_number(r["cost_ratio"], ".3f"),
            format_number(r.get("accuracy_noise_ratio")),
            *[
                f"{format_number(r[s]['tau'])} · {format_number(r[s]['share'])}"
                + (
                    f" [{format_number(r[s]['share_ci'][0])}, {format_number(r[s]['share_ci'][1])}]"
                    if r[s].get("share_ci")
                    else ""
                )
                + (" ✓" if r[s]["qualified"] else "")
                for s in signals
            ],
        ]
        for r in cal["table"]
    ]
    d = cal.get("deploy") or {}
    head = (
        f"<h2>The proxy's calibration (<code>python -m nas.calibrate</code>)</h2><p>{html.escape(str(cal.get('verdict', '')))}"
        f"<br>Against deployment-like training on {html.escape(str(cal.get('dataset')))}: "
        f"{format_number(d.get('train_images'), ',')} images × {d.get('epochs')} epochs, {format_number(d.get('seconds'), '.1f')} s "
        f"per evaluation, test-retest τ {format_number(d.get('retest'))}. Accuracy std/gap: the proxy's accuracy seed std "
        f"over the median gap between neighbouring panel networks (below 1 to qualify); per rank signal: τ (one proxy seed "
        f"vs one deployment seed) · its share of deployment's test-retest τ [the share's 90% bootstrap interval, where the "
        f"calibration has one]; ✓ qualifies. Folder: "
        f"<code>{html.escape(str(cal.get('folder')))}</code></p>"
    )
    return head + html_table(
        ["proxy", "s / evaluation", "× deployment", "accuracy std/gap", *[f"{s}: τ · share" for s in signals]],
        rows,
        left=(0,),
    )
