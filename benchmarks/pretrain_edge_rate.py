"""Choose the stand-in pre-training's edge-map rate on the seen-class validation split of ``zeroshot``.

For each rate ``data.backbone.pretrain_edge_prob`` the backbone is pre-trained afresh (cached per rate),
then the untrained baseline and CVAE (``--cvae-epochs``) are scored on the zero-shot split's *validation*
part (held-out sketches and photos of seen classes; no unseen class, no test item): the baseline's
mAP@200 and CVAE's best validation mAP@200, the checkpoint criterion of ``sbir-bench bench``. The rate
chosen is the one with the best CVAE validation mAP@200 (the default method trained on these features);
the test part is never looked at.

    .venv/bin/python benchmarks/pretrain_edge_rate.py [--rates 0.05,0.1,0.2,0.3] [--cvae-epochs 50]
        [KEY=VALUE overrides ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from real_path import run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="0.05,0.1,0.2,0.3", help="edge-map rates to try, comma-separated")
    parser.add_argument("--cvae-epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=".cache/sbir_bench", help="data, backbone and feature caches")
    parser.add_argument(
        "overrides", nargs="*", help="extra config overrides, e.g. data.backbone.image_size=32"
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    print(f"zero-shot validation mAP@200 (seen classes only) per edge-map rate; seed {args.seed}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-rate-") as temporary:
        for rate in rates:
            started = time.perf_counter()
            data = [
                "data=synthetic_zs",
                f"data.backbone.pretrain_edge_prob={rate}",
                f"paths.cache_dir={args.cache_dir}",
                *args.overrides,
            ]
            baseline = run(["method=baseline", *data], "zeroshot", args.seed, Path(temporary), test=False)
            cvae = run(
                ["method=cvae", f"method.max_epochs={args.cvae_epochs}", *data],
                "zeroshot",
                args.seed,
                Path(temporary),
                test=False,
            )
            rows.append((rate, baseline.val, cvae.val))
            print(
                f"rate {rate:.2f}: baseline {baseline.val:.4f}  cvae {cvae.val:.4f}  "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    best = max(rows, key=lambda row: row[2])
    print(f"chosen: pretrain_edge_prob={best[0]} (best CVAE validation mAP@200, {best[2]:.4f})")


if __name__ == "__main__":
    main()
