"""A trial's Tune result: what the trainable reports, and the record the driver makes of it.

The trainable (`nas.tune.trainable`) reports `trial_result` every epoch; its last report carries
`final=True` and the whole `TrialRecord`. In the driver, `record_from_result` turns a finished
trial's last result back into its trials.jsonl record, and `error_line` is the one line a trial
that raised is remembered by. The search's recorder and the jobs' recorder both read results so.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nas.run.record import TrialRecord

__all__ = ["ERROR_CHARS", "trial_result", "record_from_result", "error_line"]

ERROR_CHARS = 300  # a failed trial's reason (trials.jsonl `error`, its progress line) is cut to this


def trial_result(record: TrialRecord, final: bool) -> dict[str, Any]:
    """A Tune result: ASHA's metric at the top, the whole record beside it."""
    return {
        "accuracy": record.accuracy or 0.0,
        "epoch": record.epochs,
        "final": final,
        "status": record.status,
        "record": asdict(record),
    }


def record_from_result(
    result: dict[str, Any], config: dict[str, Any], error: bool = False, message: str | None = None
) -> TrialRecord:
    """The trials.jsonl record of a trial from its last result and its config (number -1).

    A trial whose last result is not final was stopped by the scheduler ('stopped'); one that
    raised, or never reported, 'failed'.
    """
    raw = dict(result.get("record") or {})
    for key, value in result.items():  # Tune hands searchers its results flattened: 'record/accuracy'
        if key.startswith("record/"):
            *parents, leaf = key.split("/")[1:]
            node = raw
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    record = (
        TrialRecord.from_dict(raw)
        if raw
        else TrialRecord(
            number=-1,
            arch_id=config.get("arch_id", ""),
            arch=config.get("arch", {}),
            status="failed",
            seed=config.get("seed"),
        )
    )
    if error or not raw:
        record.status, record.accuracy = "failed", None
        record.error = message or record.error or "the trial ended without a result"
    elif not result.get("final"):
        record.status = "stopped"  # ended by the scheduler before its last epoch
    record.number = -1
    record.optuna_number = config.get("optuna_number")
    record.optuna_params = dict(config.get("optuna_params") or {})
    record.finished_at = record.finished_at or datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return record


def error_line(trial: Any) -> str:
    """The last line of a trial's exception, e.g. 'RuntimeError: ...'."""
    text = ""
    try:
        path = getattr(trial, "error_file", None) or ""
        if path and Path(path).is_file():
            text = Path(path).read_text()
    except OSError:
        pass
    text = text or str(getattr(trial, "error_msg", "") or "")
    if any(s in text for s in ("ActorDiedError", "RayActorError", "worker process has died", "WorkerCrashedError")):
        return "the trial's worker process died (killed by a signal, or out of memory: see dmesg or Ray's logs)"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "the trial raised an exception"
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 3] + "..."
