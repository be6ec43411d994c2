"""One JSON record per run: what ran (identity), on what (commit, versions, hardware) and what it scored.

Records live at ``<results_dir>/<dataset>/<split>/<method>/<variant>-seed<seed>-<run_id>.json``. They are
written once and never overwritten (a hard link publishes a fully written temporary file, so a crash
leaves no partial record and two writers can never clobber each other: :mod:`sbir_bench.files`), validated
before writing and when read. The leaderboard is built from these files alone
(:mod:`sbir_bench.leaderboard.build`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import secrets
import subprocess
import warnings
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sbir_bench.files import atomic_write_json

# 2: registered_variant / registered_hash (which registered configuration a run's variant is measured
# against); variant left out of config_hash; setting "gzs".
SCHEMA_VERSION = 2
STATUSES = ("ok", "error")
SETTINGS = ("traditional", "zeroshot", "gzs", "fine_grained")
VERSIONED_PACKAGES = ("torch", "lightning", "timm", "numpy", "sbir_bench")
# Method, variant, dataset, split and run id become path components: keep them to plain names.
_PATH_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_RECORD_SUFFIX = ".json"

Identity = tuple[str, str, str, str, int, str]


class RecordError(ValueError):
    """A record file cannot be read or is invalid; the message starts with the file's path."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message


class OutdatedRecordError(RecordError):
    """A record written by older code (an earlier ``schema_version``): valid then, not read now."""


@dataclass
class RunRecord:
    """The result of one run: one method variant, on one split of one dataset, with one seed."""

    method: str
    variant: str  # config label: "default", "paper", "custom-<config_hash>" or a user's name
    dataset: str
    split: str  # e.g. "zeroshot", "traditional", "zeroshot_yelamarthi", "gzs"
    setting: str  # "traditional" | "zeroshot" | "gzs" | "fine_grained"
    seed: int
    status: str  # "ok" | "error"
    metrics: dict[str, float]
    counts: dict[str, int]
    config: dict[str, Any]
    config_hash: str
    registered_variant: str  # label of the registered configuration the run was composed from
    registered_hash: str  # its config hash (equal to config_hash when the run is that configuration)
    commit: str
    versions: dict[str, str]
    hardware: dict[str, Any]
    train_seconds: float
    eval_seconds: float
    created_at: str  # ISO 8601, UTC
    run_id: str
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. W&B run path, effective batch size

    @property
    def identity(self) -> Identity:
        """Two records with the same identity are runs of the same computation (a rerun)."""
        return (self.method, self.variant, self.dataset, self.split, self.seed, self.config_hash)

    @property
    def created(self) -> datetime:
        return _parse_utc(self.created_at)

    @property
    def recency(self) -> tuple[datetime, str]:
        """Sort key of "latest": creation time, then run id (time-sortable) to break ties."""
        return (self.created, self.run_id)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Build and validate a record from its JSON object; raise ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"a run record is a JSON object, not {type(data).__name__}")
        data = dict(data)
        version = data.pop("schema_version", None)
        if version != SCHEMA_VERSION:
            raise ValueError(f"field 'schema_version': {version!r} is not the supported {SCHEMA_VERSION}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}")
        required = [f.name for f in fields(cls) if f.name not in ("error", "extra")]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"missing field '{missing[0]}' (all missing: {missing})")
        record = cls(**data)
        validate_record(record)
        return record


def validate_record(record: RunRecord) -> None:
    """Raise ValueError naming the first invalid field: types, known status/setting, finite numbers."""
    for name in ("method", "variant", "dataset", "split", "run_id", "registered_variant"):
        value = getattr(record, name)
        if not isinstance(value, str) or not _PATH_SAFE.match(value):
            raise ValueError(f"field '{name}': {value!r} must be a plain name matching {_PATH_SAFE.pattern}")
    for name in ("config_hash", "registered_hash", "commit"):
        value = getattr(record, name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"field '{name}': must be a non-empty string, got {value!r}")
    if record.setting not in SETTINGS:
        raise ValueError(f"field 'setting': {record.setting!r} is not one of {SETTINGS}")
    if record.status not in STATUSES:
        raise ValueError(f"field 'status': {record.status!r} is not one of {STATUSES}")
    if not isinstance(record.seed, int) or isinstance(record.seed, bool):
        raise ValueError(f"field 'seed': must be an int, got {record.seed!r}")
    if not isinstance(record.metrics, dict):
        raise ValueError("field 'metrics': must be a dict of metric name -> float")
    for key, value in record.metrics.items():
        if not isinstance(key, str) or not _is_real(value) or not math.isfinite(value):
            raise ValueError(f"field 'metrics': {key!r} = {value!r} is not a finite number")
    if record.status == "ok" and not record.metrics:
        raise ValueError("field 'metrics': a record with status 'ok' needs at least one metric")
    if record.status == "error" and not (isinstance(record.error, str) and record.error):
        raise ValueError("field 'error': a record with status 'error' needs the error message")
    if not isinstance(record.error, str):
        raise ValueError(f"field 'error': must be a string, got {record.error!r}")
    if not isinstance(record.counts, dict):
        raise ValueError("field 'counts': must be a dict of name -> int")
    for key, value in record.counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"field 'counts': {key!r} = {value!r} is not a non-negative int")
    for name in ("train_seconds", "eval_seconds"):
        value = getattr(record, name)
        if not _is_real(value) or not math.isfinite(value) or value < 0:
            raise ValueError(f"field '{name}': {value!r} is not a finite number >= 0")
    try:
        _parse_utc(record.created_at)
    except (TypeError, ValueError) as error:
        raise ValueError(f"field 'created_at': {error}") from None
    for name in ("config", "versions", "hardware", "extra"):
        value = getattr(record, name)
        if not isinstance(value, dict):
            raise ValueError(f"field '{name}': must be a dict, got {type(value).__name__}")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"field '{name}': not JSON-serialisable with finite numbers ({error})") from None


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_utc(text: str) -> datetime:
    """Parse an ISO 8601 time that carries the UTC offset (``+00:00`` or ``Z``)."""
    if not isinstance(text, str):
        raise TypeError(f"{text!r} is not an ISO 8601 string")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    offset = moment.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise ValueError(f"{text!r} is not a UTC time (needs a +00:00 offset)")
    return moment


