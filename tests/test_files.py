"""Shared files: one lock, one atomic writer, one build-then-rename, the umask, checksums once per process."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from filelock import SoftFileLock

from sbir_bench import files
from sbir_bench.files import (
    atomic_path,
    atomic_save_npy,
    atomic_write_json,
    atomic_write_text,
    building_folder,
    file_lock,
    remove_interrupted_writes,
    sha256_file,
)


def entries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- the lock -------------------------------------------------------------------------------------
def _hold_then_mark(lock: str, marks: str, hold_seconds: float) -> None:
    with file_lock(lock):
        with open(marks, "a") as out:
            out.write(f"in {os.getpid()}\n")
        time.sleep(hold_seconds)
        with open(marks, "a") as out:
            out.write(f"out {os.getpid()}\n")


@pytest.mark.parametrize("soft", [False, True], ids=["flock", "SBIR_SOFT_LOCKS"])
def test_file_lock_excludes_another_process(tmp_path, monkeypatch, soft):
    """Two processes never hold the lock together: their in/out marks never interleave."""
    if soft:
        monkeypatch.setenv(files.SOFT_LOCKS_ENV, "1")
    lock, marks = str(tmp_path / "sub" / "x.lock"), str(tmp_path / "marks")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_hold_then_mark, args=(lock, marks, 0.3)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=20)
        assert worker.exitcode == 0
    kinds = [line.split()[0] for line in Path(marks).read_text().splitlines()]
    assert kinds == ["in", "out", "in", "out"]


def test_file_lock_excludes_another_thread_and_takes_soft_locks_on_request(tmp_path, monkeypatch):
    order: list[str] = []

    def second() -> None:
        with file_lock(tmp_path / "x.lock"):
            order.append("second")

    with file_lock(tmp_path / "x.lock"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.2)
        order.append("first done")
    thread.join(timeout=5)
    assert order == ["first done", "second"]
    monkeypatch.setenv(files.SOFT_LOCKS_ENV, "1")
    soft = file_lock(tmp_path / "x.lock")
    assert isinstance(soft, SoftFileLock) and soft.lock_file.endswith("x.lock.soft")


# --- the atomic writer and the build-then-rename ----------------------------------------------------
def test_atomic_writes_publish_whole_files_or_nothing(tmp_path, monkeypatch):
    atomic_save_npy(tmp_path / "a.npy", np.arange(5))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.arange(5))
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.bin") as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    atomic_write_text(tmp_path / "c.txt", "old\n")

    def failing_fsync(descriptor: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(tmp_path / "c.txt", "new\n")
    monkeypatch.undo()
    assert (tmp_path / "c.txt").read_text() == "old\n"
    assert entries(tmp_path) == ["a.npy", "c.txt"], "no partial file, no stray temporary"


def test_a_write_that_must_not_overwrite_fails_and_keeps_the_first(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"a": 1}, overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write_json(tmp_path / "r.json", {"a": 2}, overwrite=False)
    assert (tmp_path / "r.json").read_text() == '{\n  "a": 1\n}\n'
    assert entries(tmp_path) == ["r.json"]


def test_a_failed_build_leaves_no_folder_and_a_finished_one_replaces_the_old(tmp_path):
    target = tmp_path / "views"
    with pytest.raises(RuntimeError), building_folder(target) as building:
        (building / "view_00.png").write_bytes(b"half")
        raise RuntimeError("killed mid-build")
    assert entries(tmp_path) == []
    target.mkdir()
    (target / "stale.png").write_bytes(b"incomplete")
    with building_folder(target) as building:
        (building / "view_00.png").write_bytes(b"done")
    assert entries(tmp_path) == ["views", "views/view_00.png"]


def test_a_rivals_finished_folder_is_kept(tmp_path, monkeypatch):
    target = tmp_path / "views"
    real_rename = os.rename

    def rival_lands_first(source, destination):  # noqa: ANN001, ANN202
        if Path(destination) == target:
            target.mkdir()
            (target / "rival.png").write_bytes(b"rival")
        return real_rename(source, destination)

    monkeypatch.setattr(files.os, "rename", rival_lands_first)
    with building_folder(target) as building:
        (building / "mine.png").write_bytes(b"mine")
    assert entries(tmp_path) == ["views", "views/rival.png"]


def test_interrupted_writes_of_one_entry_are_removed(tmp_path):
    (tmp_path / ".a.123abc.tmp").write_bytes(b"x")
    (tmp_path / ".a.456def.building").mkdir()
    (tmp_path / ".b.789abc.tmp").write_bytes(b"x")  # another entry's: kept
    (tmp_path / "a.lock").write_bytes(b"")
    remove_interrupted_writes(tmp_path, "a")
    assert entries(tmp_path) == [".b.789abc.tmp", "a.lock"]


# --- the umask ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("umask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)]
)
def test_created_files_and_folders_follow_the_umask(tmp_path, umask, file_mode, folder_mode):
    """A cache shared by a group stays readable (umask 022) or writable (umask 002) by its members."""
    old = os.umask(umask)
    try:
        with file_lock(tmp_path / "cache" / "entry.lock"):
            atomic_save_npy(tmp_path / "cache" / "features" / "f.npy", np.zeros(3, np.float32))
            atomic_write_text(tmp_path / "cache" / "meta.json", "{}")
        with building_folder(tmp_path / "cache" / "renders" / "abc") as building:
            (building / "view_00.png").write_bytes(b"png")
    finally:
        os.umask(old)
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    expected = {path: folder_mode if (tmp_path / path).is_dir() else file_mode for path in modes}
    assert modes == expected
    assert len(modes) == 8  # cache, entry.lock, features, f.npy, meta.json, renders, abc, view_00.png


# --- checksums once per process -------------------------------------------------------------------------
def test_an_unchanged_file_is_hashed_once_and_a_changed_one_again(tmp_path, hashes, monkeypatch):
    monkeypatch.setattr(files, "SETTLED_SECONDS", 0.0)
    path = tmp_path / "features.npy"
    path.write_bytes(bytes(range(256)) * 64)
    first = sha256_file(path)
    assert [sha256_file(path) for _ in range(3)] == [first] * 3 and hashes == ["features.npy"]
    time.sleep(0.05)  # past the file system's timestamp tick
    with open(path, "r+b") as handle:  # corrupted in place, same size
        handle.seek(100)
        handle.write(b"\x00")
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest() != first
    atomic_write_text(path, "replaced")  # a new file (new inode) under the same name
    assert sha256_file(path) == hashlib.sha256(b"replaced").hexdigest()
    assert len(hashes) == 3


def test_a_file_changed_within_the_settling_time_is_hashed_every_time(tmp_path, hashes):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"fresh")
    sha256_file(path)
    sha256_file(path)
    assert hashes == ["weights.pt", "weights.pt"]
