"""Multi-objective architecture search with Optuna samplers on Ray Tune (`python -m nas.search`).

    python -m nas.search --budget 100                       # symmetry task, accuracy vs MACs, on this machine
    python -m nas.search --resume results/<run>             # after Ctrl-C or a crash

or from Python (a notebook, a script), with the same options as keyword arguments:

    >>> import nas.search
    >>> run = nas.search.run('search_spaces/digits.yaml', budget=20, objectives=['accuracy', 'params'])
    >>> run.front()                                          # the Pareto front's TrialRecords
    >>> run = nas.search.run(resume=run.path, budget=40)     # continue it to a larger budget

Each trial is one architecture, sampled define-by-run from the YAML space by an Optuna sampler,
evaluated by `nas.trial.evaluate` (built as a timm model, costed, trained as a short proxy, scored
on the validation split) inside Ray Tune (`nas.tune`). The space's reference points (all-conv,
all-ACmix, the paper's placement) are evaluated first. Everything lands in results/<run>/ (see
`nas.run.folder`), with trials.jsonl as the record of what is done.

The package, bottom to top:

- `nas.search.options`: `SearchOptions`, their defaults and checks, their form in run.yaml;
- `nas.search.told`: what Optuna is told of an architecture (`optuna_result`), one form for every tell;
- `nas.search.study`: the run's Optuna study, sampled by a sampler of `nas.samplers`;
- `nas.search.state`: `RunState`, the one driver state (one `Archive`, trials numbered once) the
  searcher and the recorder share;
- `nas.search.report`: the run in words (the front, the seed noise, the notes at the start);
- `nas.search.progress`: the live progress display (a Tune callback);
- `nas.search.rungs`: the run's fidelity ladder (rung 0 the proxy, rung 1 deployment-like);
- `nas.search.promote`: the front and the points within its noise trained again at rung 1, after
  the proxy search (by rank and crowding, within a share of its compute), and the check that gives;
- `nas.search.searcher`: `ArchSearcher`, Tune's searcher over the study (racing, GPU shares);
- `nas.search.recorder`: `Recorder`, the run folder's only writer, and `FailureStopper`;
- `nas.search.tuning`: one search's Tune run (`run_tune`);
- `nas.search.setup`: the run folder claimed, a resume resolved, the checks, run.yaml;
- `nas.search.driver`: `run()` and `search()`, the session's steps;
- `nas.search.cli`: the command line and `main`.
"""

from nas.errors import UsageError
from nas.search.cli import build_parser, main
from nas.search.driver import proposals_line, run, search
from nas.search.options import SearchOptions
from nas.search.setup import resume_command

__all__ = ["run", "search", "main", "build_parser", "resume_command", "proposals_line", "SearchOptions", "UsageError"]
