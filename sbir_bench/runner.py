"""``sbir-bench bench``: one composed config -> for each split and seed: data, method, Trainer, test, record.

The path a run walks (README, "Layout"): registry -> DataModule + method + Trainer -> ``trainer.fit``
(checkpoint chosen by validation retrieval mAP, resumable) -> ``trainer.test`` (the evaluation engine
scores gathered embeddings) -> one JSON record -> leaderboard rebuilt from all records.

Reruns skip every (method, variant, dataset, split, seed, config hash) that already has a finished record
whose run folder is in this checkout, so an interrupted ``make bench`` resumes where it stopped and never
duplicates a record; records committed from another machine are measured again (a new record beside them).
Rank 0 makes that decision (:mod:`sbir_bench.plan`) holding the run's lock, and every DDP rank follows it.
"""

from __future__ import annotations

import contextlib
import pickle
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from filelock import BaseFileLock, Timeout
from lightning.fabric.strategies.launchers import _SubprocessScriptLauncher
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, ProgressBar
from omegaconf import DictConfig

from sbir_bench.config import ConfigError, record_config, save_run_config, to_container
from sbir_bench.data.modules import RetrievalDataModule
from sbir_bench.efficiency import EFFICIENCY_KEY, measure
from sbir_bench.evaluation.curves import ranking_curves
from sbir_bench.evaluation.engine import evaluate
from sbir_bench.evaluation.metrics import parse_metric
from sbir_bench.evaluation.search import top_k
from sbir_bench.files import atomic_path, file_lock
from sbir_bench.leaderboard.build import rebuild
from sbir_bench.leaderboard.record import (
    RunRecord,
    environment_info,
    find_record,
    new_run_id,
    utc_now,
    write_record,
)
from sbir_bench.loggers import (
    RunLabels,
    RunSummary,
    build_loggers,
    finish,
    log_run_summary,
    wandb_run_location,
)
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.plan import PlannedRun, identify, lock_path, plan_run, run_folder, run_identity, run_name
from sbir_bench.random_state import RandomStateCheckpoint
from sbir_bench.registry import method_class
from sbir_bench.strategies import ClosedFormDDPStrategy, has_trainable_parameters
from sbir_bench.variant import Variant
from sbir_bench.viz import retrieval_grid

GRID_TOP = 10
LAST_CHECKPOINT = "last"  # checkpoints/last.ckpt: the end of the latest epoch, resumed from
TESTED_CHECKPOINT = "tested.ckpt"  # the model tested when no best checkpoint was chosen (untrained methods)
BEST_CHECKPOINT_NODE = "model_checkpoint"  # configs/callbacks: the checkpoint trainer.test evaluates
LOCK_WAIT_STEP_SECONDS = 60.0  # rank 0 waits for a run's lock in steps of this, the other ranks with it


@dataclass
class BenchSummary:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    logged_to: list[str] = field(default_factory=list)
    changed_rows: list[dict[str, Any]] = field(default_factory=list)
    leaderboard: pd.DataFrame | None = None


def say(message: str) -> None:
    if rank_zero_only.rank == 0:
        print(f"[sbir-bench] {message}", flush=True)


