"""Backbones (timm) and the cache of their features for every record of a catalog.

Feature-based methods (CVAE, CAAE, the zero-shot baselines, DSH's fixed-feature variant) read fixed
backbone features of sketches and photos, as the papers do with VGG-16 fc7 (4096-d, ImageNet weights).
Offline, ImageNet weights are available only when the user has them locally (``weights_path``, or timm's
own cache); otherwise :func:`pretrain_backbone` stands in for ImageNet pre-training by training the
backbone as a classifier on photos that every split of the catalog puts in its training part, so no
unseen class and no evaluation item ever shapes the features.

Caches are keyed by everything that changes their content, written atomically under a file lock (DDP
ranks share them), and verified on load: a corrupt, partial or mismatched entry is reported with a
warning naming it and rebuilt, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from sbir_bench.data.images import (
    image_transform,
    load_image,
    normalise_uint8_batch,
    pretrain_transform,
    resize_to_uint8,
)
from sbir_bench.data.locking import (
    atomic_path,
    atomic_save_npy,
    atomic_write_text,
    file_lock,
    sha256_file,
)
from sbir_bench.data.records import Catalog, DatasetError

__all__ = [
    "BackboneSpec",
    "StaleCacheWarning",
    "create_backbone",
    "extract_features",
    "feature_cache_dir",
    "feature_dim",
    "pretrain_backbone",
    "pretraining_indices",
    "weights_identity",
]

CACHE_FORMAT = 1  # bump when the layout or the meaning of a cached file changes


class StaleCacheWarning(UserWarning):
    """A cache entry was corrupt, partial or did not match its key, and is being rebuilt."""


@dataclass(frozen=True)
class BackboneSpec:
    """Which backbone computes the features, from which weights, at which input size.

    ``pretrained`` takes timm's ImageNet weights from the local timm / Hugging Face cache (nothing is
    downloaded); ``weights_path`` names a local state_dict or timm checkpoint instead. With neither, the
    backbone starts from a random initialisation drawn with ``seed``. ``pretrain_epochs > 0`` then trains
    it further as a classifier (the stand-in for ImageNet pre-training, :func:`pretrain_backbone`).
    """

    name: str = "resnet10t"
    pretrained: bool = False
    weights_path: str | None = None
    image_size: int = 64
    pretrain_epochs: int = 0
    pretrain_lr: float = 1e-3
    pretrain_batch_size: int = 64
    pretrain_edge_prob: float = 0.0  # share of pre-training photos swapped for their edge map
    pretrain_grayscale_prob: float = 0.0
    seed: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> BackboneSpec:
        """Build from a config mapping; unknown keys fail with the list of known ones."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown backbone settings {unknown}; known: {sorted(known)}")
        return cls(**values)


