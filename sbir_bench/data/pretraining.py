"""Stand-in for ImageNet pre-training: the backbone trained as a classifier on the catalog's photos.

Only photos that every split of the catalog puts in its training part are used, so no unseen class and
no evaluation item (nor an extended photo) ever shapes the features. A sketch -> 3D catalog (shapes, no
photos) pre-trains on the rendered views of such shapes instead, each view labelled with its shape's
class. The weights are a verified cache entry (:mod:`sbir_bench.data.cache_entries`), keyed by the
catalog fingerprint, the whole spec and the device type.
"""

from __future__ import annotations

from dataclasses import asdict, replace
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

__all__ = ["pretrain_backbone", "pretraining_images", "pretraining_indices"]


def pretraining_indices(catalog: Catalog) -> np.ndarray:
    """Record indices of the photos in the training part of *every* split (sorted); of the shapes when
    the catalog has shapes and no photos (their rendered views pre-train, :func:`pretraining_images`).

    Taking the intersection keeps out each split's unseen classes and evaluation items, so features
    trained on them can serve every split of the catalog without leakage.
    """
    domains = catalog.records["domain"].to_numpy()
    domain = "shape" if (domains == "shape").any() and not (domains == "photo").any() else "photo"
    if not catalog.splits:
        raise DatasetError(f"{catalog.name}: no splits, so no training {domain}s to pre-train on")
    items = np.flatnonzero(domains == domain)
    for split in catalog.splits.values():
        items = np.intersect1d(items, split.train)
    if len(items) == 0:
        raise DatasetError(f"{catalog.name}: no {domain} is in the training part of every split")
    return items


def pretraining_images(catalog: Catalog, indices: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(image paths, class labels) of the records ``indices``: a photo's own image, each rendered view
    of a shape (labelled with the shape's class)."""
    records = catalog.records.iloc[indices]
    paths: list[str] = []
    labels: list[int] = []
    for path, views, label in zip(records["path"], records["views"], records["label"], strict=True):
        images = [path] if path else list(views)
        paths.extend(images)
        labels.extend([int(label)] * len(images))
    return paths, np.asarray(labels, dtype=np.int64)


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
    on the images of :func:`pretraining_indices` (photos, or the shapes' views) for ``pretrain_epochs``
    epochs: AdamW (weight decay 0.05), cosine learning-rate decay per step, the augmentation of
    :func:`~sbir_bench.data.images.pretrain_transform` (crops, flips, and with ``pretrain_edge_prob`` a
    photo's own edge map in its place), seeded with ``spec.seed``. The backbone's
    state_dict (classifier dropped) is cached, keyed by the catalog fingerprint, the whole spec (less
    ``pyramid_levels``, which only changes extraction) and the device type that trains
    (:func:`~sbir_bench.data.backbones.compute_device` of ``accelerator``).
    """
    if spec.pretrain_epochs <= 0:
        return None
    spec = replace(spec, pyramid_levels=())  # pre-trained as a classifier on pooled features
    spec_key = {name: value for name, value in asdict(spec).items() if name != "pyramid_levels"}
    require_fingerprint(catalog)
    device = compute_device(accelerator)
    key = normalised_key(
        {
            "format": CACHE_FORMAT,
            "catalog": catalog.name,
            "fingerprint": catalog.fingerprint,
            "spec": spec_key,
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
        num_images = len(pretraining_images(catalog, indices)[0])
        write_meta(weights_file, key, num_items=int(len(indices)), num_images=num_images)
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
    paths, labels = pretraining_images(catalog, indices)
    classes, targets = np.unique(labels, return_inverse=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = backbones.create_backbone(spec).to(device).train()
        head = nn.Linear(feature_dim(model), len(classes)).to(device)
        dataset = ImageFiles(paths, _pretraining_transform(spec), targets)
        batch_size = min(spec.pretrain_batch_size, len(dataset))
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            drop_last=len(dataset) > batch_size,  # no size-1 tail batch for BatchNorm
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
            desc=f"stand-in pre-training {spec.name} on {len(dataset)} {catalog.name} images",
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
