"""What checking a cached feature file costs one run, against reading the file once, in the same run.

A run calls the feature cache several times (``--calls``, default 4: ``prepare_data`` from the runner,
from ``fit`` and from ``test``, then ``setup``); each call verifies ``features.npy`` against the SHA-256
in its ``meta.json`` (:func:`~sbir_bench.data.cache_entries.use_or_rebuild`). The checksum is computed
once per process while the file is unchanged (:func:`~sbir_bench.files.sha256_file`), so the run's check
should cost about one read of the file. Target: the calls of one run together at most 1.1 x one read.

Data: a generated ``float32 [rows, 4096]`` file (VGG-16 fc7 width) of ``--gigabytes`` (default 1.5; the
fc7 features of Sketchy Extended are about 2.6 GB) with its ``meta.json``, in a temporary folder under
``--dir`` (removed at the end; it needs that much free disk). The benchmark waits until the file counts
as settled (:data:`~sbir_bench.files.SETTLED_SECONDS` after it was written), as a cache filled by an
earlier run is.

Measured in one process, one after the other, each figure twice: ``cold``, the file dropped from the page
cache first (``posix_fadvise(DONTNEED)``, as for a run that starts on a cache it has not read lately), and
``warm``, right after it was read:

- (a) one read: the file's bytes read once in 16 MiB chunks (``readinto``), the least any use of it costs;
  timed before and after (b) and (c), the faster of the two counts (storage below the page cache, e.g. a
  virtual machine's host, may keep a copy that makes later "cold" reads faster than the first);
- (b) the run's check: ``--calls`` verifications with the memo of this process cleared first;
- (c) before the memo: ``--calls`` full checksums (what a run paid until the memo existed).

Prints b/a (the target) and c/a. The checksum is SHA-256 (``hashlib``, OpenSSL): where the CPU hashes
more slowly than the storage reads, the cold ratio rises above 1, and the warm ratio is the CPU's hash
speed against a memory copy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sbir_bench import files
from sbir_bench.data.cache_entries import use_or_rebuild, write_meta

TARGET = 1.1
WIDTH = 4096  # VGG-16 fc7
ROWS_PER_WRITE = 8192


def make_features(path: Path, gigabytes: float) -> int:
    """Write ``float32 [rows, 4096]`` pseudo-random features of about ``gigabytes`` GiB; return its size."""
    rows = max(1, int(gigabytes * 2**30) // (4 * WIDTH))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, WIDTH))
    rng = np.random.default_rng(0)
    for start in range(0, rows, ROWS_PER_WRITE):
        stop = min(rows, start + ROWS_PER_WRITE)
        out[start:stop] = rng.random((stop - start, WIDTH), dtype=np.float32)
    out.flush()
    del out
    return path.stat().st_size


def drop_from_page_cache(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def read_once(path: Path) -> None:
    buffer = memoryview(bytearray(1 << 24))
    with open(path, "rb", buffering=0) as handle:
        while handle.readinto(buffer):
            pass


def timed(action: Callable[[], object], path: Path, cold: bool) -> float:
    if cold:
        drop_from_page_cache(path)
    else:
        read_once(path)
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gigabytes", type=float, default=1.5, help="size of the generated file (GiB)")
    parser.add_argument("--calls", type=int, default=4, help="feature-cache calls of one run")
    parser.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system's)")
    args = parser.parse_args(argv)
    if args.gigabytes <= 0 or args.calls < 1:
        parser.error("--gigabytes must be > 0 and --calls >= 1")
    parent = Path(args.dir or tempfile.gettempdir())
    free = shutil.disk_usage(parent).free
    if free < 1.2 * args.gigabytes * 2**30:
        parser.error(f"{parent} has {free / 2**30:.1f} GiB free, too little for a {args.gigabytes} GiB file")

    with tempfile.TemporaryDirectory(dir=parent, prefix="cache-check-") as folder:
        features = Path(folder) / "features.npy"
        key = {"benchmark": "cache_check"}
        started = time.perf_counter()
        size = make_features(features, args.gigabytes)
        write_meta(features, key)
        print(f"features.npy: {size / 2**30:.2f} GiB written in {time.perf_counter() - started:.1f} s")
        settled = features.stat().st_ctime + files.SETTLED_SECONDS
        time.sleep(max(0.0, settled - time.time()))

        def run_check() -> None:
            files._digests.clear()  # a new process
            for _ in range(args.calls):
                if not use_or_rebuild(features, key, "benchmark"):
                    raise RuntimeError("the generated cache entry does not verify")

        def unmemoised() -> None:
            for _ in range(args.calls):
                files._digests.clear()
                files.sha256_file(features)

        for state in ("cold", "warm"):
            cold = state == "cold"
            first_read = timed(lambda: read_once(features), features, cold)
            check = timed(run_check, features, cold)
            before = timed(unmemoised, features, cold)
            read = min(first_read, timed(lambda: read_once(features), features, cold))
            verdict = "meets" if check / read <= TARGET else "misses"
            print(
                f"{state}: one read {read:.2f} s ({size / read / 2**30:.2f} GiB/s); the run's check "
                f"({args.calls} calls) {check:.2f} s = {check / read:.2f} x one read ({verdict} the target "
                f"<= {TARGET}); before the memo {before:.2f} s = {before / read:.2f} x one read"
            )
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
