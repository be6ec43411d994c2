"""``sbir-bench embed``: a run's checkpoint -> the test queries and gallery it embeds, as ``.npz`` files.

A checkpoint written by ``sbir-bench bench`` holds all it takes (no config, no record needed): the method's
registered name and hyper-parameters (:mod:`sbir_bench.methods.base`) and the DataModule's arguments
(dataset, split, data options, backbone, cache folder, batch sizes, seed). The DataModule is rebuilt from
them (the data and feature caches are reused, or rebuilt the way the run built them) and the method is
tested on it as the run was, so ``sbir-bench evaluate`` on the files gives the record's metrics.

Each file holds ``embeddings`` [N, d] and ``labels`` [N] (what makes items relevant: the class, or in a
fine-grained split the instance), the format :mod:`sbir_bench.evaluation.io` reads, plus ``paths`` [N]
(each item's file; empty for a 3D shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from sbir_bench.data.modules import RetrievalDataModule
from sbir_bench.methods.base import METHOD_KEY, RetrievalMethod
from sbir_bench.registry import METHODS

QUERIES_FILE, GALLERY_FILE, TRIPLETS_FILE = "queries.npz", "gallery.npz", "triplets.npy"


@dataclass
class Embedded:
    """What :func:`embed_checkpoint` wrote, and how to score it as the run did."""

    queries: Path
    gallery: Path
    distance: str
    metrics: tuple[str, ...]
    split: str
    shapes: tuple[tuple[int, ...], tuple[int, ...]]
    triplets: Path | None = None  # the test part's annotated triplets (fine-grained data), for triplet_acc


def load_run(
    checkpoint: str | Path, *, split: str | None = None, cache_dir: str | None = None
) -> tuple[RetrievalMethod, RetrievalDataModule]:
    """The method and the DataModule of the run that wrote ``checkpoint``; ``split`` and ``cache_dir``
    replace the run's own."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    saved = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    name = saved.get(METHOD_KEY)
    if not name:
        raise ValueError(
            f"{checkpoint} does not name its method (written by an older sbir_bench, or by a method "
            "outside the registry): it cannot be loaded on its own"
        )
    if RetrievalDataModule.CHECKPOINT_HYPER_PARAMS_KEY not in saved:
        raise ValueError(
            f"{checkpoint} holds no DataModule arguments: it was not written by `sbir-bench bench`"
        )
    method_cls = METHODS.get(name)
    method = method_cls.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    replaced: dict[str, Any] = {"split": split, "cache_dir": cache_dir}
    datamodule = RetrievalDataModule.load_from_checkpoint(
        checkpoint, weights_only=True, **{k: v for k, v in replaced.items() if v is not None}
    )
    datamodule.configure_for_method(method_cls)
    return method, datamodule


def embed_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    split: str | None = None,
    cache_dir: str | None = None,
    accelerator: str = "cpu",
) -> Embedded:
    """Embed the test queries and gallery of the run's split (or ``split``) into ``out_dir``."""
    method, datamodule = load_run(checkpoint, split=split, cache_dir=cache_dir)
    if method.distance == "custom":
        raise ValueError(
            f"{type(method).__name__} ranks by its own score (distance 'custom', its pairwise_distance): "
            "`sbir-bench evaluate` compares embeddings by a named distance and cannot reproduce it"
        )
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(method, datamodule=datamodule, verbose=False)  # the run's own test loop: same embeddings
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, shapes = [], []
    sides = (
        ("query", QUERIES_FILE, datamodule.query_records),
        ("gallery", GALLERY_FILE, datamodule.gallery_records),
    )
    for side, filename, records in sides:
        embeddings, labels = (t.cpu().numpy() for t in method.last_embeddings[side])
        if embeddings.ndim != 2:
            raise ValueError(
                f"{type(method).__name__} gives {side} embeddings of shape {embeddings.shape}; the .npz "
                "files `sbir-bench evaluate` reads hold one row per item (the CVAE: kmeans_clusters=0)"
            )
        path = out_dir / filename
        np.savez(
            path, embeddings=embeddings, labels=labels, paths=records("test")["path"].to_numpy(dtype=str)
        )
        written.append(path)
        shapes.append(tuple(embeddings.shape))
    triplets = datamodule.test_triplets() if hasattr(datamodule, "test_triplets") else None
    if triplets is not None:
        np.save(out_dir / TRIPLETS_FILE, triplets)
    return Embedded(
        queries=written[0],
        gallery=written[1],
        distance=method.distance,
        metrics=tuple(method.eval_metrics),
        split=datamodule.split,
        shapes=(shapes[0], shapes[1]),
        triplets=out_dir / TRIPLETS_FILE if triplets is not None else None,
    )
