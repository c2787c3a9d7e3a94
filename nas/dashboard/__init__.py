"""What a run found, as pictures: `python -m nas.dashboard results/RUN`.

Writes two files into the run folder (or --out DIR):

  dashboard.html  one self-contained page (plotly.js inlined, no CDN, works offline):
                  * accuracy against each cost objective the trials measured (MACs, params,
                    latency, memory), one plot each: every trial is a point, coloured by its
                    non-domination rank over the run's objectives (0 = the Pareto front; Optuna's
                    fast non-dominated sort), the 2-D front of that plot as a step line, the knee
                    (what `python -m nas.export --pick knee` exports) as a star; stopped trials
                    (lower fidelity) as open circles, failed and infeasible ones (no accuracy: drawn
                    at 0) as crosses and diamonds. Hovering shows the arch id, its metrics and the
                    per-block map (conv or ACmix, kernels, heads, learned α/β); clicking a point
                    shows its block table and the export command.
                  * the hypervolume after each trial (pareto.hypervolume_history);
                  * a table of the front and one of every trial (errors of failed ones included).
  pareto.png      the same fronts for papers and READMEs (matplotlib).

It reads trials.jsonl as it is, so it works while a search is still appending to it (0 or 1
trials included). `--serve` then starts optuna-dashboard on the run's Optuna study
(study.journal), bound to 127.0.0.1 unless --host says otherwise.

The package, bottom to top: one data model computed once, two renderers over it.

- `nas.dashboard.style`: the styles both renderers share (`LABELS`, `KINDS`, `COLORSCALE`);
- `nas.dashboard.data`: `RunData` (the run read and aggregated once), a `TrialView` per
  architecture, a `CostPlot` per cost objective, `measured_costs`;
- `nas.dashboard.cells`: values as the page writes them, and its HTML tables;
- `nas.dashboard.figures`: the page's plotly figures (`pareto_figures`, `hypervolume_figure`,
  `hover_text`);
- `nas.dashboard.proxy_checks`: the fidelity check's panel and the proxy's calibration table;
- `nas.dashboard.html`: the page (`render_html`);
- `nas.dashboard.png`: pareto.png (`render_png`, matplotlib);
- `nas.dashboard.write`: both files from one read (`write_dashboard`, `DashboardFiles`, `HTML`, `PNG`);
- `nas.dashboard.serve`: optuna-dashboard on the run's study (`serve`, `port_in_use`);
- `nas.dashboard.cli`: `python -m nas.dashboard` (`main`).

    >>> files = write_dashboard(RunFolder('results/RUN'))
    >>> files.html.name, files.summary['front']
    ('dashboard.html', 3)
"""

from nas.dashboard.cli import main
from nas.dashboard.data import CostPlot, RunData, TrialView, measured_costs, trial_views
from nas.dashboard.figures import hover_text, hypervolume_figure, pareto_figures
from nas.dashboard.html import render_html
from nas.dashboard.png import render_png
from nas.dashboard.proxy_checks import calibration_section, fidelity_panel
from nas.dashboard.serve import port_in_use, serve
from nas.dashboard.style import COLORSCALE, KINDS, LABELS
from nas.dashboard.write import HTML, PNG, DashboardFiles, write_dashboard

__all__ = [
    "TrialView",
    "CostPlot",
    "RunData",
    "DashboardFiles",
    "HTML",
    "PNG",
    "LABELS",
    "KINDS",
    "COLORSCALE",
    "trial_views",
    "measured_costs",
    "hover_text",
    "pareto_figures",
    "hypervolume_figure",
    "fidelity_panel",
    "calibration_section",
    "render_html",
    "render_png",
    "write_dashboard",
    "serve",
    "port_in_use",
    "main",
]
