"""Experiment loggers built from ``configs/logger`` with ``hydra.utils.instantiate``, and what they receive.

A logger config is a mapping of named nodes with a ``_target_`` (lightning-hydra-template's layout), so
``logger=csv``, ``logger=wandb`` or a lab's own list of loggers all build the same way. The runner fills
what depends on the run: the save folder (the run folder unless the config or ``WANDB_DIR`` names one), and
for W&B the name, group (method/variant/dataset), job type (the split's setting), tags and a stable id.
"""

from __future__ import annotations

import hashlib
import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from PIL import Image

from sbir_bench.config_checks import WANDB_MODES


@dataclass
class RunLabels:
    """How a run appears in the experiment logger; ``key`` (its identity) seeds the stable W&B run id."""

    name: str
    group: str
    job_type: str
    tags: list[str] = field(default_factory=list)
    key: tuple[Any, ...] = ()


def wandb_logged_in() -> bool:
    """True when W&B credentials exist locally (env var or ~/.netrc); never touches the network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_mode(requested: str | None) -> str:
    """``auto`` -> online when logged in, else offline; ``online``/``offline``/``disabled`` pass through
    (``dryrun``, W&B's old name for offline, too)."""
    requested = requested or "auto"
    if requested == "dryrun":
        return "offline"
    if requested not in WANDB_MODES:
        raise ValueError(f"logger.wandb.mode must be one of {', '.join(WANDB_MODES)}, not {requested!r}")
    if requested == "auto":
        return "online" if wandb_logged_in() else "offline"
    return requested


def wandb_run_id(key: tuple[Any, ...]) -> str:
    """A W&B run id that is the same for every attempt at one run (so a resumed run continues it)."""
    return hashlib.sha256("/".join(map(str, key)).encode()).hexdigest()[:16]


def build_loggers(
    cfg: Any, *, run_dir: Path, labels: RunLabels, config: dict[str, Any], best_of: list[str] = ()
) -> list[Logger]:
    """Instantiate every node of the logger config (none: ``[]``); the run's config goes in as
    hyper-parameters. A W&B node whose mode resolves to ``disabled`` builds no logger; W&B summarises the
    metrics named in ``best_of`` (the validation metrics) by their maximum, not their last value."""
    from hydra.utils import instantiate

    loggers: list[Logger] = []
    for node in (cfg or {}).values():
        target = str(node.get("_target_", ""))
        extra: dict[str, Any] = {}
        if node.get("save_dir", "") is None:
            extra["save_dir"] = str(run_dir)
        if target.endswith("WandbLogger"):
            if node.get("save_dir", "") is None and os.environ.get("WANDB_DIR"):
                extra["save_dir"] = os.environ["WANDB_DIR"]
            mode = wandb_mode(node.get("mode"))
            if mode == "disabled":
                continue
            extra.update(
                mode=mode,
                name=labels.name,
                group=labels.group,
                job_type=labels.job_type,
                tags=labels.tags,
                id=wandb_run_id(labels.key),
                resume="allow",
                settings={"silent": True},
            )
        logger = instantiate(node, **extra)
        if isinstance(logger, WandbLogger):
            for name in best_of:  # by name: Lightning's own "*" definition outranks any other glob
                logger.experiment.define_metric(name, summary="max", step_metric="trainer/global_step")
        logger.log_hyperparams(config)
        loggers.append(logger)
    return loggers


def wandb_run_location(loggers: list[Logger]) -> str | None:
    """Where the W&B run lives: ``entity/project/id`` online, else its offline folder (relative to the
    working directory when under it, so records name no machine path)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            if not getattr(run, "offline", False) and getattr(run, "path", None):
                return "/".join(run.path) if isinstance(run.path, (list, tuple)) else str(run.path)
            folder = Path(run.dir).parent
            try:
                return str(folder.relative_to(Path.cwd()))
            except ValueError:
                return folder.name
    return None


@dataclass
class RunSummary:
    """What each test run sends beside Lightning's metric history."""

    metrics: dict[str, float]
    counts: dict[str, int]
    rows: pd.DataFrame
    grid: Image.Image | None = None
    per_class_ap: dict[str, float] = field(default_factory=dict)
    pr_curve: tuple[list[float], list[float]] | None = None  # recall, precision
    images: dict[str, tuple[Image.Image, str]] = field(default_factory=dict)  # name -> (image, caption)


def log_run_summary(loggers: list[Logger], summary: RunSummary) -> str | None:
    """Send the final metrics, counts, the run's leaderboard rows and the plots; return where they went."""
    where = None
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            where = _log_to_wandb(logger, summary)
        elif isinstance(logger, CSVLogger):
            logger.log_metrics({f"final/{k}": v for k, v in summary.metrics.items()})
            logger.save()
            folder = Path(logger.log_dir)
            pd.DataFrame([summary.counts]).to_csv(folder / "counts.csv", index=False)
            if summary.per_class_ap:
                pd.Series(summary.per_class_ap, name="ap").rename_axis("class").to_csv(
                    folder / "per_class_ap.csv"
                )
            if summary.pr_curve is not None:
                recall, precision = summary.pr_curve
                pd.DataFrame({"recall": recall, "precision": precision}).to_csv(
                    folder / "pr_curve.csv", index=False
                )
            if summary.grid is not None:
                summary.grid.save(folder / "retrieval_grid.png")
            where = where or logger.log_dir
    return where


def _log_to_wandb(logger: WandbLogger, summary: RunSummary) -> str:
    import wandb

    run = logger.experiment
    for key, value in summary.metrics.items():
        run.summary[f"final/{key}"] = value
    for key, value in summary.counts.items():
        run.summary[f"counts/{key}"] = value  # sizes, not a history
    payload: dict[str, Any] = {"leaderboard": wandb.Table(dataframe=summary.rows)}
    if summary.per_class_ap:
        table = wandb.Table(data=[[k, v] for k, v in summary.per_class_ap.items()], columns=["class", "ap"])
        payload["per_class_ap"] = wandb.plot.bar(table, "class", "ap", title="test AP per query class")
    if summary.pr_curve is not None:
        table = wandb.Table(data=list(zip(*summary.pr_curve, strict=True)), columns=["recall", "precision"])
        payload["pr_curve"] = wandb.plot.line(
            table, "recall", "precision", title="test precision-recall (interpolated, mean over queries)"
        )
    if summary.grid is not None:
        payload["retrieval_grid"] = wandb.Image(
            summary.grid, caption="query sketch | top 10 (red: wrong class)"
        )
    for name, (image, caption) in summary.images.items():
        payload[name] = wandb.Image(image, caption=caption)
    run.log(payload)
    return str(Path(run.dir).parent)


def finish(loggers: list[Logger]) -> None:
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def log_leaderboard(table: pd.DataFrame, leaderboard_dir: Path) -> str:
    """Log the rebuilt leaderboard as a W&B table (numeric columns stay numbers) and an artifact holding
    leaderboard.csv and .md; the environment (WANDB_MODE, WANDB_PROJECT, WANDB_DIR) is respected."""
    import wandb

    mode = wandb_mode(os.environ.get("WANDB_MODE"))
    folder = Path(os.environ.get("WANDB_DIR") or "outputs")
    folder.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "sbir_bench"),
        job_type="leaderboard",
        mode=mode,
        dir=str(folder),
        settings=wandb.Settings(silent=True),
    )
    run.log({"leaderboard": wandb.Table(dataframe=table)})
    artifact = wandb.Artifact("leaderboard", type="leaderboard")
    for name in ("leaderboard.csv", "leaderboard.md"):
        if (leaderboard_dir / name).is_file():
            artifact.add_file(str(leaderboard_dir / name))
    run.log_artifact(artifact)
    where = "/".join(run.path) if mode == "online" else str(Path(run.dir).parent)
    run.finish()
    return where
