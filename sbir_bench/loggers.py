"""Experiment loggers: Weights & Biases (offline unless the user is logged in), CSV, or none."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

import pandas as pd
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from PIL import Image

LOGGER_KINDS = ("wandb", "csv", "none")


def wandb_logged_in() -> bool:
    """True when W&B credentials exist locally (env var or ~/.netrc); never touches the network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_mode(requested: str) -> str:
    """``auto`` -> online when logged in, else offline; ``online``/``offline``/``disabled`` pass through."""
    if requested == "auto":
        return "online" if wandb_logged_in() else "offline"
    if requested not in ("online", "offline", "disabled"):
        raise ValueError(f"logger.mode must be auto, online, offline or disabled, not {requested!r}")
    return requested


def build_logger(cfg: Any, *, run_dir: Path, name: str, group: str, config: dict[str, Any]) -> Logger | None:
    """Create the experiment logger named by ``cfg.kind``; the run's config is logged as hyper-parameters."""
    kind = cfg.kind
    if kind == "none":
        return None
    if kind == "csv":
        logger: Logger = CSVLogger(save_dir=str(run_dir), name="csv")
    elif kind == "wandb":
        logger = WandbLogger(
            project=cfg.project,
            entity=cfg.get("entity"),
            name=name,
            group=group,
            save_dir=str(run_dir),
            mode=wandb_mode(cfg.mode),
            settings={"silent": True},
        )
    else:
        raise ValueError(f"unknown logger kind {kind!r}; known: {', '.join(LOGGER_KINDS)}")
    logger.log_hyperparams(config)
    return logger


def log_run_summary(
    logger: Logger | None, *, metrics: dict[str, float], rows: pd.DataFrame, grid: Image.Image | None
) -> str | None:
    """Send the final metrics, the run's leaderboard rows and the retrieval grid; return where they went."""
    if isinstance(logger, WandbLogger):
        import wandb

        run = logger.experiment
        for key, value in metrics.items():
            run.summary[f"final/{key}"] = value
        payload: dict[str, Any] = {"leaderboard": wandb.Table(dataframe=rows.astype(str))}
        if grid is not None:
            payload["retrieval_grid"] = wandb.Image(grid, caption="query sketch | top 10 (red: wrong class)")
        run.log(payload)
        return str(Path(run.dir).parent)
    if isinstance(logger, CSVLogger):
        logger.log_metrics({f"final/{k}": v for k, v in metrics.items()})
        logger.save()
        if grid is not None:
            grid.save(Path(logger.log_dir) / "retrieval_grid.png")
        return logger.log_dir
    return None


def finish(logger: Logger | None) -> None:
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()
