"""Speed and memory of the evaluation engine at the size of the Sketchy zero-shot test split.

Random data: 12,694 query sketches x 10,453 gallery photos, 21 classes; float32 embeddings of each
``--dims`` and binary codes of each ``--bits``. For every configuration, in the same run:

- ``engine``: ``evaluate`` with p@100, p@200, map@200, map@200_yelamarthi (exact ranking, ties by index:
  a float32 GEMM, then float64 re-scoring where its error bound leaves the order open);
- ``map@all``: ``evaluate`` with map@all alone (ranks of every relevant item, from float64 keys: a float64
  GEMM, about twice the float32 one), reported separately;
- (a) ``mm``: one plain ``torch.mm`` of the same shapes, the compute floor (for codes: the +-1 matrices),
  and ``np mm``: the same product through NumPy's BLAS (OpenBLAS), which the engine's GEMMs use and
  which is the faster floor on some CPUs (AMD EPYC here: ~125 vs ~90 GFLOP/s per core for MKL);
- (b) ``sklearn AP loop``: SEM-PCYC's per-query ``average_precision_score`` over the full ranking, on
  precomputed scores (the distance matrix is not counted); timed on ``--ap-queries`` queries and
  extrapolated to all queries (sequential; SEM-PCYC spreads it over joblib workers);
- (c) ``sklearn NN``: ``NearestNeighbors(metric="cosine" | "hamming", algorithm="brute")``, k = 200.

Every measurement runs in a fresh subprocess. Time: best wall-clock of ``--repeats`` runs. Memory: that
process's peak resident set (``resource.getrusage(...).ru_maxrss``, so torch's native allocations
count) minus its resident set just before the first measured call (inputs already allocated); the
input size is listed apart. Torch uses its default thread count (``--threads`` to change it), the
engine one worker per torch thread; other processes on the machine slow every column alike (the load
average is printed).

Targets: engine <= 1.3x the mm floor at d >= 512; >= 25x faster than (b); >= 3x faster than (c);
64-bit Hamming engine <= 1 s on 2 cores; peak memory <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import torch

N_QUERIES, N_GALLERY, N_CLASSES, K = 12_694, 10_453, 21, 200
TOP_K_METRICS = ("p@100", "p@200", "map@200", "map@200_yelamarthi")
MEASUREMENTS = ("engine", "map@all", "mm", "mm_numpy", "sklearn_ap", "sklearn_nn")


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _make_data(kind: str, width: int, n_queries: int, n_gallery: int) -> tuple[Any, ...]:
    generator = torch.Generator().manual_seed(0)
    query_labels = torch.randint(0, N_CLASSES, (n_queries,), generator=generator)
    gallery_labels = torch.randint(0, N_CLASSES, (n_gallery,), generator=generator)
    if kind == "float":
        queries = torch.randn(n_queries, width, generator=generator)
        gallery = torch.randn(n_gallery, width, generator=generator)
    else:
        queries = torch.randint(0, 2, (n_queries, width), generator=generator, dtype=torch.uint8).bool()
        gallery = torch.randint(0, 2, (n_gallery, width), generator=generator, dtype=torch.uint8).bool()
    return queries, query_labels, gallery, gallery_labels


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this (fresh) process and return its time and memory."""
    from sklearn.metrics import average_precision_score
    from sklearn.neighbors import NearestNeighbors

    from sbir_bench.evaluation.engine import evaluate

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    kind, width, what = spec["kind"], spec["width"], spec["what"]
    queries, query_labels, gallery, gallery_labels = _make_data(
        kind, width, spec["n_queries"], spec["n_gallery"]
    )
    distance = "cosine" if kind == "float" else "hamming"
    n_queries = len(queries)
    scale = 1.0
    if kind == "float":
        left, right = queries, gallery
    else:  # the +-1 matrices of the same shapes
        left, right = queries.float() * 2 - 1, gallery.float() * 2 - 1

    def engine() -> object:
        return evaluate(
            queries, query_labels, gallery, gallery_labels, distance=distance, metrics=TOP_K_METRICS
        )

    def map_all() -> object:
        return evaluate(
            queries, query_labels, gallery, gallery_labels, distance=distance, metrics=("map@all",)
        )

    def mm() -> object:
        return torch.mm(left, right.T)

    def mm_numpy() -> object:
        return left.numpy() @ right.numpy().T

    def sklearn_ap() -> object:
        return [average_precision_score(relevant[i], scores[i]) for i in range(len(scores))]

    def sklearn_nn() -> object:
        metric = "cosine" if kind == "float" else "hamming"
        neighbours = NearestNeighbors(n_neighbors=K, metric=metric, algorithm="brute")
        return neighbours.fit(gallery.numpy()).kneighbors(queries.numpy())

    if what == "sklearn_ap":
        subset = min(spec["ap_queries"], n_queries)
        scores = -torch.cdist(queries[:subset].float(), gallery.float()).numpy()
        relevant = (query_labels[:subset, None] == gallery_labels[None, :]).numpy()
        scale = n_queries / subset
    run = {"engine": engine, "map@all": map_all, "mm": mm, "mm_numpy": mm_numpy}
    run.update({"sklearn_ap": sklearn_ap, "sklearn_nn": sklearn_nn})
    rss_before = _current_rss_bytes()
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        run[what]()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    input_bytes = sum(t.numel() * t.element_size() for t in (queries, gallery))
    return {
        "seconds": min(times) * scale,
        "peak_extra_bytes": max(0, peak - rss_before),
        "peak_bytes": peak,
        "input_bytes": input_bytes,
    }


