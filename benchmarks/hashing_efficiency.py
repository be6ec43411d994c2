"""What binary codes buy at search time: packed Hamming search + metrics against float cosine search.

The claim of the hashing methods (DSH, CVPR'17; GDH, ECCV'18) is accuracy at a fraction of the memory and
query time of real-valued embeddings. This measures the suite's evaluation engine, which ranks Hamming
codes packed into 64-bit words (XOR + popcount) and float embeddings by an exact GEMM ranking, at the size
of the Sketchy zero-shot test split (12,694 query sketches x 10,453 gallery photos, 21 classes; random
embeddings from ``eval_speed.py``'s generator, the same labels for every configuration), in one run:

- ``64-bit codes`` (and any ``--bits``): ``evaluate(..., distance="hamming")``;
- ``d=512`` and ``d=4096`` float32 (``--dims``): ``evaluate(..., distance="cosine")``;

each with the same metrics (p@100, p@200, map@200, map@200_yelamarthi: search, top-200 selection and
scoring). Every configuration runs in a fresh subprocess (as in ``eval_speed.py``): time = best wall
clock of ``--repeats``; memory = that process's peak resident set above its level just before the call;
bytes per gallery item = bits / 8 for codes, 4·d for float32. Ratios are against the first float width
(d = 512 by default). Target: 64-bit search + metrics >= 10x faster than d = 512 float search + metrics.
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
from eval_speed import N_CLASSES, N_GALLERY, N_QUERIES, TOP_K_METRICS, _current_rss_bytes, _make_data

TARGET_SPEEDUP = 10.0  # 64-bit codes against d = 512 float32


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this (fresh) process: time, peak memory and bytes per gallery item."""
    from sbir_bench.evaluation.engine import evaluate

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    kind, width = spec["kind"], spec["width"]
    queries, query_labels, gallery, gallery_labels = _make_data(
        kind, width, spec["n_queries"], spec["n_gallery"]
    )
    distance = "cosine" if kind == "float" else "hamming"
    rss_before = _current_rss_bytes()
    times, metrics = [], {}
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        metrics = evaluate(
            queries, query_labels, gallery, gallery_labels, distance=distance, metrics=TOP_K_METRICS
        )
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "seconds": min(times),
        "peak_extra_bytes": max(0, peak - rss_before),
        "bytes_per_item": width / 8 if kind == "bits" else width * gallery.element_size(),
        "map@200": float(metrics["map@200"]),
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
    parser.add_argument("--bits", type=int, nargs="*", default=[64], help="code lengths (default 64)")
    parser.add_argument("--dims", type=int, nargs="*", default=[512, 4096], help="float32 widths")
    parser.add_argument("--repeats", type=int, default=3, help="time = best of this many runs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(json.loads(args.measure))))
        return 0
    if not args.dims or not args.bits:
        parser.error("give at least one --dims and one --bits")
    n_queries, n_gallery = (1_200, 1_000) if args.quick else (N_QUERIES, N_GALLERY)
    base = {
        "n_queries": n_queries,
        "n_gallery": n_gallery,
        "repeats": 1 if args.quick else args.repeats,
        "threads": args.threads,
    }
    print(
        f"{n_queries} queries x {n_gallery} gallery, {N_CLASSES} classes; "
        f"metrics {', '.join(TOP_K_METRICS)}; "
        f"torch threads: {args.threads or torch.get_num_threads()}; best of {base['repeats']}; load average "
        f"at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    configs = [("float", d) for d in args.dims] + [("bits", b) for b in args.bits]
    results = {config: _in_subprocess({**base, "kind": config[0], "width": config[1]}) for config in configs}
    reference_label = f"d={args.dims[0]}"
    reference = results[("float", args.dims[0])]
    print(
        f"{'embedding':<14} {'search+metrics s':>16} {'peak MB':>8} {'bytes/item':>10} "
        f"{'speed-up vs ' + reference_label:>18} {'memory vs ' + reference_label:>16}"
    )
    for (kind, width), result in results.items():
        label = f"{width}-bit code" if kind == "bits" else f"d={width} float32"
        print(
            f"{label:<14} {result['seconds']:>16.3f} {result['peak_extra_bytes'] / 2**20:>8.0f} "
            f"{result['bytes_per_item']:>10g} {reference['seconds'] / result['seconds']:>18.1f}x "
            f"{reference['bytes_per_item'] / result['bytes_per_item']:>15.3g}x"
        )
    if 64 in args.bits and 512 in args.dims:
        speedup = results[("float", 512)]["seconds"] / results[("bits", 64)]["seconds"]
        verdict = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
        print(
            f"target: 64-bit codes >= {TARGET_SPEEDUP:g}x faster than d=512 float32: "
            f"{speedup:.1f}x ({verdict})"
        )
    print(
        "peak MB: the measuring process's peak resident memory above its level just before the call "
        "(inputs excluded);\nbytes/item: one gallery item's stored embedding (codes packed, 1 bit each)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
