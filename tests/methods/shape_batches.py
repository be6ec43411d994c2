"""Fake sketch → 3D data for the unit tests of the shape methods: sketches ``[N, d]`` and shapes ``[M, V, d]``
with class structure, class batches as the DataModule's ``"class_batches"`` sampling yields them, a tiny
Lightning fit and a nearest-neighbour check."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sbir_bench.data.records import DataInfo


def separable_data(
    num_classes: int = 4, dim: int = 16, views: int = 3, per_class: int = 8, seed: int = 0, noise: float = 0.3
) -> dict[str, torch.Tensor]:
    """Each class a random direction; a sketch is it plus noise, a shape's views a fixed linear map of it
    (another domain) plus per-view noise."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g)
    domain_map = torch.randn(dim, dim, generator=g) / dim**0.5
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    sketch = centres[labels] + noise * torch.randn(len(labels), dim, generator=g)
    shape = (centres[labels] @ domain_map).unsqueeze(1) + noise * torch.randn(
        len(labels), views, dim, generator=g
    )
    return {"sketch": sketch, "sketch_label": labels, "shape": shape, "shape_label": labels.clone()}


def class_batches(
    data: dict[str, torch.Tensor], classes: int, n: int, m: int, num_batches: int, seed: int = 0
) -> list[dict[str, torch.Tensor]]:
    """``num_batches`` batches of ``classes`` classes × (n sketches + m shapes) (DataModule keys)."""
    g = torch.Generator().manual_seed(seed)
    known = torch.unique(data["sketch_label"])
    batches = []
    for _ in range(num_batches):
        chosen = known[torch.randperm(len(known), generator=g)[:classes]]
        sketch_at, shape_at = [], []
        for c in chosen.tolist():
            sketches = torch.nonzero(data["sketch_label"] == c).flatten()
            shapes = torch.nonzero(data["shape_label"] == c).flatten()
            sketch_at.append(sketches[torch.randperm(len(sketches), generator=g)[:n]])
            shape_at.append(shapes[torch.randperm(len(shapes), generator=g)[:m]])
        s, t = torch.cat(sketch_at), torch.cat(shape_at)
        batches.append(
            {
                "sketch": data["sketch"][s],
                "sketch_label": data["sketch_label"][s],
                "shape": data["shape"][t],
                "shape_label": data["shape_label"][t],
                "sketch_index": s,
                "shape_index": t,
            }
        )
    return batches


def info(
    num_classes: int = 4, dim: int = 16, seen: tuple[int, ...] | None = None, semantics=None
) -> DataInfo:
    return DataInfo(
        num_classes=num_classes,
        seen_classes=tuple(range(num_classes)) if seen is None else seen,
        feature_dim=dim,
        class_semantics=None if semantics is None else np.asarray(semantics, dtype=np.float32),
    )


def fit(
    method: L.LightningModule,
    batches: list[dict[str, torch.Tensor]],
    epochs: int,
    callbacks: list | None = None,
) -> None:
    """Train ``method`` on the fixed ``batches`` (one epoch = all of them), on the CPU, no validation."""
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=callbacks,
    )
    trainer.fit(method, train_dataloaders=DataLoader(batches, batch_size=None))


def nearest_neighbour_accuracy(method, data: dict[str, torch.Tensor]) -> float:
    """Share of sketches whose nearest shape (under the method's distance) is of their class."""
    method.eval()
    with torch.no_grad():
        q, g = method.embed_query(data["sketch"]), method.embed_gallery(data["shape"])
    if method.distance == "cosine":
        d = 1 - F.normalize(q, dim=-1) @ F.normalize(g, dim=-1).T
    elif method.distance == "euclidean":
        d = torch.cdist(q, g)
    else:
        d = method.pairwise_distance(q, g)
    method.train()
    nearest = d.argmin(dim=1)
    return (data["shape_label"][nearest] == data["sketch_label"]).float().mean().item()
