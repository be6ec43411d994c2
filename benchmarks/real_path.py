"""One (method, split, seed) through the suite's real path, for the data benchmarks.

The runner's own :func:`~sbir_bench.runner.build_datamodule` and :func:`~sbir_bench.runner.build_trainer`
assemble the RetrievalDataModule, the method and the Lightning Trainer; the checkpoint is the one with the
best validation metric, as in ``sbir-bench bench``. Nothing is written to the leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L

from sbir_bench.config import compose, to_container
from sbir_bench.registry import METHODS
from sbir_bench.runner import build_datamodule, build_trainer


@dataclass
class Scores:
    val: float  # the validation monitor (mAP@200 by default): at the best epoch, or of the untrained method
    test: dict[str, float]  # empty when the test part was not asked for
    test_items: tuple[str, ...]  # instance ids of the test queries, then of the test gallery


def run(overrides: list[str], split: str, seed: int, work_dir: Path, *, test: bool = True) -> Scores:
    """Train (when the method trains) and score one split; ``overrides`` as for ``sbir-bench bench``."""
    cfg = compose(
        [
            *overrides,
            f"paths.output_dir={work_dir / 'outputs'}",
            f"paths.results_dir={work_dir / 'results'}",
            f"paths.leaderboard_dir={work_dir / 'leaderboard'}",
            "logger=none",
            "trainer.enable_progress_bar=false",
            "+trainer.enable_model_summary=false",
        ]
    )
    L.seed_everything(seed, workers=True, verbose=False)
    method_cls = METHODS.get(cfg.method.name)
    datamodule = build_datamodule(cfg, split, seed, method_cls)
    datamodule.prepare_data()
    datamodule.setup()
    method = method_cls(
        data=datamodule.info(), eval_metrics=list(cfg.evaluation.metrics), **to_container(cfg.method.kwargs)
    )
    run_dir = work_dir / "runs" / f"{cfg.method.name}-{split}-seed{seed}-{len(list(work_dir.glob('runs/*')))}"
    trainer, checkpoint = build_trainer(
        cfg, run_dir=run_dir, logger=None, needs_training=method.needs_training
    )
    best = None
    monitor = str(cfg.evaluation.monitor)
    if method.needs_training:
        trainer.fit(method, datamodule=datamodule)
        assert checkpoint is not None
        best = checkpoint.best_model_path or None
        # a closed-form fit (no optimiser step) saves no checkpoint: its one validation is the score
        score = checkpoint.best_model_score
        val = float(score) if score is not None else float(method.last_metrics[monitor])
    else:
        trainer.validate(method, datamodule=datamodule, verbose=False)
        val = float(method.last_metrics[monitor])
    scores = {}
    if test:
        trainer.test(method, datamodule=datamodule, ckpt_path=best, verbose=False)
        scores = {k: float(v) for k, v in method.last_metrics.items()}
    items = tuple(datamodule.query_records("test")["instance"]) + tuple(
        datamodule.gallery_records("test")["instance"]
    )
    return Scores(val=val, test=scores, test_items=items)
