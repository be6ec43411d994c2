"""Verified cache entries: a data file beside a ``meta.json`` holding its key and SHA-256.

Caches are keyed by everything that changes their content, written atomically under a file lock (DDP
ranks share them), and verified on load: a corrupt, partial or mismatched entry is reported with a
:class:`StaleCacheWarning` naming it and rebuilt, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sbir_bench.data.records import Catalog, DatasetError
from sbir_bench.files import atomic_write_text, sha256_file

__all__ = [
    "CACHE_FORMAT",
    "StaleCacheWarning",
    "key_digest",
    "normalised_key",
    "require_fingerprint",
    "use_or_rebuild",
    "write_meta",
]

CACHE_FORMAT = 1  # bump when the layout or the meaning of a cached file changes


class StaleCacheWarning(UserWarning):
    """A cache entry was corrupt, partial or did not match its key, and is being rebuilt."""


def key_digest(key: Mapping[str, Any]) -> str:
    """A short hex name for a cache key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def normalised_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """The key as it reads back from JSON (tuples become lists), so stored and requested keys compare."""
    return json.loads(json.dumps(key, sort_keys=True))


def _entry_problem(data_file: Path, key: Mapping[str, Any]) -> str | None:
    """Why the cache entry holding ``data_file`` cannot be used (None: it is sound)."""
    meta_file = data_file.parent / "meta.json"
    if not data_file.exists() and not meta_file.exists():
        return "missing"
    if not meta_file.is_file():
        return "its meta.json is missing (an interrupted write?)"
    if not data_file.is_file():
        return f"{data_file.name} is missing"
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "its meta.json is unreadable"
    if meta.get("key") != key:
        return "its meta.json does not match the requested key"
    if meta.get("sha256") != sha256_file(data_file):
        return f"{data_file.name} fails its checksum (corrupt or partial)"
    return None


def use_or_rebuild(data_file: Path, key: Mapping[str, Any], what: str) -> bool:
    """True when the entry is sound; otherwise warn (unless it is simply absent) and return False."""
    problem = _entry_problem(data_file, key)
    if problem is None:
        return True
    if problem != "missing":
        warnings.warn(
            f"{what} {data_file.parent} is unusable: {problem}; rebuilding it",
            StaleCacheWarning,
            stacklevel=3,
        )
    return False


def write_meta(data_file: Path, key: Mapping[str, Any], **extra: Any) -> None:
    meta = {"key": key, "sha256": sha256_file(data_file), **extra}
    atomic_write_text(data_file.parent / "meta.json", json.dumps(meta, indent=2, sort_keys=True))


def require_fingerprint(catalog: Catalog) -> None:
    if not catalog.fingerprint:
        raise DatasetError(f"{catalog.name}: the catalog has no fingerprint, so its caches cannot be keyed")