# --- backbones --------------------------------------------------------------------------------------
def create_backbone(spec: BackboneSpec) -> nn.Module:
    """The timm model without its classifier (``num_classes=0``), in eval mode, on the CPU.

    Its forward gives pooled pre-logit features: the global-pooled last stage for ResNets, the
    post-ReLU fc7 (4096-d) for VGG-16, the 1024-d head for MobileNetV3. ``pretrain_epochs`` is ignored
    here (see :func:`pretrain_backbone`).
    """
    weights = _weights_file(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = timm.create_model(spec.name, pretrained=False, num_classes=0)
    if weights is not None:
        _load_weights(model, spec.name, weights)
    return model.eval()


def feature_dim(model: nn.Module) -> int:
    """Width of the backbone's output: timm's ``head_hidden_size`` where a pre-logits head exists
    (VGG fc7: 4096, whereas ``num_features`` is 512), ``num_features`` otherwise."""
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def weights_identity(spec: BackboneSpec) -> str:
    """What the initial weights are: ``sha256:<hex>`` of the weights file, or the random-init seed."""
    weights = _weights_file(spec)
    if weights is not None:
        return f"sha256:{sha256_file(weights)}"
    return f"random-init-seed{spec.seed}-timm{timm.__version__}"


def _weights_file(spec: BackboneSpec) -> Path | None:
    if spec.pretrained and spec.weights_path:
        raise ValueError("backbone: set either pretrained=true or weights_path, not both")
    if spec.weights_path:
        path = Path(spec.weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights_path {str(path)!r} does not exist")
        return path
    if spec.pretrained:
        return _cached_timm_weights(spec.name)
    return None


def _cached_timm_weights(name: str) -> Path:
    """timm's ImageNet weights for ``name`` from the local Hugging Face or torch hub cache (no download)."""
    import huggingface_hub

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"timm has no pretrained weights for {name!r}; set backbone.weights_path")
    if cfg.file and Path(cfg.file).is_file():
        return Path(cfg.file)
    if cfg.hf_hub_id:
        for filename in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin"):
            found = filename and huggingface_hub.try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    if cfg.url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"backbone {name!r}: pretrained=true needs timm's ImageNet weights in the local cache "
        f"(hub id {cfg.hf_hub_id or cfg.url!r}), and nothing is downloaded here. Fetch them once where there "
        "is internet (timm.create_model(name, pretrained=True)), or set backbone.weights_path to a local "
        "state_dict / checkpoint file, or use pretrained=false with pretrain_epochs > 0 (stand-in "
        "pre-training)."
    )


def _load_weights(model: nn.Module, name: str, path: Path) -> None:
    """Load a state_dict or timm checkpoint strictly; the classifier weights it may carry are dropped.

    Files in timm's key layout load directly; others (e.g. torchvision's VGG-16) go through timm's own
    per-model key conversion, which then loads strictly with the classifier attached.
    """
    state = timm.models.load_state_dict(str(path))
    classifier = model.pretrained_cfg.get("classifier") or ()
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    dropped = {f"{head}.{kind}" for head in heads for kind in ("weight", "bias")}
    try:
        result = model.load_state_dict({k: v for k, v in state.items() if k not in dropped}, strict=False)
        problem = (
            f"missing keys {result.missing_keys[:5]}, unexpected keys {result.unexpected_keys[:5]}"
            if result.missing_keys or result.unexpected_keys
            else ""
        )
    except RuntimeError as error:  # shape mismatches raise even when not strict
        problem = " ".join(str(error).split("\n")[:3])
    if not problem:
        return
    try:
        converted = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    except (RuntimeError, KeyError, ValueError) as error:
        raise ValueError(f"weights file {str(path)!r} does not fit backbone {name!r}: {problem}") from error
    converted.reset_classifier(0)
    model.load_state_dict(converted.state_dict())


# --- verified cache entries ---------------------------------------------------------------------------
def _digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _normalised(key: Mapping[str, Any]) -> dict[str, Any]:
    """The key as it reads back from JSON (tuples become lists), so stored and requested keys compare."""
    return json.loads(json.dumps(key, sort_keys=True))


def _entry_problem(data_file: Path, key: Mapping[str, Any]) -> str | None:
    """Why the cache entry holding ``data_file`` cannot be used (None: it is sound)."""
    meta_file = data_file.parent / "meta.json"
    if not data_file.exists() and not meta_file.exists():
        return "missing"
    if not meta_file.is_file():
        return "its meta.json is missing (an interrupted write?)"
    if not data_file.is_file():
        return f"{data_file.name} is missing"
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "its meta.json is unreadable"
    if meta.get("key") != key:
        return "its meta.json does not match the requested key"
    if meta.get("sha256") != sha256_file(data_file):
        return f"{data_file.name} fails its checksum (corrupt or partial)"
    return None


def _use_or_rebuild(data_file: Path, key: Mapping[str, Any], what: str) -> bool:
    """True when the entry is sound; otherwise warn (unless it is simply absent) and return False."""
    problem = _entry_problem(data_file, key)
    if problem is None:
        return True
    if problem != "missing":
        warnings.warn(
            f"{what} {data_file.parent} is unusable: {problem}; rebuilding it",
            StaleCacheWarning,
            stacklevel=3,
        )
    return False


