"""The ``sbir-bench`` command: bench | bench-all | submit | evaluate | embed | leaderboard | list | data.

A thin layer: it parses arguments, calls the package, and turns the suite's own errors into one clear
line on stderr (exit code 2) instead of a traceback (set SBIR_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sbir_bench.config import ConfigError
from sbir_bench.registry import UnknownNameError

# Imports stay light here and in every command's path to its first error (``list`` and config errors
# take about a second): pandas, torch, Lightning and W&B are imported inside the commands that use them.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    UnknownNameError,
    FileNotFoundError,
    FileExistsError,
    FloatingPointError,
    ValueError,
)


def _is_user_error(error: BaseException) -> bool:
    """One of :data:`USER_ERRORS`, or a DatasetError (looked up only once its module, which imports
    pandas, is loaded: it cannot have been raised before)."""
    records = sys.modules.get("sbir_bench.data.records")
    return isinstance(error, USER_ERRORS + ((records.DatasetError,) if records else ()))


def cmd_bench(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from sbir_bench.config import compose
    from sbir_bench.config_checks import check_objects

    cfg = compose(args.overrides, check=not args.cfg)  # --cfg shows even a config that would be refused
    if args.cfg:
        print(OmegaConf.to_yaml(cfg, resolve=True), end="")
        return 0
    check_objects(cfg)  # every _target_, the method and the dataset: still before any data work

    if args.dry_run:
        return print_plan(cfg)
    from sbir_bench.runner import bench, say

    summary = bench(cfg)
    rebuilds = cfg.to_leaderboard and cfg.rebuild_leaderboard
    if summary.leaderboard is None and rebuilds:  # a non-zero DDP rank: rank 0 reports
        return 0
    say(f"{len(summary.written)} record(s) written, {len(summary.skipped)} run(s) already finished")
    for path in summary.written:
        say(f"  record: {path}")
    for where in summary.logged_to:
        say(f"  logger: {where}" + ("  (offline: `wandb sync` it to upload)" if "wandb" in where else ""))
    if not cfg.to_leaderboard:
        say("debug run: its record stays in the run folder; the leaderboard is not rebuilt")
        return 0
    if not cfg.rebuild_leaderboard:
        say("rebuild_leaderboard=false: the leaderboard is not rebuilt (make leaderboard rebuilds it)")
        return 0
    leaderboard_dir = Path(cfg.paths.leaderboard_dir)
    say(f"leaderboard: {leaderboard_dir / 'leaderboard.csv'}, {leaderboard_dir / 'leaderboard.md'}")
    if summary.changed_rows:
        import pandas as pd

        say("rows changed:")
        print(pd.DataFrame(summary.changed_rows).to_string(index=False), flush=True)
    else:
        say("no leaderboard row changed")
    return 0


def print_plan(cfg: Any) -> int:
    """``bench --dry-run``: the config's identity hash, its variant, and what bench would do with each
    (split, seed) and why; reads records only, builds no data."""
    from sbir_bench.plan import plan_runs

    plan = plan_runs(cfg)
    variant = plan.variant
    registered = "registered" if variant.is_registered else "a variant"
    print(
        f"config {plan.config_hash}, variant {variant.name} ({registered}; the registered configuration of "
        f"these config groups is {variant.registered_variant}, config {variant.registered_hash})"
    )
    for run in plan.runs:
        where = f" ({run.record})" if run.record else ""
        print(f"{'run ' if run.runs else 'skip'}  {run.name}: {run.reason}{where}")
    todo = sum(run.runs for run in plan.runs)
    print(f"{todo} to run, {len(plan.runs) - todo} to skip")
    return 0


def cmd_bench_all(args: argparse.Namespace) -> int:
    from sbir_bench.bench_all import bench_all

    methods = [name.strip() for name in args.methods.split(",") if name.strip()] if args.methods else None
    return bench_all(methods, args.overrides, dry_run=args.dry_run)


def cmd_submit(args: argparse.Namespace) -> int:
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from sbir_bench.submit import SubmitSettings, submit

    settings = SubmitSettings.load(
        args.launcher,
        folder=args.folder,
        partition=args.partition,
        timeout_min=args.timeout_min,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        gpus_per_node=args.gpus_per_node,
        array_parallelism=args.array_parallelism,
        additional=_parse_options(args.sbatch) or None,
    )
    submitted, skipped = submit(args.overrides, settings)
    for line in skipped:
        print(f"skip {line}")
    for job, run in submitted:
        print(f"job {job.job_id}: bench {' '.join(run.overrides)}")
    print(f"{len(submitted)} job(s) submitted ({settings.executor}), logs under {settings.folder}")
    if not args.wait:
        return 0
    failed = 0
    for job, _ in submitted:
        try:
            for path in job.result():
                print(f"job {job.job_id}: record {path}")
        except (FailedJobError, UncompletedJobError):
            failed += 1
            print(f"job {job.job_id}: failed; see {job.paths.stderr}", file=sys.stderr)
    return 1 if failed else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sbir_bench.evaluation.engine import DEFAULT_METRICS
    from sbir_bench.evaluation.io import evaluate_files, json_ready
    from sbir_bench.files import atomic_write_json

    metrics = tuple(args.metric) if args.metric else DEFAULT_METRICS
    result = evaluate_files(
        args.queries,
        args.gallery,
        metrics=metrics,
        distance=args.distance,
        triplets_path=args.triplets,
        class_mean=args.class_mean,
    )
    width = max(len(k) for k in result)
    for key, value in result.items():
        shown = "undefined (no query has a relevant item)" if value != value else f"{value:.4f}"
        print(f"{key:<{width}}  {shown}" if not key.startswith("n_") else f"{key:<{width}}  {int(value)}")
    if args.out:
        payload = {
            "queries": str(args.queries),
            "gallery": str(args.gallery),
            "distance": args.distance,
            **({"triplets": str(args.triplets)} if args.triplets else {}),
            **json_ready(result, metrics),
        }
        atomic_write_json(Path(args.out), payload)
        print(f"wrote {args.out}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from sbir_bench.embed import embed_checkpoint

    done = embed_checkpoint(
        args.checkpoint,
        args.out_dir,
        split=args.split,
        cache_dir=args.cache_dir,
        accelerator=args.accelerator,
    )
    print(f"wrote {done.queries} {done.shapes[0]} and {done.gallery} {done.shapes[1]} (split {done.split})")
    metrics = " ".join(f"--metric {m}" for m in done.metrics)
    if done.triplets is not None:
        metrics += f" --triplets {done.triplets}"
    else:
        metrics = " ".join(f"--metric {m}" for m in done.metrics if m != "triplet_acc")
    print(
        f"score them as the run did: sbir-bench evaluate --queries {done.queries} --gallery {done.gallery} "
        f"--distance {done.distance} {metrics}"
    )
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    import pandas as pd

    from sbir_bench.leaderboard.build import rebuild_leaderboard
    from sbir_bench.leaderboard.select import describe

    rebuilt = rebuild_leaderboard(Path(args.results), Path(args.out))
    for line in describe(rebuilt.selection):  # which records each row used, which were set aside and why
        print(line)
    for note in rebuilt.notes:
        print(f"note: {note}")
    out = Path(args.out)
    print(f"{len(rebuilt.table)} row(s) -> {out / 'leaderboard.csv'}, {out / 'leaderboard.md'}")
    for name, table in rebuilt.tracks.items():
        if not table.empty:
            print(f"{len(table)} row(s) -> {out / name}, {(out / name).with_suffix('.md')}")
    print(f"{len(rebuilt.changes)} row(s) changed")
    if rebuilt.changes:
        print(pd.DataFrame(rebuilt.changes).to_string(index=False))
    if args.wandb:
        from sbir_bench.loggers import log_leaderboard

        print(f"leaderboard logged to W&B: {log_leaderboard(rebuilt.table, out)}")
    return 0


LISTED_GROUPS = ("method", "data", "trainer", "logger", "experiment", "debug", "callbacks", "submit")
# how each group is chosen, where it is not `GROUP=NAME` on the bench command line
CHOSEN_WITH = {"submit": "sbir-bench submit --launcher NAME"}


def cmd_list(args: argparse.Namespace) -> int:
    from sbir_bench.config import available, config_values, entry_point_names

    configs = {group: names for group in LISTED_GROUPS if (names := available(group))}
    sections = {
        # registered names as the configs use them (method.name, data.dataset): no method module is
        # imported, since those import Lightning
        "methods": sorted({*config_values("method", "name"), *entry_point_names("sbir_bench.methods")}),
        "datasets": config_values("data", "dataset"),
    }
    if args.json:
        print(json.dumps({**sections, "configs": configs}, indent=2))
        return 0
    titles = {
        "methods": "methods (method.name; configs: method=NAME below):",
        "datasets": "datasets (data.dataset; sbir-bench data summary|check DATASET):",
    }
    for title, names in sections.items():
        print(titles[title])
        for name in names:
            print(f"  {name}")
    for group, names in configs.items():
        print(f"{CHOSEN_WITH.get(group, group + '=')} configs:")
        for name in names:
            print(f"  {name}")
    return 0


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``-o key=value`` pairs; values read as YAML scalars (``0.2``, ``true``, ``null``, ``edge``)."""
    import yaml

    options = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"option {pair!r} is not key=value")
        options[key] = yaml.safe_load(value)
    return options


