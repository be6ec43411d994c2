"""The ``sbir-bench`` command: bench | evaluate | leaderboard | list.

A thin layer: it parses arguments, calls the package, and turns the suite's own errors into one clear
line on stderr (exit code 2) instead of a traceback (set SBIR_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sbir_bench.config import ConfigError
from sbir_bench.data.records import DatasetError
from sbir_bench.registry import UnknownNameError, list_datasets, list_methods

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    UnknownNameError,
    DatasetError,
    FileNotFoundError,
    FileExistsError,
    FloatingPointError,
    ValueError,
)


def cmd_bench(args: argparse.Namespace) -> int:
    from sbir_bench.config import compose
    from sbir_bench.runner import bench, say

    cfg = compose(args.overrides)
    summary = bench(cfg)
    if summary.leaderboard is None:  # a non-zero DDP rank: rank 0 reports
        return 0
    say(f"{len(summary.written)} record(s) written, {len(summary.skipped)} run(s) already finished")
    for path in summary.written:
        say(f"  record: {path}")
    for where in summary.logged_to:
        say(f"  logger: {where}" + ("  (offline: `wandb sync` it to upload)" if "wandb" in where else ""))
    leaderboard_dir = Path(cfg.paths.leaderboard_dir)
    say(f"leaderboard: {leaderboard_dir / 'leaderboard.csv'}, {leaderboard_dir / 'leaderboard.md'}")
    if summary.changed_rows:
        import pandas as pd

        say("rows changed:")
        print(pd.DataFrame(summary.changed_rows).to_string(index=False), flush=True)
    else:
        say("no leaderboard row changed")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sbir_bench.evaluation.engine import DEFAULT_METRICS
    from sbir_bench.evaluation.io import evaluate_files
    from sbir_bench.leaderboard.record import atomic_write_json

    metrics = tuple(args.metric) if args.metric else DEFAULT_METRICS
    result = evaluate_files(args.queries, args.gallery, metrics=metrics, distance=args.distance)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value:.4f}" if not key.startswith("n_") else f"{key:<{width}}  {int(value)}")
    if args.out:
        payload = {
            "queries": str(args.queries),
            "gallery": str(args.gallery),
            "distance": args.distance,
            **result,
        }
        atomic_write_json(Path(args.out), payload)
        print(f"wrote {args.out}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from sbir_bench.leaderboard.build import rebuild

    table, changed = rebuild(Path(args.results), Path(args.out))
    print(f"{len(table)} row(s) -> {Path(args.out) / 'leaderboard.csv'}, {Path(args.out) / 'leaderboard.md'}")
    print(f"{len(changed)} row(s) changed")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    sections = {"methods": list_methods(), "datasets": list_datasets()}
    if args.json:
        print(json.dumps(sections, indent=2))
        return 0
    for title, names in sections.items():
        print(f"{title}:")
        for name in names:
            print(f"  {name}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="sbir-bench", description=__doc__.splitlines()[0])
    sub = root.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="train + evaluate a method, write records, rebuild the leaderboard")
    bench.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. method=cvae data=synthetic_zs seeds=[0,1]"
    )
    bench.set_defaults(func=cmd_bench)

    evaluate = sub.add_parser(
        "evaluate", help="score embeddings produced anywhere (.npz: embeddings, labels)"
    )
    evaluate.add_argument("--queries", required=True, type=Path)
    evaluate.add_argument("--gallery", required=True, type=Path)
    evaluate.add_argument("--metric", action="append", help="repeatable; default: the leaderboard metrics")
    evaluate.add_argument("--distance", default="cosine", choices=("cosine", "euclidean", "hamming"))
    evaluate.add_argument("--out", type=Path, help="write the metrics as JSON here")
    evaluate.set_defaults(func=cmd_evaluate)

    board = sub.add_parser("leaderboard", help="rebuild leaderboard.csv / .md from the records alone")
    board.add_argument("--results", default="leaderboard/results")
    board.add_argument("--out", default="leaderboard")
    board.set_defaults(func=cmd_leaderboard)

    listing = sub.add_parser("list", help="registered methods and datasets")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except USER_ERRORS as error:
        if os.environ.get("SBIR_DEBUG"):
            raise
        print(f"sbir-bench {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