def _write_meta(data_file: Path, key: Mapping[str, Any], **extra: Any) -> None:
    meta = {"key": key, "sha256": sha256_file(data_file), **extra}
    atomic_write_text(data_file.parent / "meta.json", json.dumps(meta, indent=2, sort_keys=True))


# --- stand-in pre-training ------------------------------------------------------------------------------
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
) -> Path | None:
    """Stand-in for ImageNet pre-training: the cached backbone weights (None when ``pretrain_epochs == 0``).

    Trains the backbone (from ``spec``'s initial weights) plus a linear classifier with cross-entropy
    on :func:`pretraining_indices` photos for ``pretrain_epochs`` epochs: AdamW (weight decay 0.05),
    cosine learning-rate decay per step, the augmentation of
    :func:`~sbir_bench.data.images.pretrain_transform` (crops, flips, and with ``pretrain_edge_prob`` a
    photo's own edge map in its place), seeded with ``spec.seed``. The backbone's
    state_dict (classifier dropped) is cached, keyed by the catalog fingerprint and the whole spec.
    """
    if spec.pretrain_epochs <= 0:
        return None
    _require_fingerprint(catalog)
    key = _normalised(
        {
            "format": CACHE_FORMAT,
            "catalog": catalog.name,
            "fingerprint": catalog.fingerprint,
            "spec": asdict(spec),
            "init": weights_identity(spec),
            "transform": repr(_pretraining_transform(spec)),
            "timm": timm.__version__,
            "torch": torch.__version__,
        }
    )
    weights_file = Path(cache_dir) / "backbones" / catalog.name / f"{spec.name}-{_digest(key)}" / "weights.pt"
    with file_lock(weights_file.parent / ".lock"):
        if _use_or_rebuild(weights_file, key, "pre-trained backbone cache"):
            return weights_file
        indices = pretraining_indices(catalog)
        state = _train_classifier(catalog, spec, indices, num_workers=num_workers, progress=progress)
        with atomic_path(weights_file) as temporary:
            torch.save(state, temporary)
        _write_meta(weights_file, key, num_photos=int(len(indices)))
    return weights_file


def _pretraining_transform(spec: BackboneSpec) -> Any:
    return pretrain_transform(spec.image_size, spec.pretrain_edge_prob, spec.pretrain_grayscale_prob)


def _train_classifier(
    catalog: Catalog, spec: BackboneSpec, indices: np.ndarray, *, num_workers: int, progress: bool
) -> dict[str, torch.Tensor]:
    records = catalog.records.iloc[indices]
    classes, targets = np.unique(records["label"].to_numpy(), return_inverse=True)
    device = _device()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = create_backbone(spec).to(device).train()
        head = nn.Linear(feature_dim(model), len(classes)).to(device)
        photos = _ImageFiles(records["path"].tolist(), _pretraining_transform(spec), targets)
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


# --- the feature cache ------------------------------------------------------------------------------------
class _ImageFiles(Dataset):
    """Images (RGB, sketches included) through a transform, with an optional target per image."""

    def __init__(self, paths: Sequence[str], transform: Any, targets: np.ndarray | None = None) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.targets = targets

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        image = self.transform(load_image(self.paths[i], mode="RGB"))
        return image if self.targets is None else (image, int(self.targets[i]))


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _require_fingerprint(catalog: Catalog) -> None:
    if not catalog.fingerprint:
        raise DatasetError(f"{catalog.name}: the catalog has no fingerprint, so its caches cannot be keyed")


def _image_items(catalog: Catalog) -> tuple[list[str], np.ndarray]:
    """(image path, record index) per image: one per sketch or photo, one per rendered view of a shape."""
    paths: list[str] = []
    owners: list[int] = []
    for record, (path, views) in enumerate(
        zip(catalog.records["path"], catalog.records["views"], strict=True)
    ):
        images = [path] if path else list(views)
        if not images:
            raise DatasetError(f"{catalog.name}: record {record} has neither a path nor views")
        paths.extend(images)
        owners.extend([record] * len(images))
    return paths, np.asarray(owners, dtype=np.int64)


