"""The cache of backbone features for every record of a catalog (sharded, resumable, verified).

Two kinds of entry: pooled (:func:`extract_features`, one row per record, a shape's views averaged) and
per view (:func:`extract_view_features`, one row per image: a sketch's or photo's own, each rendered view
of a shape), each with its own cache key, built by the same sharded extraction.

Features are computed by :mod:`sbir_bench.data.backbones` networks, pre-trained first by
:mod:`sbir_bench.data.pretraining` when the spec asks for it; entries are verified on load
(:mod:`sbir_bench.data.cache_entries`).
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sbir_bench.data import backbones
from sbir_bench.data.backbones import BackboneSpec, ImageFiles, compute_device, feature_dim, weights_identity
from sbir_bench.data.cache_entries import (
    CACHE_FORMAT,
    StaleCacheWarning,
    key_digest,
    normalised_key,
    require_fingerprint,
    use_or_rebuild,
    write_meta,
)
from sbir_bench.data.images import image_transform, normalise_uint8_batch, resize_to_uint8
from sbir_bench.data.pretraining import pretrain_backbone
from sbir_bench.data.records import Catalog, DatasetError
from sbir_bench.files import (
    atomic_path,
    atomic_save_npy,
    atomic_write_text,
    file_lock,
    remove_interrupted_writes,
    sha256_file,
)

__all__ = ["SHARD_IMAGES", "extract_features", "extract_view_features", "feature_cache_dir", "image_rows"]


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


def image_rows(catalog: Catalog) -> np.ndarray:
    """int64 ``[len(records) + 1]``: record ``r``'s rows in a per-view feature array are
    ``[rows[r], rows[r + 1])`` (one per image, in :func:`_image_items` order)."""
    _, owners = _image_items(catalog)
    return np.concatenate([[0], np.cumsum(np.bincount(owners, minlength=len(catalog.records)))])


def _feature_key(
    catalog: Catalog, spec: BackboneSpec, weights: str, device: str, per_view: bool = False
) -> dict[str, Any]:
    key: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "catalog": catalog.name,
        "fingerprint": catalog.fingerprint,
        "backbone": spec.name,
        "weights": weights,
        "transform": repr(image_transform(spec.image_size, train=False)),  # size, resize, normalisation
        "device": device,  # "cpu" or "cuda": features of the two differ in their last bits
    }
    # entries only where set, so that the keys of pooled, pyramid-free entries stay what they were
    if spec.pyramid_levels:
        key["pyramid_levels"] = list(spec.pyramid_levels)
    if per_view:
        key["rows"] = "per view"
    return normalised_key(key)


def feature_cache_dir(
    catalog: Catalog,
    spec: BackboneSpec,
    cache_dir: str | Path,
    weights: str,
    accelerator: str = "auto",
    *,
    per_view: bool = False,
) -> Path:
    """The folder of the cache entry for these features (``features.npy`` + ``meta.json``), computed on
    the device of ``accelerator`` (as in :func:`extract_features`)."""
    device = compute_device(accelerator).type
    key = _feature_key(catalog, spec, weights, device, per_view)
    return Path(cache_dir) / "features" / catalog.name / f"{spec.name}-{key_digest(key)}"


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
    ``[records, d]``, or ``[images, d]`` ``per_view``) plus ``<shard>.json`` (key, record range,
    SHA-256), the latter written last."""

    folder: Path
    key: Mapping[str, Any]
    per_view: bool = False

    def span(self, shard: _Shard) -> tuple[int, int]:
        """The shard's rows in the assembled array: its images (``per_view``) or its records."""
        return (shard.first_image, shard.end_image) if self.per_view else (shard.start, shard.stop)

    def rows(self, shard: _Shard) -> int:
        first, stop = self.span(shard)
        return stop - first

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
        expected = (self.rows(shard), dim)
        if array.dtype != np.float32 or array.shape != expected:
            return f"{data_file.name} holds {array.dtype} {array.shape}, expected float32 {list(expected)}"
        return None


def extract_features(
    catalog: Catalog,
    spec: BackboneSpec,
    cache_dir: str | Path,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = True,
    shard_images: int = SHARD_IMAGES,
    accelerator: str = "auto",
) -> np.ndarray:
    """Backbone features of every record, ``float32 [len(catalog.records), d]``, memory-mapped read-only.

    Sketches are read as RGB; a shape's feature is the mean of its views' features (view pooling by
    averaging). Pre-trains first when ``spec.pretrain_epochs > 0`` (cached as well). Both run on the
    device of the trainer's ``accelerator`` (:func:`~sbir_bench.data.backbones.compute_device`: ``cpu``
    never touches a GPU). The cache key holds the catalog name and fingerprint, the backbone, the
    weights' identity (file checksum or random-init seed), the evaluation transform, the device type
    (CPU and GPU features are never mixed) and the pyramid levels when set; the entry is checked against
    its meta.json and checksum (once per process while the file is unchanged:
    :func:`~sbir_bench.files.sha256_file`) on every load and rebuilt (with a :class:`StaleCacheWarning`)
    when it does not pass.

    Images stream through a DataLoader (``num_workers`` decoding processes, pinned memory on CUDA) as
    uint8 tensors, normalised per batch on the device (bit-identical to :func:`image_transform`), in
    shards of about ``shard_images`` images (whole records), each saved with its checksum under the
    entry's ``shards/`` folder as soon as it is done; an interrupted extraction resumes from the shards
    that verify. Once all are done they are assembled into the memory-mapped ``features.npy`` and removed.
    Batches never cross a shard, so a resumed extraction gives the same bytes as an uninterrupted one.
    """
    return _extract(
        catalog, spec, cache_dir, False, batch_size, num_workers, progress, shard_images, accelerator
    )