def utc_now() -> str:
    """The current time as ISO 8601 UTC with microseconds, the format of ``created_at``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_run_id() -> str:
    """A unique, time-sortable id: UTC time to the microsecond, then 32 random bits (e.g.
    ``20250101T120000123456Z-9f86d081``); ids of one process sort in creation order up to clock ties."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"


def environment_info() -> tuple[str, dict[str, str], dict[str, Any]]:
    """(commit, versions, hardware) of the running code.

    The commit is ``git rev-parse HEAD`` of the checkout holding this package, with ``+dirty`` when
    tracked files outside ``leaderboard/`` (which runs rewrite) differ from it; ``"unknown"`` outside git.
    """
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    cpu_count = os.cpu_count() or 0
    hardware: dict[str, Any] = {
        "cpu_count": cpu_count,
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpu_count,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "torch_threads": _torch_threads(),
        "cuda_devices": _cuda_devices(),
    }
    return _git_commit(), versions, hardware


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``), or ``"unknown"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _torch_threads() -> int | None:
    """The threads torch's CPU operations use in this process (``torch.get_num_threads()``)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def _cuda_devices() -> list[str]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def _git_commit() -> str:
    checkout = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=30, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changes = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)leaderboard")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if changes else "")


def record_path(record: RunRecord, results_dir: str | os.PathLike[str]) -> Path:
    """``<results_dir>/<dataset>/<split>/<method>/<variant>-seed<seed>-<run_id>.json``."""
    name = f"{record.variant}-seed{record.seed}-{record.run_id}{_RECORD_SUFFIX}"
    return Path(results_dir) / record.dataset / record.split / record.method / name


def write_record(record: RunRecord, results_dir: str | os.PathLike[str]) -> Path:
    """Validate and write ``record``; never overwrite (FileExistsError), never leave a partial file.

    The JSON goes to a temporary file in the target folder, is fsynced, then published with
    ``os.link``, which fails if the target exists (atomic on POSIX file systems); the temporary
    file is removed in every case (:func:`sbir_bench.files.atomic_path`).
    """
    validate_record(record)
    path = record_path(record, results_dir)
    atomic_write_json(path, record.to_dict(), overwrite=False)
    return path


def read_record(path: str | os.PathLike[str]) -> RunRecord:
    """Read and validate one record file; raise RecordError naming the file (OutdatedRecordError for a
    record of an earlier schema version)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RecordError(path, f"invalid run record: {error}") from error
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and 0 < version < SCHEMA_VERSION:
        raise OutdatedRecordError(
            path,
            f"outdated run record: schema_version {version} (this code reads {SCHEMA_VERSION}); "
            "measure it again with `make bench`",
        )
    try:
        return RunRecord.from_dict(data)
    except (ValueError, TypeError) as error:
        raise RecordError(path, f"invalid run record: {error}") from error


def scan_records(results_dir: str | os.PathLike[str]) -> tuple[list[RunRecord], list[RecordError]]:
    """Every valid record under ``results_dir`` in path order, and an error for every other record file
    (unparsable, invalid, outdated, or lying outside its record's own path)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist")
    records, problems = [], []
    for path in sorted(root.rglob(f"*{_RECORD_SUFFIX}")):
        try:
            record = read_record(path)
            expected = record_path(record, root)
            if path != expected:
                raise RecordError(path, f"record belongs at {expected.relative_to(root)} (moved or renamed?)")
        except RecordError as error:
            problems.append(error)
            continue
        records.append(record)
    return records, problems


def read_records(results_dir: str | os.PathLike[str], strict: bool = True) -> list[RunRecord]:
    """Every record under ``results_dir``, in path order.

    A file that cannot be parsed, fails validation or lies outside its record's own path raises
    RecordError naming it; with ``strict=False`` it is reported with a warning and left out instead.
    """
    records, problems = scan_records(results_dir)
    if problems and strict:
        raise problems[0]
    for problem in problems:
        warnings.warn(f"skipping {problem}", stacklevel=2)
    return records


def find_record(
    results_dir: str | os.PathLike[str], identity: Identity, strict: bool = True
) -> RunRecord | None:
    """The latest record with status ``ok`` and this identity, or None (reruns skip finished runs).

    Only the files that can hold this identity (its folder and ``<variant>-seed<seed>-`` prefix) are read;
    records of an earlier schema version never match (their runs are measured again).
    """
    method, variant, dataset, split, seed, _ = identity
    folder = Path(results_dir) / dataset / split / method
    if not folder.is_dir():
        return None
    matches = []
    for path in sorted(folder.glob(f"{variant}-seed{seed}-*{_RECORD_SUFFIX}")):
        try:
            record = read_record(path)
        except OutdatedRecordError:
            continue
        except RecordError as error:
            if strict:
                raise
            warnings.warn(f"skipping {error}", stacklevel=2)
            continue
        if record.identity == tuple(identity) and record.status == "ok":
            matches.append(record)
    return max(matches, key=lambda r: r.recency, default=None)
