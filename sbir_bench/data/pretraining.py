"""Stand-in for ImageNet pre-training: the backbone trained as a classifier on the catalog's photos.

Only photos that every split of the catalog puts in its training part are used, so no unseen class and
no evaluation item (nor an extended photo) ever shapes the features. The weights are a verified cache
entry (:mod:`sbir_bench.data.cache_entries`), keyed by the catalog fingerprint, the whole spec and the
device type.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sbir_bench.data import backbones
from sbir_bench.data.backbones import BackboneSpec, ImageFiles, compute_device, feature_dim, weights_identity
from sbir_bench.data.cache_entries import (
    CACHE_FORMAT,
    key_digest,
    normalised_key,
    require_fingerprint,
    use_or_rebuild,
    write_meta,
)
from sbir_bench.data.images import pretrain_transform
from sbir_bench.data.records import Catalog, DatasetError
from sbir_bench.files import atomic_path, file_lock

__all__ = ["pretrain_backbone", "pretraining_indices"]


def pretraining_indices(catalog: Catalog) -> np.ndarray:
    """Record indices of the photos in the training part of *every* split (sorted).

    Taking the intersection keeps out each split's unseen classes and evaluation items, so features
    trained on them can serve every split of the catalog without leakage.
    """
    if not catalog.splits:
        raise DatasetError(f"{catalog.name}: no splits, so no training photos to pre-train on")
    photos = np.flatnonzero(catalog.records["domain"].to_numpy() == "photo")
    for split in catalog.splits.values():
        photos = np.intersect1d(photos, split.train)
    if len(photos) == 0:
        raise DatasetError(f"{catalog.name}: no photo is in the training part of every split")
    return photos


def pretrain_backbone(
    catalog: Catalog,
    spec: BackboneSpec,
    cache_dir: str | Path,
    *,
    num_workers: int = 0,
    progress: bool = True,
    accelerator: str = "auto",
) -> Path | None:
    """Stand-in for ImageNet pre-training: the cached backbone weights (None when ``pretrain_epochs == 0``).

    Trains the backbone (from ``spec``'s initial weights) plus a linear classifier with cross-entropy
    on :func:`pretraining_indices` photos for ``pretrain_epochs`` epochs: AdamW (weight decay 0.05),
    cosine learning-rate decay per step, the augmentation of
    :func:`~sbir_bench.data.images.pretrain_transform` (crops, flips, and with ``pretrain_edge_prob`` a
    photo's own edge map in its place), seeded with ``spec.seed``. The backbone's
    state_dict (classifier dropped) is cached, keyed by the catalog fingerprint, the whole spec and the
    device type that trains (:func:`~sbir_bench.data.backbones.compute_device` of ``accelerator``).
    """
    if spec.pretrain_epochs <= 0:
        return None
    require_fingerprint(catalog)
    device = compute_device(accelerator)
    key = normalised_key(
        {
            "format": CACHE_FORMAT,
            "catalog": catalog.name,
            "fingerprint": catalog.fingerprint,
            "spec": asdict(spec),
            "init": weights_identity(spec),
            "transform": repr(_pretraining_transform(spec)),
            "timm": timm.__version__,
            "torch": torch.__version__,
            "device": device.type,
        }
    )
    weights_file = (
        Path(cache_dir) / "backbones" / catalog.name / f"{spec.name}-{key_digest(key)}" / "weights.pt"
    )
    with file_lock(weights_file.parent / ".lock"):
        if use_or_rebuild(weights_file, key, "pre-trained backbone cache"):
            return weights_file
        indices = pretraining_indices(catalog)
        state = _train_classifier(catalog, spec, indices, device, num_workers=num_workers, progress=progress)
        with atomic_path(weights_file) as temporary:
            torch.save(state, temporary)
        write_meta(weights_file, key, num_photos=int(len(indices)))
    return weights_file


def _pretraining_transform(spec: BackboneSpec) -> Any:
    return pretrain_transform(spec.image_size, spec.pretrain_edge_prob, spec.pretrain_grayscale_prob)


def _train_classifier(
    catalog: Catalog,
    spec: BackboneSpec,
    indices: np.ndarray,
    device: torch.device,
    *,
    num_workers: int,
    progress: bool,
) -> dict[str, torch.Tensor]:
    records = catalog.records.iloc[indices]
    classes, targets = np.unique(records["label"].to_numpy(), return_inverse=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = backbones.create_backbone(spec).to(device).train()
        head = nn.Linear(feature_dim(model), len(classes)).to(device)
        photos = ImageFiles(records["path"].tolist(), _pretraining_transform(spec), targets)
        batch_size = min(spec.pretrain_batch_size, len(photos))
        loader = DataLoader(
            photos,
            batch_size=batch_size,
            shuffle=True,
            drop_last=len(photos) > batch_size,  # no size-1 tail batch for BatchNorm
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(spec.seed),
        )
        parameters = [*model.parameters(), *head.parameters()]
        optimizer = torch.optim.AdamW(parameters, lr=spec.pretrain_lr, weight_decay=0.05)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=spec.pretrain_epochs * len(loader)
        )
        bar = tqdm(
            total=spec.pretrain_epochs * len(loader),
            disable=not progress,
            desc=f"stand-in pre-training {spec.name} on {len(photos)} {catalog.name} photos",
        )
        for epoch in range(spec.pretrain_epochs):
            for images, labels in loader:
                loss = nn.functional.cross_entropy(head(model(images.to(device))), labels.to(device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"stand-in pre-training of {spec.name!r} diverged (loss {loss.item()})"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        bar.close()
    return {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