def extract_view_features(
    catalog: Catalog,
    spec: BackboneSpec,
    cache_dir: str | Path,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = True,
    shard_images: int = SHARD_IMAGES,
    accelerator: str = "auto",
) -> np.ndarray:
    """Backbone features of every image, ``float32 [num_images, d]``, memory-mapped read-only: one row
    per sketch or photo, one per rendered view of a shape; record ``r``'s rows are
    ``image_rows(catalog)[r:r + 2]``. As :func:`extract_features` in every other respect (pre-training,
    sharding, resuming, verification); its own cache entry (the key says ``rows: per view``), whose rows
    of a shape average to that shape's row of :func:`extract_features`.
    """
    return _extract(
        catalog, spec, cache_dir, True, batch_size, num_workers, progress, shard_images, accelerator
    )


def _extract(
    catalog: Catalog,
    spec: BackboneSpec,
    cache_dir: str | Path,
    per_view: bool,
    batch_size: int,
    num_workers: int,
    progress: bool,
    shard_images: int,
    accelerator: str,
) -> np.ndarray:
    """The pooled (``per_view=False``) or per-view feature cache entry, built when missing or unsound."""
    require_fingerprint(catalog)
    device = compute_device(accelerator)
    pretrained_file = pretrain_backbone(
        catalog, spec, cache_dir, num_workers=num_workers, progress=progress, accelerator=accelerator
    )
    spec_for_weights = (
        spec
        if pretrained_file is None
        else replace(spec, pretrained=False, weights_path=str(pretrained_file), pretrain_epochs=0)
    )
    weights = weights_identity(spec_for_weights)
    key = _feature_key(catalog, spec, weights, device.type, per_view)
    entry = feature_cache_dir(catalog, spec, cache_dir, weights, accelerator, per_view=per_view)
    features_file = entry / "features.npy"
    rows = int(image_rows(catalog)[-1]) if per_view else len(catalog.records)
    with file_lock(entry / ".lock"):
        if not use_or_rebuild(features_file, key, "feature cache") or not _shape_ok(features_file, rows):
            remove_interrupted_writes(entry)
            store = _ShardStore(entry / "shards", key, per_view)
            _compute_features(
                catalog,
                spec_for_weights,
                device,
                features_file,
                store,
                batch_size,
                num_workers,
                progress,
                shard_images,
            )
            write_meta(
                features_file,
                key,
                shape=list(np.load(features_file, mmap_mode="r").shape),
                dtype="float32",
                pretraining=None if pretrained_file is None else asdict(spec),
            )
            shutil.rmtree(store.folder)
    return np.load(features_file, mmap_mode="r")


def _shape_ok(features_file: Path, rows: int) -> bool:
    array = np.load(features_file, mmap_mode="r")
    if array.dtype == np.float32 and array.ndim == 2 and array.shape[0] == rows:
        return True
    warnings.warn(
        f"feature cache {features_file.parent} holds {array.dtype} {array.shape}, expected float32 "
        f"[{rows}, d]; rebuilding it",
        StaleCacheWarning,
        stacklevel=3,
    )
    return False


def _compute_features(
    catalog: Catalog,
    spec: BackboneSpec,
    device: torch.device,
    features_file: Path,
    store: _ShardStore,
    batch_size: int,
    num_workers: int,
    progress: bool,
    shard_images: int,
) -> None:
    """Compute the shards not finished yet, then assemble all of them into ``features_file``."""
    model = backbones.create_backbone(spec).to(device)
    dim = feature_dim(model)
    paths, owners = _image_items(catalog)
    shards = _plan_shards(owners, len(catalog.records), shard_images)
    store.folder.mkdir(parents=True, exist_ok=True)
    remove_interrupted_writes(store.folder)
    finished = store.finished(shards, dim)
    missing = [shard for shard in shards if shard not in finished]
    if missing:
        loader = DataLoader(
            ImageFiles(paths, resize_to_uint8(spec.image_size)),  # normalised per batch on the device
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
        rows = len(paths) if store.per_view else len(catalog.records)
        out = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=(rows, dim))
        for shard in shards:
            first, stop = store.span(shard)
            out[first:stop] = np.load(store.data_file(shard), mmap_mode="r")
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
    and save each shard, averaged per record (or per image, ``store.per_view``), as soon as its last
    batch is done."""
    for shard in shards:
        rows = np.zeros((store.rows(shard), dim), dtype=np.float32)
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
            if store.per_view:
                offset = first - shard.first_image
                rows[offset : offset + len(batch)] = batch
            else:
                np.add.at(rows, owners[first : first + len(batch)] - shard.start, batch)
            first += len(batch)
            bar.update(len(batch))
        if not store.per_view:  # the sums of each record's images -> their mean
            owned = owners[shard.first_image : shard.end_image] - shard.start
            views = np.bincount(owned, minlength=len(rows))
            rows /= views[:, None].astype(np.float32)
        store.save(shard, rows)