def _in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--measure", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (seconds)")
    parser.add_argument("--dims", type=int, nargs="*", help="float32 widths (default 64 512 4096; quick: 64)")
    parser.add_argument("--bits", type=int, nargs="*", help="binary code lengths (default 64 128; quick: 64)")
    parser.add_argument("--repeats", type=int, default=3, help="time = best of this many runs")
    parser.add_argument(
        "--ap-queries", type=int, default=500, help="queries timed for (b), then extrapolated"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=MEASUREMENTS, help="measurements to leave out"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(json.loads(args.measure))))
        return 0

    n_queries, n_gallery = (1_200, 1_000) if args.quick else (N_QUERIES, N_GALLERY)
    default_dims, default_bits = ([64], [64]) if args.quick else ([64, 512, 4096], [64, 128])
    dims = default_dims if args.dims is None else args.dims
    bits = default_bits if args.bits is None else args.bits
    repeats = 1 if args.quick else args.repeats
    base = {"n_queries": n_queries, "n_gallery": n_gallery, "repeats": repeats, "threads": args.threads}
    base["ap_queries"] = min(args.ap_queries, 100) if args.quick else args.ap_queries
    print(
        f"{n_queries} queries x {n_gallery} gallery, {N_CLASSES} classes; torch threads: "
        f"{args.threads or torch.get_num_threads()}; best of {repeats}; load average at start: "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    print(
        f"{'data':<9} {'engine s':>8} {'map@all s':>9} {'(a) mm s':>8} {'np mm s':>8} {'(b) AP s':>8} "
        f"{'(c) NN s':>8} {'eng/mm':>6} {'eng/np':>6} {'(b)/eng':>7} {'(b)/m@all':>9} {'(c)/eng':>7} "
        f"{'eng MB':>6} {'m@all MB':>8} {'mm MB':>5} {'input MB':>8}"
    )
    for kind, widths in (("float", dims), ("bits", bits)):
        for width in widths:
            spec = {**base, "kind": kind, "width": width}
            result = {
                what: _in_subprocess({**spec, "what": what}) for what in MEASUREMENTS if what not in args.skip
            }
            print(_format_row(kind, width, result), flush=True)
    print(
        "np mm: the same product through NumPy's BLAS (what the engine's GEMMs use). MB: peak resident "
        "memory of the measuring\nprocess above its level just before the call (ru_maxrss), inputs listed "
        "apart. (b) excludes the distance matrix; (b)/m@all\ncompares like with like (both compute the "
        "full-ranking AP); NaN: measurement skipped."
    )
    return 0


def _format_row(kind: str, width: int, result: dict[str, dict[str, Any]]) -> str:
    def seconds(what: str) -> float:
        return result[what]["seconds"] if what in result else float("nan")

    def megabytes(what: str) -> float:
        return result[what]["peak_extra_bytes"] / 2**20 if what in result else float("nan")

    engine, map_all, ap_loop, neighbours = (
        seconds(w) for w in ("engine", "map@all", "sklearn_ap", "sklearn_nn")
    )
    label = f"d={width}" if kind == "float" else f"{width} bits"
    input_mb = next(iter(result.values()))["input_bytes"] / 2**20 if result else float("nan")
    return (
        f"{label:<9} {engine:>8.3f} {map_all:>9.3f} {seconds('mm'):>8.3f} {seconds('mm_numpy'):>8.3f} "
        f"{ap_loop:>8.2f} {neighbours:>8.2f} {engine / seconds('mm'):>6.2f} "
        f"{engine / seconds('mm_numpy'):>6.2f} "
        f"{ap_loop / engine:>7.1f} {ap_loop / map_all:>9.1f} {neighbours / engine:>7.1f} "
        f"{megabytes('engine'):>6.0f} {megabytes('map@all'):>8.0f} {megabytes('mm'):>5.0f} {input_mb:>8.0f}"
    )


if __name__ == "__main__":
    sys.exit(main())
