"""Does zero-shot on the embedded data measure generalisation? Trained without vs with the unseen classes.

For each method and seed, zero-shot mAP@200 on the ``synthetic`` ``zeroshot`` split twice, through the real
path (RetrievalDataModule + method + Lightning Trainer, best-validation checkpoint):

- *without*: the default protocol, the unseen classes never trained on (nor in the stand-in pre-training);
- *with*: ``data.dataset_kwargs.train_on_unseen=true``: per unseen class as many fresh paired instances as a
  seen class trains on join the training part (and so the stand-in pre-training), everything else equal.

Both score the same test queries and gallery (checked). The gap *with − without* is what a model loses by
not having seen the classes: near zero means unseen classes are nothing new. The seed drives the method's
training; ``--vary-backbone`` also re-draws the stand-in pre-training per seed (otherwise the untrained
baseline gives the same numbers for every seed).

    .venv/bin/python benchmarks/seen_unseen_gap.py [--methods cvae,baseline] [--seeds 0,1,2] [--epochs N]
        [--vary-backbone] [KEY=VALUE overrides ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from real_path import run

METRIC = "map@200"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", default="cvae,baseline")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--epochs", type=int, default=None, help="max_epochs of trained methods (default: theirs)"
    )
    parser.add_argument("--vary-backbone", action="store_true", help="stand-in pre-training seed = run seed")
    parser.add_argument("--cache-dir", default=".cache/sbir_bench", help="data, backbone and feature caches")
    parser.add_argument(
        "overrides", nargs="*", help="extra config overrides, e.g. data.backbone.image_size=32"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"zero-shot {METRIC} on synthetic, trained without / with the unseen classes; seeds {seeds}",
        flush=True,
    )
    summary = []
    with tempfile.TemporaryDirectory(prefix="seen-unseen-gap-") as temporary:
        for method in args.methods.split(","):
            gaps = []
            for seed in seeds:
                started = time.perf_counter()
                common = [
                    f"method={method}",
                    "data=synthetic_zs",
                    f"paths.cache_dir={args.cache_dir}",
                    *args.overrides,
                ]
                if args.epochs is not None and method != "baseline":
                    common.append(f"method.max_epochs={args.epochs}")
                if args.vary_backbone:
                    common.append(f"data.backbone.seed={seed}")
                without = run(common, "zeroshot", seed, Path(temporary))
                with_unseen = run(
                    [*common, "data.dataset_kwargs.train_on_unseen=true"], "zeroshot", seed, Path(temporary)
                )
                if without.test_items != with_unseen.test_items:
                    raise RuntimeError("the two conditions do not score the same test queries and gallery")
                gap = with_unseen.test[METRIC] - without.test[METRIC]
                gaps.append(gap)
                print(
                    f"{method} seed {seed}: without {without.test[METRIC]:.4f}  "
                    f"with {with_unseen.test[METRIC]:.4f}  gap {gap:+.4f}  "
                    f"({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
            spread = statistics.stdev(gaps) if len(gaps) > 1 else float("nan")
            summary.append(
                f"{method}: gap {statistics.mean(gaps):+.4f} ± {spread:.4f} (std over {len(gaps)} seeds; "
                f"min {min(gaps):+.4f}, max {max(gaps):+.4f})"
            )
    print("\n".join(summary))


if __name__ == "__main__":
    main()
