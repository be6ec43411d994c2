"""Files that several processes share (DDP ranks, parallel runs, a lab's colleagues on one ``$SBIR_CACHE``).

One of each: :func:`file_lock` (the ``filelock`` package), :func:`atomic_path` (write beside the target,
then publish with an atomic rename, or a hard link that never overwrites), :func:`building_folder`
(build a folder beside its target, then rename it into place) and :func:`sha256_file` (a checksum
computed once per process for a file that has not changed since).

Everything created here respects the umask and default ACLs (files ``0o666``, folders ``0o777`` before the
umask: ``0o644`` / ``0o755`` under ``umask 022``, group-writable under ``umask 002``), so a cache folder
shared by a group stays readable by its members; ``tempfile.mkstemp`` / ``mkdtemp`` would make them
``0o600`` / ``0o700``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from filelock import BaseFileLock, FileLock, SoftFileLock

__all__ = [
    "SETTLED_SECONDS",
    "SOFT_LOCKS_ENV",
    "atomic_path",
    "atomic_save_npy",
    "atomic_write_json",
    "atomic_write_text",
    "building_folder",
    "file_lock",
    "remove_interrupted_writes",
    "sha256_file",
]

SOFT_LOCKS_ENV = "SBIR_SOFT_LOCKS"
_TEMPORARY_SUFFIXES = (".tmp", ".building", ".discarded")


# --- locks ----------------------------------------------------------------------------------------
def file_lock(path: str | os.PathLike[str]) -> BaseFileLock:
    """An exclusive lock on ``path`` (its folders are created): use it as ``with file_lock(path): ...``.

    A ``filelock.FileLock``: ``flock`` on the lock file, released when the block exits or the process
    dies (no stale lock after a crash), falling back by itself to a soft lock where the file system has
    no ``flock``. Where ``flock`` exists but does not exclude across machines (some NFS setups), set
    ``SBIR_SOFT_LOCKS=1`` for every user of the cache: a ``SoftFileLock`` then holds ``<path>.soft``
    (created exclusively, removed on release). A soft lock left by a process that crashed on another
    machine must be removed by hand (on the same machine ``filelock`` reclaims it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.environ.get(SOFT_LOCKS_ENV, "").strip().lower() in ("1", "true", "yes"):
        return SoftFileLock(path.with_name(path.name + ".soft"))
    return FileLock(path)


# --- atomic writes ----------------------------------------------------------------------------------
def _temporary_name(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}{suffix}")


def _new_file(target: Path) -> Path:
    """An empty file beside ``target``, created exclusively with mode 0o666 less the umask."""
    while True:
        temporary = _temporary_name(target, ".tmp")
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temporary


def _new_folder(target: Path, suffix: str) -> Path:
    """An empty folder beside ``target``, mode 0o777 less the umask."""
    while True:
        temporary = _temporary_name(target, suffix)
        try:
            temporary.mkdir()
        except FileExistsError:
            continue
        return temporary


def _fsync_directory(directory: Path) -> None:
    """Make a new directory entry durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield an empty temporary file beside ``path`` to write; on success it is fsynced and published.

    ``overwrite=True`` publishes with ``os.replace`` (readers see the old file or the new one);
    ``overwrite=False`` with ``os.link``, which raises ``FileExistsError`` when ``path`` exists (two
    writers can never clobber each other). On error, or after publishing, the temporary file is removed:
    no partial file is ever visible under ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _new_file(path)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> Path:
    """Write UTF-8 ``text`` (``\\n`` line ends) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path, overwrite=overwrite) as temporary:
        temporary.write_bytes(text.encode("utf-8"))
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], payload: Any, *, overwrite: bool = True) -> Path:
    """Write ``payload`` as indented, key-sorted JSON (no NaN) through :func:`atomic_path`."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_text(path, text, overwrite=overwrite)


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically (the name is kept as given; no ``.npy`` is appended)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


# --- build a folder, then rename it into place ---------------------------------------------------------
@contextmanager
def building_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder`` to fill; on success it takes ``folder``'s place.

    An existing ``folder`` (an incomplete or outdated copy) is first set aside and removed. Builders that
    run without a lock may race: when another builder's folder lands first, that copy is kept and this
    one discarded (builders of one cache key build the same content). On error the temporary folder is
    removed, so a folder found under ``folder`` is always complete.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = _new_folder(folder, ".building")
    try:
        yield building
        if folder.exists():
            discarded = _new_folder(folder, ".discarded")
            with contextlib.suppress(FileNotFoundError):  # another builder moved it first
                os.rename(folder, discarded / folder.name)
            shutil.rmtree(discarded, ignore_errors=True)
        try:
            os.rename(building, folder)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not folder.is_dir():
                raise  # not a rival's finished copy: a real failure
        _fsync_directory(folder.parent)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def remove_interrupted_writes(folder: str | os.PathLike[str], target: str = "*") -> None:
    """Remove what :func:`atomic_path` and :func:`building_folder` left in ``folder`` for the entries named
    ``target`` (a glob pattern; all by default) when their process was killed. Call it only while holding
    the lock that every writer of those entries takes."""
    for entry in Path(folder).glob(f".{target}.*"):
        if entry.name.endswith(_TEMPORARY_SUFFIXES):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# --- checksums, once per process ----------------------------------------------------------------------
SETTLED_SECONDS = 2.0
"""A file changed less than this long before it is hashed is hashed again next time: file systems stamp
times in ticks (up to 1 s on ext3 and HFS+, 2 s on FAT), and a change within the tick of the last one
leaves the stat unchanged (the "racy git" problem). Change times come from the file server's clock: one
running ahead only makes files look fresh (hashed every time), one running behind by more than this
shortens the guard."""

_digests: dict[tuple[int, ...], str] = {}
_digests_lock = threading.Lock()


def _identity(path: str | os.PathLike[str]) -> tuple[int, ...]:
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _full_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks into one reused buffer."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(chunk_bytes))
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(buffer[:size])
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, computed at most once per process while the file is unchanged.

    The digest is remembered under the file's device, inode, size, modification and change times: a
    file rewritten, replaced (a rename gives a new inode), touched or chmod-ed is hashed again, and so is
    a file changed in the last :data:`SETTLED_SECONDS`. A cache entry is thus read in full once per
    process (a run used to hash its features 4 times and its backbone weights 8 times).
    """
    started = time.time_ns()
    before = _identity(path)
    with _digests_lock:
        known = _digests.get(before)
    if known is not None:
        return known
    digest = _full_sha256(path)
    settled = before[4] <= started - int(SETTLED_SECONDS * 1e9)
    if settled and _identity(path) == before:
        with _digests_lock:
            _digests[before] = digest
    return digest