def bench(cfg: DictConfig) -> BenchSummary:
    """Run every (split, seed) of the composed config, then rebuild the leaderboard from all records.

    Every process of a DDP run joins before the first decision; rank 0 decides each run (under the run's
    lock, :func:`plan_run`) and tells the others, so ranks that see other files (nodes without a shared
    file system) still run and skip the same runs together.
    """
    summary = BenchSummary()
    label = cfg.variant
    chash, variant = identify(cfg)  # refuses a registered label on another configuration
    if variant.name != label or not variant.is_registered:
        say(
            f"variant {variant.name} (config {chash}); the registered configuration of these config "
            f"groups is {variant.registered_variant} (config {variant.registered_hash})"
        )
    world = join_processes(cfg)
    for split in cfg.data.splits:
        for seed in cfg.seeds:
            with run_lock(lock_path(cfg, split, int(seed), chash), world):
                decided = plan_run(cfg, split, int(seed), chash) if world.global_rank == 0 else None
                planned: PlannedRun = world.strategy.broadcast(decided, src=0)
                if not planned.runs:
                    say(f"skip {planned.name}: {planned.reason}")
                    summary.skipped.append(planned.record)
                    continue
                say(f"{planned.name}: {planned.reason}; running it")
                path, logged_to = run_one(cfg, split=split, seed=int(seed), chash=chash, variant=variant)
            if path is not None:
                summary.written.append(path)
            if logged_to:
                summary.logged_to.append(logged_to)
    if rank_zero_only.rank == 0 and cfg.to_leaderboard and cfg.rebuild_leaderboard:
        summary.leaderboard, summary.changed_rows = rebuild(
            Path(cfg.paths.results_dir), Path(cfg.paths.leaderboard_dir)
        )
    return summary


def join_processes(cfg: DictConfig) -> L.Fabric:
    """Start (or join) every process of the Trainer's DDP run now, before any decision, with the Trainer's
    own launcher: Lightning re-runs this command on the other local ranks, or they are started outside
    (SLURM, torchrun, one command per node). The Trainers of the runs then find the process group
    initialised and reuse it. A single process, or a strategy that spawns its ranks inside each fit
    (``ddp_spawn``: this process alone decides), is not launched (``broadcast`` returns its argument)."""
    options = cfg.trainer
    world = L.Fabric(
        accelerator=options.accelerator,
        devices=options.devices,
        num_nodes=options.num_nodes,
        strategy=options.strategy,
    )
    if isinstance(world.strategy.launcher, _SubprocessScriptLauncher):
        world.launch()
    return world


@contextlib.contextmanager
def run_lock(path: Path, world: L.Fabric) -> Iterator[None]:
    """Hold the run's lock (on rank 0) for the whole run: another process that starts the same run waits,
    then finds its record and skips it. The other ranks wait with rank 0, in steps short enough for no
    collective call to outlive the process group's timeout."""
    lock = file_lock(path) if world.global_rank == 0 else None
    while not world.strategy.broadcast(_acquired(lock) if lock is not None else None, src=0):
        pass
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _acquired(lock: BaseFileLock) -> bool:
    try:
        lock.acquire(timeout=LOCK_WAIT_STEP_SECONDS)
    except Timeout:
        say(f"waiting for {lock.lock_file}: another process is running this run")
        return False
    return True


def build_datamodule(
    cfg: DictConfig, split: str, seed: int, method_cls: type[RetrievalMethod]
) -> RetrievalDataModule:
    data = cfg.data
    datamodule = RetrievalDataModule(
        dataset=data.dataset,
        split=split,
        dataset_kwargs=dict(data.dataset_kwargs),
        cache_dir=cfg.paths.cache_dir,
        backbone=dict(data.backbone),
        batch_size=int(cfg.method.get("batch_size") or data.batch_size),
        eval_batch_size=int(data.eval_batch_size),
        feature_batch_size=int(data.feature_batch_size),
        num_workers=int(data.num_workers),
        seed=seed,
        semantics=to_container(data.semantics) if data.get("semantics") else None,
        accelerator=str(cfg.trainer.accelerator),
    )
    datamodule.configure_for_method(method_cls)
    return datamodule


