"""The fidelity check: does the proxy rank architectures like the training you deploy?

    python -m nas.fidelity results/<run>                     # 12 architectures, deployment-like training, 2 seeds
    python -m nas.fidelity results/<run> --archs 8 --epochs 40 --seeds 3 --cpus-per-trial 2
    python -m nas.fidelity results/<run> --same-subset       # the proxy's own subset, longer: not deployment
    python -m nas.fidelity results/<run> --archs 20 --pick ranks --score-on test   # the front's precision, recall

The package, bottom to top:

- `nas.fidelity.stats`: the numbers: `rank_corr` (Kendall τ, Spearman ρ), `retest_tau`, `pair_tau`,
  `seed_values` (per architecture, seed -> value, off evaluation records), `ArchFidelity`,
  `fidelity_stats`, `long_front`, `front_agreement` (a front's precision and recall against
  another), `noise_agreement` (the same within the long training's seed noise, with the accuracy
  gap between the fronts; `pooled_std`) and `format_stat` (a statistic in a table, '-' when undefined);
- `nas.fidelity.reference`: the training a proxy is checked against: deployment-like (`deployment`,
  `default_epochs`, `scored_on_test` for `--score-on test`) or the proxy's subset longer
  (`DEPLOYMENT`, `SAME_SUBSET`, `SCORED_ON`, `long_label`);
- `nas.fidelity.report`: fidelity.json's contents (`report`) and the table (`format_table`);
- `nas.fidelity.check`: the check of a run: the architectures picked (`pick_archs`), the
  evaluations (`plan_jobs`), trained on Ray, and the report written (`check`, `FidelityOptions`);
- `nas.fidelity.cli`: `python -m nas.fidelity RUN` (`build_parser`, `main`).

`fidelity_stats` computes the numbers from per-architecture accuracies alone (tests, notebooks).
"""

from nas.fidelity.check import (
    DEPLOY_RECORDS,
    DEPLOY_TEST_RECORDS,
    FIDELITY_JSON,
    FIDELITY_RECORDS,
    PICKS,
    FidelityOptions,
    check,
    pick_archs,
    plan_jobs,
)
from nas.fidelity.cli import build_parser, main
from nas.fidelity.reference import (
    DEPLOYMENT,
    SAME_SUBSET,
    SCORED_ON,
    default_epochs,
    deployment,
    long_label,
    scored_on_test,
)
from nas.fidelity.report import format_table, report
from nas.fidelity.stats import (
    ArchFidelity,
    fidelity_stats,
    format_stat,
    front_agreement,
    long_front,
    noise_agreement,
    pair_tau,
    pooled_std,
    rank_corr,
    retest_tau,
    seed_values,
)

__all__ = [
    "FIDELITY_RECORDS",
    "DEPLOY_RECORDS",
    "DEPLOY_TEST_RECORDS",
    "FIDELITY_JSON",
    "PICKS",
    "SCORED_ON",
    "DEPLOYMENT",
    "SAME_SUBSET",
    "FidelityOptions",
    "ArchFidelity",
    "pick_archs",
    "deployment",
    "scored_on_test",
    "default_epochs",
    "plan_jobs",
    "rank_corr",
    "pair_tau",
    "retest_tau",
    "seed_values",
    "fidelity_stats",
    "long_front",
    "front_agreement",
    "noise_agreement",
    "pooled_std",
    "report",
    "format_stat",
    "long_label",
    "format_table",
    "check",
    "build_parser",
    "main",
]