def _feature_key(catalog: Catalog, spec: BackboneSpec, weights: str) -> dict[str, Any]:
    return _normalised(
        {
            "format": CACHE_FORMAT,
            "catalog": catalog.name,
            "fingerprint": catalog.fingerprint,
            "backbone": spec.name,
            "weights": weights,
            "transform": repr(image_transform(spec.image_size, train=False)),  # size, resize, normalisation
        }
    )


def feature_cache_dir(catalog: Catalog, spec: BackboneSpec, cache_dir: str | Path, weights: str) -> Path:
    """The folder of the cache entry for these features (``features.npy`` + ``meta.json``)."""
    return (
        Path(cache_dir)
        / "features"
        / catalog.name
        / f"{spec.name}-{_digest(_feature_key(catalog, spec, weights))}"
    )


SHARD_IMAGES = 4096  # images per shard of an extraction (a shard ends at a record boundary)


@dataclass(frozen=True)
class _Shard:
    """Records ``[start, stop)`` of the catalog, whose images are ``[first_image, end_image)`` of
    :func:`_image_items`' list: the unit an extraction finishes, checksums and resumes from."""

    start: int
    stop: int
    first_image: int
    end_image: int

    @property
    def name(self) -> str:
        return f"records-{self.start:09d}-{self.stop:09d}"


def _plan_shards(owners: np.ndarray, num_records: int, shard_images: int) -> list[_Shard]:
    """Cut the records into runs of about ``shard_images`` images, only between records.

    A record joins the shard its first image falls in, so a shape's views never straddle two shards
    (a shard may run over by the views of its last shape).
    """
    if shard_images < 1:
        raise ValueError(f"shard_images must be >= 1, got {shard_images}")
    first_images = np.concatenate([[0], np.cumsum(np.bincount(owners, minlength=num_records))])
    groups = first_images[:-1] // shard_images
    starts = np.flatnonzero(np.diff(groups, prepend=-1))
    stops = np.append(starts[1:], num_records)
    return [
        _Shard(int(start), int(stop), int(first_images[start]), int(first_images[stop]))
        for start, stop in zip(starts, stops, strict=True)
    ]


@dataclass(frozen=True)
class _ShardStore:
    """The ``shards/`` folder of a feature cache entry being built: ``<shard>.npy`` (float32
    ``[records, d]``) plus ``<shard>.json`` (key, record range, SHA-256), the latter written last."""

    folder: Path
    key: Mapping[str, Any]

    def data_file(self, shard: _Shard) -> Path:
        return self.folder / f"{shard.name}.npy"

    def save(self, shard: _Shard, features: np.ndarray) -> None:
        data_file = self.data_file(shard)
        atomic_save_npy(data_file, features)
        meta = {"key": self.key, "records": [shard.start, shard.stop], "sha256": sha256_file(data_file)}
        atomic_write_text(data_file.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True))

    def finished(self, shards: Sequence[_Shard], dim: int) -> set[_Shard]:
        """The shards an interrupted extraction finished and that verify; the others are recomputed.

        A shard without its ``.json`` was never finished and is dropped silently; one whose ``.json``
        exists but does not verify is reported with a :class:`StaleCacheWarning`.
        """
        finished = set()
        for shard in shards:
            if not self.data_file(shard).with_suffix(".json").exists():
                continue
            problem = self._problem(shard, dim)
            if problem is None:
                finished.add(shard)
            else:
                warnings.warn(
                    f"feature cache shard {self.data_file(shard)} is unusable: {problem}; recomputing it",
                    StaleCacheWarning,
                    stacklevel=5,
                )
        return finished

    def _problem(self, shard: _Shard, dim: int) -> str | None:
        data_file = self.data_file(shard)
        meta_file = data_file.with_suffix(".json")
        try:
            meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"{meta_file.name} is unreadable"
        if meta.get("key") != self.key or meta.get("records") != [shard.start, shard.stop]:
            return f"{meta_file.name} does not match the requested key and records"
        if not data_file.is_file():
            return f"{data_file.name} is missing"
        if meta.get("sha256") != sha256_file(data_file):
            return f"{data_file.name} fails its checksum (corrupt or partial)"
        array = np.load(data_file, mmap_mode="r")
        expected = (shard.stop - shard.start, dim)
        if array.dtype != np.float32 or array.shape != expected:
            return f"{data_file.name} holds {array.dtype} {array.shape}, expected float32 {list(expected)}"
        return None