def build_callbacks(
    cfg: DictConfig, *, run_dir: Path, needs_training: bool, has_logger: bool
) -> tuple[list[Any], ModelCheckpoint | None]:
    """The configured callbacks (``configs/callbacks``, built with ``hydra.utils.instantiate``) and the
    suite's own: the random states and ``last.ckpt`` that make a resumed run exact, and the best checkpoint
    ``trainer.test`` evaluates (node ``model_checkpoint``, else a default one; other checkpoint nodes only
    add checkpoints).

    A checkpoint node with ``dirpath: null`` saves into the run folder's ``checkpoints/``; a progress bar is
    left out when ``trainer.enable_progress_bar`` is false, a learning-rate monitor when there is no logger
    (Lightning refuses both).
    """
    from hydra.utils import instantiate

    checkpoints = run_dir / "checkpoints"
    monitor = f"val/{cfg.evaluation.monitor}"
    callbacks: list[Any] = []
    checkpoint = None
    for name, node in (cfg.get("callbacks") or {}).items():
        extra = {"dirpath": str(checkpoints)} if "dirpath" in node and node.dirpath is None else {}
        callback = instantiate(node, **extra)
        if isinstance(callback, ProgressBar) and not cfg.trainer.get("enable_progress_bar", True):
            continue
        if isinstance(callback, LearningRateMonitor) and not has_logger:
            continue
        if name == BEST_CHECKPOINT_NODE:
            watched = (callback.monitor, callback.mode) if isinstance(callback, ModelCheckpoint) else None
            if watched != (monitor, "max"):
                raise ConfigError(
                    f"callbacks.{name} must be a ModelCheckpoint on {monitor}, mode max (the best checkpoint "
                    f"follows evaluation.monitor): set evaluation.monitor instead"
                )
            checkpoint = callback
        callbacks.append(callback)
    if not needs_training:
        return [c for c in callbacks if not isinstance(c, (ModelCheckpoint, EarlyStopping))], None
    if checkpoint is None:
        checkpoint = ModelCheckpoint(
            dirpath=checkpoints,
            filename="best-epoch{epoch}",
            auto_insert_metric_name=False,
            monitor=monitor,
            mode="max",
        )
        callbacks.append(checkpoint)
    # every epoch's end overwrites last.ckpt (a ModelCheckpoint's save_last only follows an improvement)
    # with the full state to resume from: weights, optimiser, loops, the best-checkpoint tracker above
    # (saved before it), the DataModule's batch generator and the global random states
    latest = ModelCheckpoint(dirpath=checkpoints, filename=LAST_CHECKPOINT, enable_version_counter=False)
    return [RandomStateCheckpoint(), *callbacks, latest], checkpoint


def build_trainer(
    cfg: DictConfig, *, run_dir: Path, logger: Any, needs_training: bool, trainable: bool = True
) -> tuple[L.Trainer, ModelCheckpoint | None]:
    """``L.Trainer`` from ``cfg.trainer`` (options left at null: Lightning's defaults), the callbacks and
    the logger(s) (a list, one or none). A method without ``trainable`` parameters (a closed-form fit)
    runs ``strategy: ddp`` as :class:`~sbir_bench.strategies.ClosedFormDDPStrategy` (DDP cannot wrap it)."""
    options = {key: value for key, value in to_container(cfg.trainer).items() if value is not None}
    if not trainable and options.get("strategy") == "ddp":
        options["strategy"] = ClosedFormDDPStrategy()
    max_epochs = options.pop("max_epochs", None) or cfg.method.max_epochs
    callbacks, checkpoint = build_callbacks(
        cfg, run_dir=run_dir, needs_training=needs_training, has_logger=bool(logger)
    )
    trainer = L.Trainer(
        **options,
        max_epochs=max(int(max_epochs), 1),
        logger=logger if logger else False,
        callbacks=callbacks,
        enable_checkpointing=needs_training,
        default_root_dir=str(run_dir),
    )
    return trainer, checkpoint


