"""Calibration: fit the search's proxy to your data, against the training you deploy.

    python -m nas.calibrate --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist
    python -m nas.calibrate --space search_spaces/digits.yaml --time-budget 1800
    python -m nas.search --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        --proxy results/calibrate-symmetry-fashion-mnist/proxy.yaml

A calibration trains a panel of the space's architectures the way you deploy them and with every
candidate proxy (a subset x epochs x image size), measures how well each candidate and rank signal
ranks the panel like deployment and how noisy it is, with bootstrap intervals, and picks the
cheapest that qualifies among those the numbers cannot separate from the best (or says which are
tied); the pick is made on half the panel and confirmed on the other. It writes calibration.json
and proxy.yaml, which `python -m nas.search --proxy` takes.

The package, bottom to top:

- `nas.calibrate.panel`: what is trained: `Candidate` (one training setting), `candidate_sizes`,
  `candidate_grid`, the panel of architectures (`pick_panel`) and its halves (`split_panel`);
- `nas.calibrate.bootstrap`: the resampling (`draw`: panel networks and seed pairs), tau-b over the
  resamples (`kendall_tau_b`), the recall of deployment's top quarter and percentile intervals;
- `nas.calibrate.intervals`: deployment's side of each half (`Reference`) and a candidate's τ,
  share and recall with their intervals on one half (`half_stats`), the held-out `confirmation`;
- `nas.calibrate.stats`: the measurements: `SignalStats` and `signal_stats` (τ against deployment,
  its share of deployment's test-retest τ, the noise), `measured_signal` (with intervals),
  `CandidateResult`;
- `nas.calibrate.decide`: the pick, decided or tied (`pick`), and the `verdict`;
- `nas.calibrate.report`: calibration.json's contents (`calibration_report`), its table
  (`format_table`) and proxy.yaml (`proxy_file_text`);
- `nas.calibrate.plan`: the plan before training: the panel timed (`time_panel`), each setting's
  evaluations and seconds, the wall time on Ray's slots, a budget checked (`CalibrationPlan`) and
  settings proposed that fit it (`propose`, `Fit`);
- `nas.calibrate.run`: the calibration itself (`CalibrateOptions`, `calibrate`): options checked,
  folder and definition, the evaluations trained on Ray, the report written;
- `nas.calibrate.cli`: `python -m nas.calibrate` (`build_parser`, `main`).
"""

from nas.calibrate.bootstrap import Resamples, draw, kendall_tau_b, top_recall
from nas.calibrate.cli import build_parser, main
from nas.calibrate.decide import pick, verdict
from nas.calibrate.intervals import Reference, confirmation, half_stats, reference
from nas.calibrate.panel import Candidate, candidate_grid, candidate_sizes, pick_panel, split_panel
from nas.calibrate.report import calibration_report, format_table, proxy_file_text
from nas.calibrate.run import CalibrateOptions, calibrate
from nas.calibrate.stats import CandidateResult, SignalStats, measured_signal, signal_stats

__all__ = [
    "CalibrateOptions",
    "Candidate",
    "CandidateResult",
    "SignalStats",
    "signal_stats",
    "measured_signal",
    "Resamples",
    "draw",
    "kendall_tau_b",
    "top_recall",
    "Reference",
    "reference",
    "half_stats",
    "confirmation",
    "split_panel",
    "pick",
    "verdict",
    "candidate_sizes",
    "candidate_grid",
    "pick_panel",
    "calibrate",
    "calibration_report",
    "format_table",
    "proxy_file_text",
    "build_parser",
    "main",
]