def _remove_interrupted_writes(folder: Path) -> None:
    """Delete the temporaries of :func:`~sbir_bench.data.locking.atomic_path` a killed writer left behind
    (the caller holds the entry's lock, so no live writer owns them)."""
    for stray in folder.glob(".*.tmp"):
        stray.unlink(missing_ok=True)


def extract_features(
    catalog: Catalog,
    spec: BackboneSpec,
    cache_dir: str | Path,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = True,
    shard_images: int = SHARD_IMAGES,
) -> np.ndarray:
    """Backbone features of every record, ``float32 [len(catalog.records), d]``, memory-mapped read-only.

    Sketches are read as RGB; a shape's feature is the mean of its views' features (view pooling by
    averaging). Pre-trains first when ``spec.pretrain_epochs > 0`` (cached as well). The cache key holds
    the catalog name and fingerprint, the backbone, the weights' identity (file checksum or random-init
    seed) and the evaluation transform; the entry is checked against its meta.json and checksum on
    every load and rebuilt (with a :class:`StaleCacheWarning`) when it does not pass.

    Images stream through a DataLoader (``num_workers`` decoding processes, pinned memory on CUDA) as
    uint8 tensors, normalised per batch on the device (bit-identical to :func:`image_transform`), in
    shards of about ``shard_images`` images (whole records), each saved with its checksum under the
    entry's ``shards/`` folder as soon as it is done; an interrupted extraction resumes from the shards
    that verify. Once all are done they are assembled into the memory-mapped ``features.npy`` and removed.
    Batches never cross a shard, so a resumed extraction gives the same bytes as an uninterrupted one.
    """
    _require_fingerprint(catalog)
    pretrained_file = pretrain_backbone(catalog, spec, cache_dir, num_workers=num_workers, progress=progress)
    spec_for_weights = (
        spec
        if pretrained_file is None
        else replace(spec, pretrained=False, weights_path=str(pretrained_file), pretrain_epochs=0)
    )
    weights = weights_identity(spec_for_weights)
    key = _feature_key(catalog, spec, weights)
    entry = feature_cache_dir(catalog, spec, cache_dir, weights)
    features_file = entry / "features.npy"
    with file_lock(entry / ".lock"):
        if not _use_or_rebuild(features_file, key, "feature cache") or not _shape_ok(features_file, catalog):
            _remove_interrupted_writes(entry)
            store = _ShardStore(entry / "shards", key)
            _compute_features(
                catalog,
                spec_for_weights,
                features_file,
                store,
                batch_size,
                num_workers,
                progress,
                shard_images,
            )
            _write_meta(
                features_file,
                key,
                shape=list(np.load(features_file, mmap_mode="r").shape),
                dtype="float32",
                pretraining=None if pretrained_file is None else asdict(spec),
            )
            shutil.rmtree(store.folder)
    return np.load(features_file, mmap_mode="r")


def _shape_ok(features_file: Path, catalog: Catalog) -> bool:
    array = np.load(features_file, mmap_mode="r")
    if array.dtype == np.float32 and array.ndim == 2 and array.shape[0] == len(catalog.records):
        return True
    warnings.warn(
        f"feature cache {features_file.parent} holds {array.dtype} {array.shape}, expected float32 "
        f"[{len(catalog.records)}, d]; rebuilding it",
        StaleCacheWarning,
        stacklevel=3,
    )
    return False