def _resumable_checkpoint(run_dir: Path) -> str | None:
    """``last.ckpt`` when it holds every state a resumed run needs to give the record an uninterrupted run
    gives (see :mod:`sbir_bench.random_state`); an unreadable checkpoint or one without them is set aside
    and training starts over."""
    last = run_dir / "checkpoints" / f"{LAST_CHECKPOINT}.ckpt"
    if not last.is_file():
        return None
    try:
        saved = torch.load(last, map_location="cpu", mmap=True, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        say(f"{last} cannot be read ({type(error).__name__}: {error}): training starts over")
        return None
    complete = RandomStateCheckpoint.__qualname__ in saved.get("callbacks", {}) and (
        RetrievalDataModule.__qualname__ in saved
    )
    if not complete:
        say(f"{last} lacks the random states that make a resumed run exact: training starts over")
        return None
    return str(last)


def run_one(
    cfg: DictConfig, *, split: str, seed: int, chash: str, variant: Variant
) -> tuple[Path | None, str | None]:
    """Train (if the method trains) and evaluate one (split, seed); rank 0 writes the record."""
    L.seed_everything(seed, workers=True)
    method_cls = method_class(cfg.method)
    identity = run_identity(cfg, split, seed, chash)
    name = run_name(identity)
    run_dir = run_folder(cfg, split, seed, chash)
    say(f"run {name} -> {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)  # marks the run as this checkout's (see _ran_in_this_checkout)
    save_run_config(cfg, run_dir)  # config.yaml (resolved) and overrides.yaml, as Hydra's .hydra/ keeps
    datamodule = build_datamodule(cfg, split, seed, method_cls)
    datamodule.prepare_data()
    datamodule.setup()
    method = method_cls(
        data=datamodule.info(), eval_metrics=list(cfg.evaluation.metrics), **to_container(cfg.method.kwargs)
    )
    config = record_config(cfg)
    results_dir = Path(cfg.paths.results_dir) if cfg.to_leaderboard else run_dir / "records"
    loggers = build_loggers(
        cfg.get("logger"),
        run_dir=run_dir,
        labels=run_labels(cfg, identity, datamodule),
        config=config,
        best_of=[f"val/{metric}" for metric in cfg.evaluation.metrics],  # all higher-is-better
    )
    logged_to = wandb_run_location(loggers) if rank_zero_only.rank == 0 else None
    trainer, checkpoint = build_trainer(
        cfg,
        run_dir=run_dir,
        logger=loggers,
        needs_training=method.needs_training,
        trainable=has_trainable_parameters(method),
    )
    started, train_seconds, eval_seconds = time.perf_counter(), 0.0, 0.0
    record = RunRecord(
        method=cfg.method.name,
        variant=cfg.variant,
        dataset=cfg.data.dataset,
        split=split,
        setting=datamodule.split_.setting,
        seed=seed,
        status="ok",
        metrics={},
        counts={},
        config=config,
        config_hash=chash,
        registered_variant=variant.registered_variant,
        registered_hash=variant.registered_hash,
        commit="",
        versions={},
        hardware={},
        train_seconds=0.0,
        eval_seconds=0.0,
        created_at="",
        run_id=new_run_id(),
    )
    try:
        best = None
        if method.needs_training:
            resume_from = _resumable_checkpoint(run_dir) if cfg.resume else None
            if resume_from:
                say(f"resuming {name} from {resume_from}")
            trainer.fit(method, datamodule=datamodule, ckpt_path=resume_from)
            train_seconds = time.perf_counter() - started
            best = (
                checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
            )
        evaluated = time.perf_counter()
        trainer.test(method, datamodule=datamodule, ckpt_path=best, verbose=False)
        eval_seconds = time.perf_counter() - evaluated
        if best is None:  # untrained, or no validation: keep what was tested, for `sbir-bench embed`
            best = str(run_dir / "checkpoints" / TESTED_CHECKPOINT)
            trainer.save_checkpoint(best)
    except Exception:
        if trainer.is_global_zero:
            record.status, record.error = "error", traceback.format_exc(limit=20)
            _finish_record(
                record, trainer, train_seconds, eval_seconds, best_checkpoint=None, run_dir=run_dir
            )
            record.extra["wandb_run"] = logged_to
            path = write_record(record, results_dir)
            say(f"FAILED {name}; error record {path}")
        finish(loggers)
        raise
    if not trainer.is_global_zero:
        return None, None
    metrics = dict(method.last_metrics)
    record.counts = {k: int(v) for k, v in metrics.items() if k.startswith("n_")}
    record.counts.update({f"split_{k}": v for k, v in datamodule.split_.counts().items()})
    record.metrics = {k: float(v) for k, v in metrics.items() if not k.startswith("n_")}
    _finish_record(record, trainer, train_seconds, eval_seconds, best_checkpoint=best, run_dir=run_dir)
    record.extra["wandb_run"] = logged_to
    if method.fitted_values():
        record.extra["fitted"] = method.fitted_values()
    _track_extras(record, method, cfg)
    # timed here, after the test, on the test embeddings: the leaderboard's efficiency block
    record.extra[EFFICIENCY_KEY] = measure(
        method.last_embeddings, distance=method.ranking_distance, metrics=list(cfg.evaluation.metrics)
    )
    path = write_record(record, results_dir)
    say(f"record {path}" + ("" if cfg.to_leaderboard else " (debug run: not for the leaderboard)"))
    images = method.summary_images(datamodule)
    for image_name, (image, _) in images.items():  # beside the run's checkpoints, whatever the logger
        with atomic_path(run_dir / f"{image_name}.png") as target:
            image.save(target, format="PNG")
    if loggers:
        summary = run_summary(record, method, datamodule, cfg)
        summary.images = images
        logged_to = log_run_summary(loggers, summary) or logged_to
    finish(loggers)
    return path, logged_to


def _track_extras(record: RunRecord, method: RetrievalMethod, cfg: DictConfig) -> None:
    """What a track's evaluation group asks for beyond the per-query means (configs/evaluation/shape.yaml):
    ``class_mean: true`` adds ``class_mean/<metric>`` to the metrics (SHREC's average by class) and
    ``pr_curve: shrec`` stores SHREC's 20-point precision-recall curve in the record's ``extra``."""
    class_mean = bool(cfg.evaluation.get("class_mean", False))
    convention = str(cfg.evaluation.get("pr_curve", "voc"))
    if "query" not in method.last_embeddings or not (class_mean or convention == "shrec"):
        return
    (queries, query_labels), (gallery, gallery_labels) = (
        method.last_embeddings["query"],
        method.last_embeddings["gallery"],
    )
    if class_mean:
        names = [m for m in cfg.evaluation.metrics if not parse_metric(m).on_triplets]
        by_class = evaluate(
            queries,
            query_labels,
            gallery,
            gallery_labels,
            distance=method.ranking_distance,
            metrics=names,
            class_mean=True,
        )
        record.metrics.update({k: float(v) for k, v in by_class.items() if k.startswith("class_mean/")})
    if convention == "shrec":
        curves = ranking_curves(
            queries,
            query_labels,
            gallery,
            gallery_labels,
            distance=method.ranking_distance,
            convention="shrec",
        )
        record.extra["pr_curve"] = {
            "convention": "shrec",
            "recall": curves.recall.tolist(),
            "precision": [None if np.isnan(p) else float(p) for p in curves.precision],
        }


def run_labels(cfg: DictConfig, identity: tuple[Any, ...], datamodule: RetrievalDataModule) -> RunLabels:
    """Name, group (method/variant/dataset: one leaderboard row's runs over splits and seeds), job type
    (the split's setting), tags, and the key of the stable W&B run id: the run's identity and the latest
    finished record of it, so a resumed run continues its W&B run while a rerun (``force=true``, or a fresh
    clone's run beside committed records) starts a new one."""
    method, variant, dataset, split, seed, chash = identity
    previous = find_record(Path(cfg.paths.results_dir), identity, strict=False)
    return RunLabels(
        name=run_name(identity),
        group=f"{method}/{variant}/{dataset}",
        job_type=datamodule.split_.setting,
        tags=[method, variant, dataset, split, f"seed{seed}", datamodule.split_.setting, f"config-{chash}"],
        key=(*identity, previous.run_id) if previous is not None else identity,
    )


def run_summary(
    record: RunRecord, method: RetrievalMethod, datamodule: RetrievalDataModule, cfg: DictConfig
) -> RunSummary:
    """The record's metrics and counts, its leaderboard row, the retrieval grid, per-class AP and the
    precision-recall curve of the test embeddings."""
    row = pd.DataFrame(
        [{"method": record.method, "variant": record.variant, "split": record.split, "seed": record.seed}]
    )
    row = pd.concat([row, pd.DataFrame([record.metrics])], axis=1)
    summary = RunSummary(
        metrics=record.metrics,
        counts=record.counts,
        rows=row,
        grid=draw_grid(method, datamodule, int(cfg.evaluation.grid_queries)),
    )
    if "query" in method.last_embeddings:
        (queries, query_labels), (gallery, gallery_labels) = (
            method.last_embeddings["query"],
            method.last_embeddings["gallery"],
        )
        curves = ranking_curves(
            queries,
            query_labels,
            gallery,
            gallery_labels,
            distance=method.ranking_distance,
            convention=str(cfg.evaluation.get("pr_curve", "voc")),
        )
        by_class = datamodule.split_.setting != "fine_grained"  # there a label is an instance, not a class
        names = list(datamodule.catalog.class_names) if by_class else []
        summary.per_class_ap = {
            (names[label] if label < len(names) else str(label)): ap
            for label, ap in curves.per_class_ap(query_labels).items()
        }
        summary.pr_curve = (curves.recall.tolist(), curves.precision.tolist())
    return summary


def _finish_record(
    record: RunRecord,
    trainer: L.Trainer,
    train_seconds: float,
    eval_seconds: float,
    *,
    best_checkpoint: str | None,
    run_dir: Path,
) -> None:
    record.commit, record.versions, record.hardware = environment_info()
    record.train_seconds, record.eval_seconds = round(train_seconds, 3), round(eval_seconds, 3)
    record.created_at = utc_now()
    datamodule = trainer.datamodule
    batch_size = getattr(datamodule, "batch_size", None)
    record.extra = {
        "world_size": trainer.world_size,
        "effective_batch_size": batch_size * trainer.world_size if batch_size else None,
        "accelerator": type(trainer.accelerator).__name__,
        "epochs_trained": trainer.current_epoch,
        # both as the run folder was given (relative to where bench ran): records name no machine path
        "best_checkpoint": str(run_dir / "checkpoints" / Path(best_checkpoint).name)
        if best_checkpoint
        else None,
        "run_dir": str(run_dir),
    }
    resumed = [c.resumed_at_epoch for c in trainer.callbacks if isinstance(c, RandomStateCheckpoint)]
    if resumed and resumed[0] is not None:
        record.extra["resumed_from_epoch"] = resumed[0]


def draw_grid(method: RetrievalMethod, datamodule: RetrievalDataModule, num_queries: int):  # noqa: ANN201
    """Queries spread evenly over the test queries, each with its top 10 (for the logger)."""
    if num_queries <= 0 or "query" not in method.last_embeddings:
        return None
    (queries, query_labels), (gallery, gallery_labels) = (
        method.last_embeddings["query"],
        method.last_embeddings["gallery"],
    )
    chosen = np.linspace(0, len(queries) - 1, num=min(num_queries, len(queries))).round().astype(int)
    _, ranked = top_k(queries[chosen], gallery, min(GRID_TOP, len(gallery)), distance=method.ranking_distance)
    query_rows, gallery_rows = datamodule.query_records("test"), datamodule.gallery_records("test")
    return retrieval_grid(
        query_rows["path"].iloc[chosen].tolist(),
        query_labels[chosen].tolist(),
        [_picture_of(row) for row in gallery_rows.itertuples()],
        gallery_labels.tolist(),
        ranked.cpu().numpy(),
    )


def _picture_of(record: Any) -> str:
    """The image that stands for a record in the grid: its file, or a shape's first rendered view."""
    return record.path or (record.views[0] if len(record.views) else "")