def _checked_options(what: str, factory: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` unless ``factory`` takes no such keyword (then a ValueError listing those it takes)."""
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return options
    accepted = sorted(p.name for p in parameters if p.name not in ("cache_dir", "progress", "splits"))
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"{what} takes no option(s) {unknown}; its options: {', '.join(accepted) or '(none)'}"
        )
    return options


_DOMAIN_PLURALS = {"sketch": "sketches", "photo": "photos", "shape": "shapes"}


def _split_counts(catalog: Any, name: str) -> dict[str, Any]:
    """Per split: classes seen / unseen, records per domain, the size of every part and of its triplets."""
    import numpy as np

    from sbir_bench.data.records import SPLIT_PARTS, TEST_TRIPLETS

    split = catalog.split(name)
    domains = catalog.records["domain"].to_numpy()
    used = np.unique(np.concatenate([split.part(part) for part in SPLIT_PARTS]))
    return {
        "split": name,
        "setting": split.setting,
        "seen_classes": len(split.seen_classes),
        "unseen_classes": len(split.unseen_classes),
        **{plural: int((domains[used] == domain).sum()) for domain, plural in _DOMAIN_PLURALS.items()},
        **split.counts(),
        "triplets": int(len(catalog.triplets.get(name, ()))),
        "test_triplets": int(len(catalog.triplets.get(TEST_TRIPLETS, ()))) if name == "fine_grained" else 0,
    }


def cmd_data_summary(args: argparse.Namespace) -> int:
    import pandas as pd

    from sbir_bench.registry import DATASETS, SPLIT_STATISTICS

    options = _parse_options(args.option)
    if args.root is not None:
        options["root"] = str(args.root)
    factory = DATASETS.get(args.dataset)
    options = _checked_options(f"dataset {args.dataset!r}", factory, options)
    if args.split and "splits" in inspect.signature(factory).parameters:
        options["splits"] = [args.split]  # build that split only: a partial tree may lack the others
    catalog = DATASETS.create(args.dataset, cache_dir=str(args.cache_dir), **options)
    names = [args.split] if args.split else list(catalog.splits)
    rows = [_split_counts(catalog, name) for name in names]
    summary = {
        "dataset": catalog.name,
        "fingerprint": catalog.fingerprint,
        "classes": catalog.num_classes,
        "records": {
            domain: int(n) for domain, n in catalog.records["domain"].value_counts().sort_index().items()
        },
        "splits": {row["split"]: {k: v for k, v in row.items() if k != "split"} for row in rows},
    }
    # the counts the papers' tables give, beside theirs (datasets whose reader knows them)
    literature = (
        {name: SPLIT_STATISTICS.get(args.dataset)(catalog, name) for name in names}
        if args.dataset in SPLIT_STATISTICS
        else {}
    )
    if args.json:
        for name, table in literature.items():
            summary["splits"][name]["literature"] = json.loads(table.to_json(orient="index"))
            summary["splits"][name]["literature_source"] = table.attrs.get("source", "")
        print(json.dumps(summary, indent=2))
        return 0
    records = ", ".join(f"{n} {_DOMAIN_PLURALS[domain]}" for domain, n in summary["records"].items())
    print(f"{catalog.name}: {catalog.num_classes} classes, {records} (fingerprint {catalog.fingerprint})")
    print(pd.DataFrame(rows).to_string(index=False))
    for name, table in literature.items():
        print(f"\n{name}: counts beside the literature's")
        if table.attrs.get("source"):
            print(textwrap.fill(f"source: {table.attrs['source']}", width=110, subsequent_indent="  "))
        print(table.to_string())
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from sbir_bench.data.records import DatasetError
    from sbir_bench.registry import DATASET_CHECKERS, DATASETS

    DATASETS.get(args.dataset)  # an unknown dataset fails here, naming the known ones
    if args.dataset not in DATASET_CHECKERS:
        raise DatasetError(
            f"dataset {args.dataset!r} has no checker (it is not read from a tree on disk); datasets with "
            f"one: {', '.join(DATASET_CHECKERS.names()) or '(none)'}"
        )
    checker = DATASET_CHECKERS.get(args.dataset)
    options = _checked_options(f"checker of {args.dataset!r}", checker, _parse_options(args.option))
    problems = checker(root=None if args.root is None else str(args.root), **options)
    for problem in problems:
        print(problem)
    errors = sum(not problem.warning for problem in problems)
    warnings = len(problems) - errors
    if errors:
        print(
            f"{errors} problem(s) found" + (f", {warnings} warning(s)" if warnings else ""), file=sys.stderr
        )
        return 1
    print(f"no problem found, {warnings} warning(s)" if warnings else "no problem found")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="sbir-bench", description=__doc__.splitlines()[0])
    sub = root.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="train + evaluate a method, write records, rebuild the leaderboard")
    bench.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. method=cvae data=synthetic_zs seeds=[0,1]"
    )
    bench.add_argument("--cfg", action="store_true", help="print the resolved config (YAML) and exit")
    bench.add_argument(
        "--dry-run",
        action="store_true",
        help="print the config hash, the variant and what each (split, seed) would do (run or skip) and why",
    )
    bench.set_defaults(func=cmd_bench)

    every = sub.add_parser(
        "bench-all",
        help="every registered method x the dataset's splits x the seeds, one process per run (a failure "
        "stops nothing else); finished runs skipped; the leaderboard rebuilt once at the end",
    )
    every.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides for every run, e.g. data=synthetic seeds=[0,1,2] trainer=cpu (no method=)",
    )
    every.add_argument(
        "--methods", help="comma-separated method names (configs/method/NAME.yaml); default: every registered"
    )
    every.add_argument("--dry-run", action="store_true", help="list every run and whether it runs or skips")
    every.set_defaults(func=cmd_bench_all)

    sub_jobs = sub.add_parser(
        "submit",
        help="one job per run (split, seed) of a config or a grid (method=a,b data=x,y) through submitit: "
        "a SLURM array job, or local processes",
    )
    sub_jobs.add_argument("overrides", nargs="*", help="Hydra overrides as for bench; key=a,b sweeps a grid")
    sub_jobs.add_argument(
        "--launcher",
        default="slurm",
        help="configs/submit/NAME.yaml: executor and options (default: slurm)",
    )
    sub_jobs.add_argument("--folder", help="where submitit keeps its scripts and the logs of the jobs")
    sub_jobs.add_argument("--partition", help="SLURM partition")
    sub_jobs.add_argument("--timeout-min", type=int, help="time limit of a job, minutes (then: requeued)")
    sub_jobs.add_argument("--cpus-per-task", type=int, help="CPU cores per task (one task per DDP rank)")
    sub_jobs.add_argument("--mem-gb", type=float, help="memory per node, GB")
    sub_jobs.add_argument("--gpus-per-node", type=int, help="default: trainer.devices on a gpu trainer")
    sub_jobs.add_argument("--array-parallelism", type=int, help="at most this many jobs running at once")
    sub_jobs.add_argument(
        "--sbatch", action="append", default=[], metavar="KEY=VALUE", help="another sbatch option, repeatable"
    )
    sub_jobs.add_argument("--wait", action="store_true", help="wait for the jobs and print their records")
    sub_jobs.set_defaults(func=cmd_submit)

    evaluate = sub.add_parser(
        "evaluate", help="score embeddings produced anywhere (.npz: embeddings, labels)"
    )
    evaluate.add_argument(
        "--queries", required=True, type=Path, help="query .npz: embeddings (N x D), labels (N)"
    )
    evaluate.add_argument(
        "--gallery", required=True, type=Path, help="gallery .npz: embeddings (M x D), labels (M)"
    )
    evaluate.add_argument(
        "--metric",
        action="append",
        help="repeatable: p@K, p@K_minr, map@K, map@K_yelamarthi, map@K_voc, map@all, map@all_voc, acc@K, "
        "triplet_acc (needs --triplets); sketch->3D: nn, ft, st, e, dcg, e_mean_pr, dcg_log2i1 "
        "(default: the leaderboard metrics)",
    )
    evaluate.add_argument(
        "--class-mean",
        action="store_true",
        help="also print class_mean/<metric>: per-query values averaged per query class, then over classes",
    )
    evaluate.add_argument(
        "--triplets",
        type=Path,
        help="triplet_acc's annotated triplets: .npy, int [T, 3] rows (query row, positive gallery row, "
        "negative gallery row) of the two files",
    )
    evaluate.add_argument(
        "--distance",
        default="cosine",
        choices=("cosine", "euclidean", "hamming"),
        help="how queries and gallery items are compared (default: cosine)",
    )
    evaluate.add_argument("--out", type=Path, help="write the metrics as JSON here")
    evaluate.set_defaults(func=cmd_evaluate)

    embed = sub.add_parser(
        "embed", help="a run's checkpoint -> queries.npz / gallery.npz of its test part (for evaluate)"
    )
    embed.add_argument("--checkpoint", required=True, type=Path, help="a .ckpt written by `sbir-bench bench`")
    embed.add_argument("--out-dir", required=True, type=Path, help="where queries.npz and gallery.npz go")
    embed.add_argument("--split", help="embed this split of the run's dataset (default: the run's split)")
    embed.add_argument("--cache-dir", help="the data and feature cache (default: the run's)")
    embed.add_argument("--accelerator", default="cpu", help="Lightning accelerator (default: cpu)")
    embed.set_defaults(func=cmd_embed)

    board = sub.add_parser("leaderboard", help="rebuild leaderboard.csv / .md from the records alone")
    board.add_argument(
        "--results",
        default="leaderboard/results",
        help="folder of the run records (JSON) to build from (default: leaderboard/results)",
    )
    board.add_argument(
        "--out",
        default="leaderboard",
        help="folder to write leaderboard.csv and leaderboard.md into (default: leaderboard)",
    )
    board.add_argument(
        "--wandb",
        action="store_true",
        help="also log leaderboard.csv to Weights & Biases as an artifact and a table (job type "
        "leaderboard; WANDB_MODE, WANDB_PROJECT and WANDB_DIR are honoured)",
    )
    board.set_defaults(func=cmd_leaderboard)

    listing = sub.add_parser("list", help="the names to type: methods, datasets, configs of each group")
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    listing.set_defaults(func=cmd_list)

    data = sub.add_parser("data", help="inspect a dataset: split counts, or every problem of its tree")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    option_help = "a dataset option (data.dataset_kwargs), repeatable, e.g. -o layout=packed"
    summary = data_sub.add_parser("summary", help="per-split counts of classes, sketches, photos, parts")
    summary.add_argument("dataset")
    summary.add_argument("--root", type=Path, help="the dataset folder (default: under $SBIR_DATA)")
    summary.add_argument("--split", help="only this split (the only one built, where the reader allows)")
    summary.add_argument("--json", action="store_true")
    summary.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("SBIR_CACHE", ".cache/sbir_bench")),
        help="where generated or unpacked data is cached (default: $SBIR_CACHE or .cache/sbir_bench)",
    )
    summary.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help=option_help)
    summary.set_defaults(func=cmd_data_summary)
    check = data_sub.add_parser(
        "check", help="list every problem (and warning) of a dataset tree (exit code 1 if any problem)"
    )
    check.add_argument("dataset")
    check.add_argument("--root", type=Path, help="the dataset folder (default: under $SBIR_DATA)")
    check.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help=option_help)
    check.set_defaults(func=cmd_data_check)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `sbir-bench list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        if os.environ.get("SBIR_DEBUG") or not _is_user_error(error):
            raise
        for line in str(error).splitlines() or [type(error).__name__]:  # one line per problem
            print(f"sbir-bench {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
