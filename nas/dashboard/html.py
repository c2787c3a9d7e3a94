"""dashboard.html: one self-contained page (plotly.js inlined, no CDN, works offline) with the
figures (`nas.dashboard.figures`), the proxy's checks (`nas.dashboard.proxy_checks`), the table of
the front and the table of every trial; clicking a point shows its block table and export command.
`render_html` returns the page and a summary of it."""

from __future__ import annotations

import html
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from nas.cli import shell_command
from nas.dashboard.cells import format_noise, format_value, html_table
from nas.dashboard.data import RunData, TrialView
from nas.dashboard.figures import hypervolume_figure, pareto_figures
from nas.dashboard.proxy_checks import calibration_section, fidelity_panel
from nas.run.folder import RunFolder
from nas.run.pareto import OBJECTIVES
from nas.search.report import listed, noise_line, promotion_lines

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>acmix-nas · {title}</title>
<script>
window.__errors = [];
function __report(msg) {{
  window.__errors.push(String(msg));
  var el = document.getElementById('js-errors');
  if (el) {{ el.textContent = window.__errors.join('\\n'); el.hidden = false; }}
}}
window.addEventListener('error', function (e) {{ __report(e.message || e); }});
window.addEventListener('unhandledrejection', function (e) {{ __report(e.reason); }});
</script>
<script>{plotly_js}</script>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.4em; margin-bottom: 0.2em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
.meta {{ color: #555; }} .plots {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 1em; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ddd; padding: 3px 7px; text-align: right; }}
th {{ background: #f4f4f4; }} td.l, th.l {{ text-align: left; }} tr.knee td {{ background: #fff6d5; }}
code {{ background: #f4f4f4; padding: 0 3px; }} #details {{ border: 1px solid #ccc; padding: 0.6em 1em; margin-top: 1em; }}
#js-errors {{ color: #b00; white-space: pre-wrap; }} .empty {{ color: #777; font-style: italic; }}
</style></head>
<body>
<h1>acmix-nas run <code>{title}</code></h1>
<div class="meta">{meta}</div>
<pre id="js-errors" hidden></pre>
<p>Status: <span id="render-status">not rendered</span>;
points drawn: <span id="n-points">0</span></p>
{empty}
<div class="plots">{plot_divs}</div>
<div id="details" hidden></div>
{fidelity}
<h2>Pareto front ({n_front} of {n_trials} trials)</h2>
{front_table}
<details><summary><b>All trials</b> ({n_trials})</summary>{all_table}</details>
<script id="figures" type="application/json">{figures_json}</script>
<script id="trials" type="application/json">{trials_json}</script>
<script>
(function () {{
  var figs = JSON.parse(document.getElementById('figures').textContent);
  var trials = JSON.parse(document.getElementById('trials').textContent);
  var details = document.getElementById('details');
  function esc(s) {{ var d = document.createElement('div'); d.textContent = s == null ? '' : String(s); return d.innerHTML; }}
  function show(num) {{
    var t = trials[num]; if (!t) return;
    var rows = t.blocks.map(function (b) {{
      return '<tr>' + [b.stage, b.index, b.block, b.op, b.width, b.stride, b.feat_size.join('x'),
        b.kernel, b.heads, b.k_att, b.k_conv,
        b.alpha == null ? '' : b.alpha.toFixed(3), b.beta == null ? '' : b.beta.toFixed(3),
        b.rates || ''].map(function (v) {{ return '<td>' + esc(v == null ? '' : v) + '</td>'; }}).join('') + '</tr>';
    }}).join('');
    details.innerHTML = '<b>' + esc(t.arch_id) + '</b> (#' + t.number + ', ' + esc(t.status) + ') ' + esc(t.summary) +
      '<br>export: <code>' + esc(t.export) + '</code>' +
      '<table><tr><th>stage</th><th>block</th><th>kind</th><th>op</th><th>width</th><th>stride</th><th>output</th>' +
      '<th>kernel</th><th>heads</th><th>k_att</th><th>k_conv</th><th>α</th><th>β</th><th>α/β</th></tr>' + rows + '</table>';
    details.hidden = false;
  }}
  var jobs = Object.keys(figs).map(function (key) {{
    var gd = document.getElementById('plot-' + key);
    return Plotly.newPlot(gd, figs[key].data, figs[key].layout,
                          {{displaylogo: false, responsive: true}}).then(function () {{
      if (gd.on) gd.on('plotly_click', function (ev) {{ if (ev.points.length) show(ev.points[0].customdata); }});
      var n = gd.querySelectorAll('.scatterlayer .point').length;
      gd.setAttribute('data-points', String(n));
      return n;
    }});
  }});
  Promise.all(jobs).then(function (counts) {{
    var first = document.querySelector('.plots [id^="plot-"]');
    document.getElementById('n-points').textContent = first ? first.getAttribute('data-points') : '0';
    document.getElementById('render-status').textContent = window.__errors.length ? 'errors' : 'rendered';
  }}, function (e) {{ __report(e); }});
}})();
</script>
</body></html>
"""


def _json_for_script(obj: Any) -> str:
    """JSON safe inside <script>: '</' cannot close the element."""
    return obj.replace("</", "<\\/") if isinstance(obj, str) else json.dumps(obj).replace("</", "<\\/")


def render_html(run: RunFolder, data: RunData | None = None) -> tuple[str, dict[str, Any]]:
    """The dashboard page, and a summary (trials, front size, points per plot, hypervolume)."""
    import plotly.offline

    data = data or RunData.read(run)
    records, costs = data.records, data.costs
    figures_json, plot_divs, fidelity = _figures(run, data)
    n_front, hv = len(data.summary["front"]), data.hypervolume
    page = _PAGE.format(
        title=html.escape(data.config.name or run.path.name),
        meta=_meta(run, data),
        empty=_EMPTY if not records else "",
        plot_divs=plot_divs,
        plotly_js=plotly.offline.get_plotlyjs(),
        n_front=n_front,
        n_trials=len(records),
        front_table=_front_table(run, data),
        all_table=_all_table(data),
        fidelity=_promotion(run, data) + fidelity + calibration_section(data.config),
        figures_json=_json_for_script(figures_json),
        trials_json=_json_for_script(_trials_json(run, data.views)),
    )
    points = {c: len(data.plot(c).points) for c in costs}
    return page, dict(trials=len(records), front=n_front, points=points, costs=costs, hypervolume=hv)


_EMPTY = (
    '<p class="empty">No finished trials yet: this page shows the run as it is; run the command again '
    "to refresh it.</p>"
)


def _figures(run: RunFolder, data: RunData) -> tuple[str, str, str]:
    """The page's plots: their figures as one JSON object (key -> plotly figure), a <div> per
    plot, and the fidelity check's section ('' before `python -m nas.fidelity` has run)."""
    import plotly.io as pio

    figs = pareto_figures(data)
    hv_fig = hypervolume_figure(
        data.records, data.hypervolumes, data.config.objectives, data.scales, data.scales_from_data
    )
    fidelity = fidelity_panel(run)  # only once python -m nas.fidelity has run
    panels = [*figs.items(), ("hypervolume", hv_fig)] + ([("fidelity", fidelity[0])] if fidelity else [])
    fig_json = "{" + ",".join(f"{json.dumps(k)}:{pio.to_json(f, validate=False)}" for k, f in panels) + "}"
    plot_divs = "".join(f'<div id="plot-{k}"></div>' for k, _ in panels)
    return fig_json, plot_divs, fidelity[1] if fidelity else ""


def _meta(run: RunFolder, data: RunData) -> str:
    """The lines under the title: objectives, sampler, space, data, device; the trials by status,
    the front's size and the hypervolume."""
    config, records = data.config, data.records
    counts = Counter(r.status for r in records)
    return (
        f"objectives: {', '.join(f'{o} ({OBJECTIVES[o][1]})' for o in config.objectives)} · sampler "
        f"{html.escape(config.sampler)}, seed {config.seed} · space "
        f"<code>{html.escape(config.space_file or '?')}</code> · data {html.escape(config.data.dataset)}"
        f" · device {html.escape(config.device)}<br>"
        f"{len(records)} trials: "
        + (", ".join(f"{n} {s}" for s, n in counts.most_common()) or "none yet")
        + f" · front: {len(data.summary['front'])} · hypervolume {data.hypervolume:.4f} · written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )


def _promotion(run: RunFolder, data: RunData) -> str:
    """The promotion's section: the rung the front is at, what it cost and the proxy's rank
    agreement with that rung, as the search's last lines say it; '' for a run not promoted."""
    lines = promotion_lines(data.summary, data.records, run.path)
    if not lines:
        return ""
    rung = data.summary["fidelity"]["rung"]
    return f"<h2>Promotion: the front at rung {rung}</h2>" + "".join(f"<p>{html.escape(x)}</p>" for x in lines)


def _front_table(run: RunFolder, data: RunData) -> str:
    """The table of the front: pareto.json's entries (`Archive.summary`: means, noise, whether
    each is separable from the points behind it, its chance on the noise-free front), with the knee
    marked and each export command, under the search's line on its seed noise (`noise_line`)."""
    by_num = {v.record.number: v for v in data.views}
    scored = int(any(v.scored for v in data.views))  # a promoted run: which training scored each point
    fcosts = [o for o in data.config.objectives if o != "accuracy"]
    shown = fcosts + [c for c in data.costs if c not in fcosts]
    rows, classes = [], []
    for i, a in enumerate(data.summary["front"], 1):
        v = by_num[a["number"]]
        n_acmix = sum(b["op"] == "acmix" for b in v.blocks)
        rows.append(
            [
                i,
                f"<code>{a['arch_id']}</code>" + (" ★ knee" if v.is_knee else ""),
                html.escape(a["reference"] or ""),
                format_value("accuracy", a["accuracy"]) + format_noise(a["seeds"], a["accuracy_se"]),
                "yes" if a["separable"] else "⚠ within noise of " + listed(a["unseparable_from"]),
                "-" if a.get("p_front") is None else f"{a['p_front']:.2f}",
                *([html.escape(v.scored)] if scored else []),
                *[format_value(c, a[c]) for c in shown],
                v.record.epochs,
                f"{n_acmix}/{len(v.blocks)}",
                html.escape(v.summary),
                f"<code>{html.escape(shell_command('export', run.path, '--arch-id', a['arch_id']))}</code>",
            ]
        )
        classes.append("knee" if v.is_knee else "")
    header = ["#", "arch id", "reference", "accuracy (mean ± s.e.)", "separable", "P(front)"]
    header += [*(["scored by"] if scored else []), *shown, "epochs", "ACmix blocks", "architecture", "export"]
    k = len(shown) + scored
    noise = f"<p>{html.escape(noise_line(data.summary, run.path))}</p>" if data.records else ""
    return noise + html_table(header, rows, left=(1, 2, 4, *([6] if scored else []), 8 + k, 9 + k), row_class=classes)


def _all_table(data: RunData) -> str:
    """The table of every evaluation (seeds apart), with the rank of its architecture's mean and
    the error of a failed one."""
    costs = data.costs
    rank_of = {v.record.arch_id: v.rank for v in data.views}
    rows = [
        [
            r.number,
            f"<code>{r.arch_id}</code>",
            "" if r.seed is None else r.seed,
            html.escape(r.status),
            "" if rank_of.get(r.arch_id) is None else rank_of[r.arch_id],
            format_value("accuracy", r.accuracy),
            *[format_value(c, r.value(c)) for c in costs],
            r.epochs,
            f"{r.seconds:.1f}",
            html.escape(r.error or ""),
        ]
        for r in data.records
    ]
    return html_table(
        ["#", "arch id", "seed", "status", "rank (of its mean)", "accuracy", *costs, "epochs", "seconds", "error"],
        rows,
        left=(1, 3, 9 + len(costs)),
    )


def _trials_json(run: RunFolder, views: Sequence[TrialView]) -> dict[int, dict[str, Any]]:
    """What clicking a point shows, by its number: its block table, its summary, its export command."""
    return {
        v.record.number: dict(
            number=v.record.number,
            arch_id=v.record.arch_id,
            status=v.record.status,
            blocks=v.blocks,
            summary=v.summary,
            export=shell_command("export", run.path, "--arch-id", v.record.arch_id),
        )
        for v in views
    }