def _compute_features(
    catalog: Catalog,
    spec: BackboneSpec,
    features_file: Path,
    store: _ShardStore,
    batch_size: int,
    num_workers: int,
    progress: bool,
    shard_images: int,
) -> None:
    """Compute the shards not finished yet, then assemble all of them into ``features_file``."""
    device = _device()
    model = create_backbone(spec).to(device)
    dim = feature_dim(model)
    paths, owners = _image_items(catalog)
    shards = _plan_shards(owners, len(catalog.records), shard_images)
    store.folder.mkdir(parents=True, exist_ok=True)
    _remove_interrupted_writes(store.folder)
    finished = store.finished(shards, dim)
    missing = [shard for shard in shards if shard not in finished]
    if missing:
        loader = DataLoader(
            _ImageFiles(paths, resize_to_uint8(spec.image_size)),  # normalised per batch on the device
            batch_sampler=_shard_batches(missing, batch_size),
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            # its own generator: building a cache must not draw from the global RNG, or a run that fills
            # the cache would train differently from a rerun that finds it (seeded runs must be identical)
            generator=torch.Generator().manual_seed(0),
        )
        # a bar updated by hand: tqdm.auto wrapping the loader would start its workers twice
        with tqdm(
            total=sum(shard.end_image - shard.first_image for shard in missing),
            unit="img",
            disable=not progress,
            desc=f"{spec.name} features of {catalog.name} ({len(finished)} of {len(shards)} shards resumed)",
        ) as bar:
            _compute_shards(model, device, spec.name, iter(loader), paths, owners, missing, store, dim, bar)
    with atomic_path(features_file) as temporary:
        out = np.lib.format.open_memmap(
            temporary, mode="w+", dtype=np.float32, shape=(len(catalog.records), dim)
        )
        for shard in shards:
            out[shard.start : shard.stop] = np.load(store.data_file(shard), mmap_mode="r")
        out.flush()
        del out


def _shard_batches(shards: Sequence[_Shard], batch_size: int) -> list[list[int]]:
    """Image indices per batch, in order; a shard's batches are the same whether or not it is resumed."""
    return [
        list(range(first, min(first + batch_size, shard.end_image)))
        for shard in shards
        for first in range(shard.first_image, shard.end_image, batch_size)
    ]


@torch.inference_mode()
def _compute_shards(
    model: nn.Module,
    device: torch.device,
    backbone: str,
    batches: Iterator[torch.Tensor],
    paths: Sequence[str],
    owners: np.ndarray,
    shards: Sequence[_Shard],
    store: _ShardStore,
    dim: int,
    bar: tqdm,
) -> None:
    """Run ``model`` on the uint8 image ``batches`` of ``shards`` (as :func:`_shard_batches` cuts them)
    and save each shard, averaged per record, as soon as its last batch is done."""
    for shard in shards:
        sums = np.zeros((shard.stop - shard.start, dim), dtype=np.float32)
        first = shard.first_image
        while first < shard.end_image:
            images = normalise_uint8_batch(next(batches).to(device, non_blocking=True))
            batch = model(images).float().cpu().numpy()
            if batch.shape[1] != dim:
                raise RuntimeError(f"backbone {backbone!r} gave {batch.shape[1]}-d features, expected {dim}")
            finite = np.isfinite(batch).all(axis=1)
            if not finite.all():
                bad = paths[first + int(np.flatnonzero(~finite)[0])]
                raise FloatingPointError(f"backbone {backbone!r} produced NaN/inf features (first for {bad})")
            np.add.at(sums, owners[first : first + len(batch)] - shard.start, batch)
            first += len(batch)
            bar.update(len(batch))
        views = np.bincount(owners[shard.first_image : shard.end_image] - shard.start, minlength=len(sums))
        sums /= views[:, None].astype(np.float32)
        store.save(shard, sums)
