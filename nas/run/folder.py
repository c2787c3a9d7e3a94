"""The run folder, results/<run>/: what a search writes and what dashboards and exports read.

    results/<run>/
      run.yaml          resolved search space, options, seeds, package versions, device
      trials.jsonl      one JSON line per finished trial, appended atomically, never rewritten;
                        its `rung` says at which rung of run.yaml's `ladder` it was trained (0 the proxy)
      study.journal     the Optuna study (JournalStorage): `optuna-dashboard results/<run>/study.journal`
      pareto.json       the Pareto front of the architectures' mean accuracy over seeds (complete,
                        feasible only), with standard errors, seeds and noise flags; hypervolume
      weights/<arch id>.safetensors   trained proxy weights of every completed trial
      ray/              Ray Tune's own experiment folders
      dashboard.html, pareto.png      written by `python -m nas.dashboard`
      exports/<arch id>/              written by `python -m nas.export`

Crash consistency: trials.jsonl is only appended, one whole line per write(2), fsynced; every
other file is replaced whole (a temp file beside it, fsynced, then a rename), and a failed write
(a full disk) removes its temp file. Before its first append a process repairs the folder
(`RunFolder.repair`): a torn last line of trials.jsonl or of the Optuna journal (a write cut
short by a crash or a power loss) is moved to `<file>.torn-<time>`, never deleted, a whole last
line that lost its line end gets it back, and temp files a crash left behind are removed.

A trial's status is one of: complete (trained to the full proxy budget), stopped (ended early by
--early-stop; its accuracy is at a lower fidelity, so it never enters the front), failed (NaN loss,
out of memory, an exception; `error` says why), infeasible (over a hard limit such as --max-macs;
not trained). trials.jsonl is the record of what is done: resuming a run trusts it, not Ray.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml

from nas.errors import NasError
from nas.proxy import ProxyConfig
from nas.run import pareto
from nas.run.archive import Archive, ArchResult, aggregate, seed_std  # noqa: F401  (re-exported)
from nas.run.consistency import RecordPolicy, SpaceMembership
from nas.run.files import TMP, copy_atomic, repair_tail, write_atomic
from nas.run.holder import holder_of
from nas.run.record import RecordError, TrialRecord, check_record  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from nas.data.dataset import Dataset

RUN_YAML = "run.yaml"
TRIALS = "trials.jsonl"
STUDY = "study.journal"
STUDY_NAME = "acmix-nas"
PARETO = "pareto.json"
WEIGHTS = "weights"


class RunError(NasError):
    """A run folder that is missing, incomplete or does not match what is asked of it."""


_REPORTED: set[Any] = set()  # what was warned of: (file, line, hash of the line) of a skipped record, a weights fault


def _warn_once(key: Any, line: str) -> None:
    if key not in _REPORTED:
        _REPORTED.add(key)
        print(line, file=sys.stderr, flush=True)


def _skip(path: Path, number: int, line: bytes, why: str) -> None:
    """Say once per process that a line of a records file is skipped, naming file:line and why."""
    _warn_once(
        (str(path), number, hash(line)),
        f"warning: {path}:{number}: {why}; record skipped (it counts nowhere: not in the front, the "
        f"budget or a resume; fix or delete the line to count it)",
    )


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # the disk is full for everyone: nothing more can be kept


def write_fault(e: OSError, path: Path, folder: Path) -> OSError:
    """`e`, a failed write of `path` in the run `folder`, as the OSError to raise: its filename is
    `path` and its note says that nothing recorded is lost and, where this process holds the run's
    lock, the command that continues the run (the lock's `resume`). A command's frame prints the
    error and its notes on one line."""
    fault = OSError(e.errno, e.strerror or " ".join(str(e).split()) or type(e).__name__, str(path))
    holder = holder_of(folder)
    resume = holder.resume if holder is not None and holder.pid == os.getpid() else ""
    fault.add_note(
        "nothing recorded is lost (every whole record stays in the run folder)"
        + (f"; continue with: {resume}" if resume else "")
    )
    return fault


@dataclass
class DataInfo:
    """run.yaml `data:`: what the proxy trained on (a deployed model needs the same mean/std)."""

    dataset: str = "digits"
    num_classes: int = 10
    in_chans: int = 1
    image_size: int | None = None
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    train_images: int = 0
    val_images: int = 0
    fingerprint: str = ""  # of the training images and labels the split is drawn from (Dataset.fingerprint)

    @classmethod
    def of(cls, data: Dataset) -> DataInfo:
        return cls(
            dataset=data.name,
            num_classes=data.num_classes,
            in_chans=data.in_chans,
            image_size=data.image_size,
            mean=list(data.mean),
            std=list(data.std),
            train_images=len(data.train_y),
            val_images=len(data.val_y),
            fingerprint=data.fingerprint,
        )

    def describe(self) -> str:
        return f"{self.dataset}, {self.num_classes} classes, {self.train_images} train / {self.val_images} val" + (
            f", fingerprint {self.fingerprint}" if self.fingerprint else ""
        )

    def mismatch(self, other: DataInfo) -> str | None:
        """How `other` (the data loaded now) differs from this run's data, in a few words; None if
        it is the same data. The fingerprint decides where both have one (a run written before
        fingerprints resumes on the same name, classes and split sizes), so a moved copy of the
        data passes and another set of the same name and size does not."""
        same = (self.dataset, self.num_classes, self.train_images, self.val_images) == (
            other.dataset,
            other.num_classes,
            other.train_images,
            other.val_images,
        )
        if same and (not self.fingerprint or not other.fingerprint or self.fingerprint == other.fingerprint):
            return None
        return f"the run's is {self.describe()}; the data now is {other.describe()}"


@dataclass
class RunConfig:
    """run.yaml: everything that defines a run, read and written only through this class.

    `options` holds the search's options as given (nas.search.SearchOptions, paths as strings);
    `ray` the cluster the run last ran on. Keys this version does not know are kept as they are.
    """

    name: str = ""
    created: str = ""
    command: str = ""
    objectives: list[str] = field(default_factory=lambda: ["accuracy", "macs"])
    sampler: str = "tpe"
    seed: int = 0
    limits: dict[str, float] = field(default_factory=dict)  # objective -> hard upper limit
    space_file: str = ""
    space_fingerprint: str = ""
    space_size: int | str = 0  # 'infinite' for a space with a continuous decision
    space: dict[str, Any] = field(default_factory=dict)  # the resolved space (SearchSpace.to_dict)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    data: DataInfo = field(default_factory=DataInfo)
    references: dict[str, str] = field(default_factory=dict)  # reference name -> arch id
    hypervolume_scale: dict[str, float] = field(default_factory=dict)  # cost objective -> scale
    versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
    ray: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)  # the --proxy file's calibration (nas.calibrate), if any
    ladder: list[dict[str, Any]] = field(default_factory=list)  # the fidelity ladder's rungs (nas.search.promote)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, written back as they were

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)} - {"extra"}
        kw = {k: v for k, v in d.items() if k in names}
        kw["proxy"] = ProxyConfig(
            **{k: v for k, v in (d.get("proxy") or {}).items() if k in ProxyConfig.__dataclass_fields__}
        )
        kw["data"] = DataInfo(**{k: v for k, v in (d.get("data") or {}).items() if k in DataInfo.__dataclass_fields__})
        for k in ("limits", "references", "hypervolume_scale", "versions", "options", "ray", "calibration"):
            kw[k] = dict(d.get(k) or {})
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["proxy"], out["data"] = self.proxy.to_dict(), asdict(self.data)
        return {**out, **self.extra}


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        d = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    return d if isinstance(d, dict) else None


def _whole_record(line: bytes) -> bool:
    d = _json_object(line)
    try:
        return d is not None and bool(TrialRecord.from_dict(d).arch_id)
    except TypeError:
        return False


def package_versions() -> dict[str, str]:
    """Python's and the installed versions of the packages a run depends on (run.yaml `versions`)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("acmix-nas", "torch", "timm", "optuna", "ray", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class RunFolder:
    """Reads and writes one run folder. Only the search driver writes trials.jsonl."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._repaired = False  # repair() runs before this object's first append
        self.weights_faults: dict[str, str] = {}  # arch id -> why its weights were not kept (keep_weights)
        self._space: tuple[tuple[int, int], SpaceMembership | None] | None = None  # run.yaml's (mtime, size), its space

    # -- repair
    def repair(self) -> list[str]:
        """Make the folder consistent after a crash before anything is appended to it: torn
        tails of trials.jsonl and study.journal set aside (`repair_tail`), temp files of
        replacements that never happened removed. Returns one line per thing done.

        Only the process that writes the run may call it (the search driver): a reader of a
        live run would cut off a line being written.
        """
        self._repaired = True
        if not self.path.is_dir():
            return []
        for p in (self.trials_path, self.study_path):
            if (p.exists() or p.is_symlink()) and not p.is_file():
                raise RunError(
                    f"{p}: not a file, so nothing can be appended to it; move it out of the run folder "
                    f"(a missing {p.name} is rebuilt or started anew)"
                )
        done = [
            repair_tail(self.trials_path, _whole_record),
            repair_tail(self.study_path, lambda line: _json_object(line) is not None),
        ]
        stale = [p for p in (self.path / (RUN_YAML + TMP), self.path / (PARETO + TMP)) if p.is_file()]
        stale += sorted((self.path / WEIGHTS).glob("*" + TMP)) if (self.path / WEIGHTS).is_dir() else []
        for p in stale:
            p.unlink()
        if stale:
            done.append(
                f"{self.path}: removed {len(stale)} unfinished temp file(s) of an interrupted write "
                f"({', '.join(p.name for p in stale[:3])}{', ...' if len(stale) > 3 else ''})"
            )
        return [line for line in done if line]

    # -- files
    @property
    def trials_path(self) -> Path:
        return self.path / TRIALS

    @property
    def study_path(self) -> Path:
        return self.path / STUDY

    def weights_path(self, arch_id: str) -> Path:
        return self.path / WEIGHTS / f"{arch_id}.safetensors"

    def save_weights(self, arch_id: str, src: str | Path) -> str:
        """Copy a trial's weights file in, replacing any old one whole; returns its path relative
        to the run folder (TrialRecord.weights).

        Raises:
            OSError: it could not be kept (`write_fault`: named by the path that failed, the
                weights folder or the file); an old file of the architecture stays as it was.
        """
        dst = self.weights_path(arch_id)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError as e:  # a file where the weights folder belongs
            raise write_fault(OSError(errno.ENOTDIR, "not a folder", e.filename), dst.parent, self.path) from e
        except OSError as e:
            raise write_fault(e, dst.parent, self.path) from e
        try:
            copy_atomic(src, dst)
        except OSError as e:
            raise write_fault(e, dst, self.path) from e
        return str(dst.relative_to(self.path))

    def keep_weights(self, arch_id: str, src: str | Path) -> str | None:
        """`save_weights`, where a fault is the weights' alone: a weights folder that cannot be
        written (a file in its place, no permission, an I/O error) is said once per path and
        cause (a warning line on stderr) and remembered in `weights_faults` for the trial's record,
        and None is returned: the search goes on without these weights.

        Raises:
            OSError: a full disk (ENOSPC, EDQUOT), which no later write would survive either.
        """
        try:
            kept = self.save_weights(arch_id, src)
        except OSError as e:
            if e.errno in NO_SPACE:
                raise
            why = f"weights not kept: {e.filename}: {e.strerror}"
            self.weights_faults[arch_id] = why
            _warn_once(
                (e.filename, e.strerror),
                f"warning: {e.filename}: {e.strerror}; trained weights are not kept (each record of such a "
                f"trial says so in `error`); fix that for the trials still to come",
            )
            return None
        self.weights_faults.pop(arch_id, None)
        return kept

    def exists(self) -> bool:
        return (self.path / RUN_YAML).is_file()

    def require(self) -> RunFolder:
        """Fail with one line unless this is a run folder."""
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run folder")
        if not self.exists():
            raise RunError(f"{self.path}: not a run folder (no {RUN_YAML}); runs are written by python -m nas.search")
        return self

    # -- run.yaml
    def write_config(self, config: RunConfig) -> None:
        """Replace run.yaml atomically (a temp file, then a rename)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / RUN_YAML, yaml.safe_dump(config.to_dict(), sort_keys=False))

    def config(self) -> RunConfig:
        self.require()
        try:
            raw = yaml.safe_load((self.path / RUN_YAML).read_text()) or {}
        except yaml.YAMLError as e:
            raise RunError(f"{self.path / RUN_YAML}: not valid YAML ({str(e).splitlines()[0]})") from None
        except UnicodeDecodeError:
            raise RunError(f"{self.path / RUN_YAML}: not a text file (not UTF-8)") from None
        if not isinstance(raw, dict):
            raise RunError(f"{self.path / RUN_YAML}: expected a mapping, got {type(raw).__name__}")
        try:
            return RunConfig.from_dict(raw)
        except TypeError as e:
            raise RunError(f"{self.path / RUN_YAML}: unexpected contents ({e})") from None

    # -- trials.jsonl
    def append(self, record: TrialRecord, file: str = TRIALS) -> None:
        """Append one line to trials.jsonl (or another records file of the run, e.g. the fidelity
        check's) with a single write(2) on an O_APPEND file, then fsync: a reader or a kill -9
        sees either the whole line or none of it. The first append of this object repairs the
        folder first (`repair`), so a line never lands after a torn one.

        Raises:
            OSError: the line could not be written (a full disk, no permission, an I/O error, a
                read-only file system; `write_fault`: named by the file, with a note on how to
                continue). No partial line is left behind (if even cutting it off fails, the next
                append or read sets the torn tail aside).
        """
        path = self.path / file
        try:
            if not self._repaired:
                for report in self.repair():
                    logging.getLogger(__name__).warning("%s", report)
            self._append_line(path, (record.to_json() + "\n").encode())
        except OSError as e:
            raise write_fault(e, Path(e.filename) if e.filename else path, self.path) from e

    def _append_line(self, path: Path, line: bytes) -> None:
        """One write(2) of `line` at the end of `path`, fsynced, or the file as it was."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"No space left on device (wrote {written} of {len(line)} bytes)")
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, size)  # no partial line: the file ends where it did
                except OSError:
                    self._repaired = False  # a torn tail may stay: the next append sets it aside first
                raise
        finally:
            os.close(fd)

    def trials(self, file: str = TRIALS) -> list[TrialRecord]:
        """All valid records of trials.jsonl (or of another records file), in the order they
        finished. Every line is checked (`check_record`), then against the records before it and
        the run's space (`nas.run.consistency`: a second result of one evaluation, an architecture
        the space cannot produce): one that does not count is skipped with one warning line on
        stderr naming file:line and why, the same for every reader (search, resume, dashboard,
        export, fidelity), and the file is never changed. A torn last line (a crash, or a writer
        mid-append) is skipped without a word.

        Raises:
            RunError: the file is there but cannot be read (a folder, no permission).
        """
        path = self.path / file
        if not path.exists():
            return []
        try:
            lines = path.read_bytes().split(b"\n")
        except OSError as e:
            raise RunError(f"{path}: cannot read it ({e.strerror or e})") from None
        while lines and not lines[-1].strip():
            lines.pop()
        records, policy = [], RecordPolicy(self._space_membership())
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError as e:  # JSON, UTF-8
                if i < len(lines) - 1:
                    _skip(path, i + 1, line, f"not a JSON record ({' '.join(str(e).split())})")
                continue
            try:
                record = check_record(d)
            except RecordError as e:
                _skip(path, i + 1, line, str(e))
                continue
            refusal = policy.refusal(record, i + 1)
            if refusal is None:
                records.append(record)
            else:
                _skip(path, i + 1, line, refusal)
        return records

    def _space_membership(self) -> SpaceMembership | None:
        """What the run's space (run.yaml `space`) can produce, read again when run.yaml changes;
        None where there is no space to check against (no run.yaml, one without a space or one
        that does not load: the commands that need it say so themselves)."""
        from nas.space.space import SearchSpace

        try:
            stat = (self.path / RUN_YAML).stat()
        except OSError:
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        if self._space is None or self._space[0] != key:
            try:
                raw = self.config().space
                self._space = (key, SpaceMembership(SearchSpace.from_dict(raw)) if raw else None)
            except (NasError, TypeError, ValueError):
                self._space = (key, None)
        return self._space[1]

    # -- the Optuna study
    def storage(self) -> optuna.storages.BaseStorage:
        """The run's Optuna storage: a journal file that optuna-dashboard opens as it is."""
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(self.study_path)))

    # -- the front
    def objectives(self) -> list[str]:
        return list(self.config().objectives)

    def archs(self) -> list[ArchResult]:
        """The run's architectures, each aggregated over its evaluations (seeds)."""
        return aggregate(self.trials())

    def front(self, objectives: Sequence[str] | None = None) -> list[ArchResult]:
        """The Pareto front of the architectures' means over seeds, by increasing first cost."""
        return pareto.front(self.archs(), objectives or self.objectives())

    def write_pareto(self, objectives: Sequence[str] | None = None) -> dict[str, Any]:
        """pareto.json: the front of the complete, feasible architectures' means and its hypervolume
        (`Archive.summary`), from every record of trials.jsonl."""
        config = self.config()
        archive = Archive(list(objectives or config.objectives))
        for record in self.trials():
            archive.add(record)
        return self.write_summary(archive.summary(config.hypervolume_scale))

    def write_summary(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Replace pareto.json with `summary` (an `Archive.summary`) and return it."""
        write_atomic(self.path / PARETO, json.dumps(summary, indent=2))
        return summary

    # -- weights and what they hold
    def weights_of(self, record: TrialRecord) -> Path | None:
        """The trial's weights file, if it exists: record.weights (relative to the run) or the
        standard weights/<arch id>.safetensors."""
        for p in ([self.path / record.weights] if record.weights else []) + [self.weights_path(record.arch_id)]:
            if p.is_file():
                return p
        return None

    def block_map(self, record: TrialRecord, arch: Any = None) -> list[dict[str, Any]]:
        """The per-block map of a trial (nas.net.model.block_map): learned α/β from `record.rates`,
        else from its weights file, else the initial values. `arch`: its Arch, if already built."""
        from nas.net.arch import Arch
        from nas.net.model import block_map, rates_from_weights

        arch = arch if arch is not None else Arch.from_dict(record.arch)
        rates = record.rates
        if not rates and arch.num_acmix:
            path = self.weights_of(record)
            if path is not None:
                try:
                    rates = rates_from_weights(path)
                except Exception:  # a torn or foreign file: show the initial values
                    rates = []
        return block_map(arch, rates)


def records_of(records: Sequence[TrialRecord], arch_id: str) -> list[TrialRecord]:
    """The records of one architecture, named by its id or a unique prefix of it.

    Raises:
        RunError: no architecture, or several, match.
    """
    ids = sorted({r.arch_id for r in records if r.arch_id.startswith(arch_id)})
    if not ids:
        raise RunError(f"no trial with arch id {arch_id!r} in this run ({len(records)} trials)")
    if len(ids) > 1:
        raise RunError(f"arch id prefix {arch_id!r} is ambiguous: {', '.join(ids[:5])}")
    return [r for r in records if r.arch_id == ids[0]]
