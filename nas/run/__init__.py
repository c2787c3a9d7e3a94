"""The run folder, results/<run>/: its records, the archive and Pareto front made of them, its files and its lock.

The package, bottom to top:

- `nas.run.pareto`: the one table of objectives (`OBJECTIVES`), non-dominated ranks, front, knee,
  hypervolume and the noise band, over anything with `value(objective)`;
- `nas.run.ladder`: which rung of the fidelity ladder a record is at (`rung_of`, `top_rung`) and
  the rank agreement between rungs (`rank_agreement`);
- `nas.run.reproduce`: how a front of noisy means would reproduce in a retraining (precision and
  recall) and each point's chance on the noise-free front, by Monte Carlo over a shrunk posterior;
- `nas.run.record`: `TrialRecord`, one line of trials.jsonl, and its checks (`check_record`);
- `nas.run.archive`: `Archive`, the run's architectures (`ArchResult`: mean and s.e. over seeds),
  kept up to date record by record: front, racing targets, the summary pareto.json holds;
- `nas.run.files`: files written whole or not at all, appends that survive a crash (`write_atomic`,
  `repair_tail`);
- `nas.run.consistency`: which records count when read (`RecordPolicy`): one result per evaluation,
  architectures the run's space can produce;
- `nas.run.folder`: `RunFolder` (run.yaml, trials.jsonl, the study, pareto.json, weights) and
  `RunConfig`, run.yaml's contents;
- `nas.run.holder`, `nas.run.lock`: who writes a run folder (`holder_of`) and the one-writer lock (`RunLock`).

The folder's format is a contract (docs/run-folder.md): a folder written by an older version reads,
resumes, renders and exports.
"""

from nas.run.archive import Archive, ArchResult
from nas.run.folder import RunConfig, RunError, RunFolder
from nas.run.lock import RunLock, RunLocked
from nas.run.pareto import OBJECTIVES, Objective
from nas.run.record import TrialRecord

__all__ = [
    "Archive",
    "ArchResult",
    "RunConfig",
    "RunError",
    "RunFolder",
    "RunLock",
    "RunLocked",
    "OBJECTIVES",
    "Objective",
    "TrialRecord",
]
