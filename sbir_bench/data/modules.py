"""The LightningDataModule that serves one split of a registered dataset to a retrieval method.

It knows nothing of on-disk layouts (the dataset registry returns a :class:`Catalog`) and nothing of
methods (a method's class attributes ``inputs`` / ``train_sampling`` are handed to :meth:`configure_for`).

Batches:

- training, ``"pairs"``: ``{"sketch", "photo", "label", "sketch_index", "photo_index"}``, one item per
  training sketch with its partner; indices are catalog record indices. The partner is the sketch's own
  photo (the photo of the same instance) when the catalog's ``pairing`` is ``"instance"`` (Sketchy,
  QMUL, synthetic), and a training item of the sketch's class drawn afresh every epoch when it is
  ``"class"`` (TU-Berlin has no pairs; in SHREC the partner is a shape, still under the key ``photo``).
- training, triplets: ``{"sketch", "positive", "negative", "label", "positive_label", "negative_label"}``,
  the positive and the negative drawn afresh every epoch, as :data:`TRIPLET_RULES` names them:
  ``"triplets"``: positive = the partner as above, negative = a training photo (shape) of another class;
  ``"class_triplets"``: positive = a training photo of the sketch's class (any instance), negative as in
  ``"triplets"`` (coarse-grained, Sangkloy et al. 2016); ``"fine_triplets"``: positive = the partner,
  negative = any other training photo, of the same class or not (fine-grained);
  ``"annotated_triplets"`` (Yu et al., CVPR'16): a random annotated (positive, negative) pair of the
  sketch (``Catalog.triplets[<split>]``); with probability :data:`EASY_NEGATIVE_PROBABILITY` (0.25) the
  negative is replaced by a random training photo outside that sketch's annotated negatives (an "easy"
  negative); a sketch without annotated triplets takes its own photo and any other photo, and a dataset
  with none falls back to ``"fine_triplets"`` with a warning; ``"attribute_triplets"`` (DMAR, Song et al.,
  BMVC'16; this suite's rule): positive = the partner; with probability
  :data:`HARD_NEGATIVE_PROBABILITY` (0.5) the negative is one of the :data:`ATTRIBUTE_NEIGHBOURS` (10)
  training photos of the sketch's class whose instance attributes differ from the sketch's in the fewest
  places (Hamming distance, ties by record index), otherwise any other training photo; without instance
  attributes it falls back to ``"fine_triplets"`` with a warning.
  When the catalog has instance attributes (``Catalog.instance_attributes``), triplet batches also carry
  ``"sketch_attributes"``, ``"positive_attributes"``, ``"negative_attributes"`` (float ``[B, N_attr]``,
  the vectors of the items' instances) and ``info().attribute_dim`` is ``N_attr`` (0 without).
- training, ``"class_batches"`` (DCML, CGN, ...): every batch ``C`` classes x ``n`` sketches plus the same
  ``C`` classes x ``m`` partners (shapes, or photos), ``(C, n, m)`` from the method's ``class_batch``:
  ``{"sketch": [C*n, ...], "sketch_label": long [C*n], "shape": [C*m, ...], "shape_label": long [C*m],
  "sketch_index", "shape_index"}`` (catalog record indices), see :class:`_ClassBatches`.
- validation / test: two loaders, queries (0) then gallery (1), batches ``{"input", "label", "index"}``
  where ``index`` is the position in that query or gallery list (0..N-1), so the evaluation engine can
  drop the duplicates a DistributedSampler pads with.

Evaluation labels decide relevance: the class (``traditional``, ``zeroshot``, and ``gzs``, whose gallery
holds seen classes as well), or in a ``fine_grained`` split the instance (a query's only relevant item is
its own photo). ``semantics={"vectors": FILE, "format": ..., "fallback": ...}`` replaces
the reader's class side information with word vectors of the class names
(:func:`~sbir_bench.data.semantics.class_word_vectors`), ``semantics={"attributes": CSV}`` with a table
of per-class attributes (:func:`~sbir_bench.data.semantics.class_attribute_vectors`).

Inputs are cached backbone features (float32 ``[d]``, :mod:`sbir_bench.data.feature_cache`) or image tensors
(float32 ``[3, H, W]``, sketches read as RGB) through :func:`~sbir_bench.data.images.image_transform`;
``"images_with_contours"`` serves photos as ``[6, H, W]``, the photo and its cached contour map drawn as a
sketch (:mod:`sbir_bench.data.contours`), for methods whose image network also sees the photo's contours.
A shape's feature under ``"features"`` is the mean of its views' features. The view inputs serve a shape
as its ``V`` views: ``"view_features"`` as float32 ``[V, d]`` (per-view cache,
:func:`~sbir_bench.data.feature_cache.extract_view_features`), ``"view_images"`` as ``[V, 3, H, W]``
(each view through the image transform); a sketch stays ``[d]`` / ``[3, H, W]`` and a photo is served as
a single view (``[1, d]`` / ``[1, 3, H, W]``), so sketch -> shape methods also run on image datasets.
A method's ``views`` (e.g. ``"two"``) replaces the dataset's ``views`` option (its view recipe) and its
``feature_pyramid`` (e.g. ``(1, 2, 4)``) the backbone's ``pyramid_levels``
(:class:`~sbir_bench.data.backbones.PyramidPooling`).

:meth:`RetrievalDataModule.shape_voxels` gives the occupancy grids of shape records (sketch -> voxel
methods), voxelised from the catalog's model files (``Catalog.meshes``, :mod:`sbir_bench.data.voxels`).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from sbir_bench.data.backbones import BackboneSpec
from sbir_bench.data.contours import ContourMaps, PhotoWithContour, photo_contours
from sbir_bench.data.feature_cache import extract_features, extract_view_features, image_rows
from sbir_bench.data.images import image_transform, load_image
from sbir_bench.data.records import TEST_TRIPLETS, Catalog, DataInfo, DatasetError, Split
from sbir_bench.data.semantics import class_attribute_vectors, class_word_vectors
from sbir_bench.data.voxels import cached_voxels, check_resolution
from sbir_bench.registry import DATASETS

__all__ = ["INPUTS", "TRAIN_SAMPLINGS", "RetrievalDataModule"]

INPUTS = ("features", "images", "images_with_contours", "view_features", "view_images")
VIEW_INPUTS = ("view_features", "view_images")
# triplet kinds -> (positive, negative): "partner" = the sketch's own photo (or, under class pairing, a photo
# of its class), "class" = a photo of its class, "other_class" = a photo of another class, "other" = any
# photo but the positive
TRIPLET_RULES = {
    "triplets": ("partner", "other_class"),
    "class_triplets": ("class", "other_class"),
    "fine_triplets": ("partner", "other"),
}
# fine-grained triplets drawn from per-sketch candidate lists (:class:`_ListedDraws`)
LISTED_TRIPLETS = ("annotated_triplets", "attribute_triplets")
TRAIN_SAMPLINGS = ("pairs", *TRIPLET_RULES, *LISTED_TRIPLETS, "class_batches", "none")
CLASS_BATCH = (8, 4, 2)  # class_batches' default (C classes, n sketches, m shapes per class)
EASY_NEGATIVE_PROBABILITY = 0.25  # Yu et al. (CVPR'16): share of annotated negatives replaced by random ones
HARD_NEGATIVE_PROBABILITY = 0.5  # attribute_triplets: share of negatives drawn among attribute neighbours
ATTRIBUTE_NEIGHBOURS = 10  # attribute_triplets: how many nearest same-class photos form the hard pool
EVAL_PARTS = ("val", "test")


def _plain(value: Any) -> Any:
    """``value`` with every OmegaConf container (at any depth) turned into a plain dict / list."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


class _Inputs:
    """Record index -> model input: a row of the cached features, or a transformed RGB image; with
    ``photos`` given, photo records go through it instead (photo + contour map, ``images_with_contours``)."""

    def __init__(
        self,
        paths: list[str],
        features: np.ndarray | None,
        transform: Any | None,
        photos: tuple[np.ndarray, PhotoWithContour] | None = None,
    ) -> None:
        self.paths = paths
        self.features = features
        self.transform = transform
        self.photos = photos  # (is_photo per record, its transform)

    def __call__(self, record: int) -> Tensor:
        if self.features is not None:
            return torch.from_numpy(
                np.array(self.features[record], dtype=np.float32)
            )  # a copy off the memmap
        if self.photos is not None and self.photos[0][record]:
            return self.photos[1](record)
        return self.transform(load_image(self.paths[record], mode="RGB"))


class _ViewInputs:
    """Record index -> model input under view inputs: a sketch as its feature row ``[d]`` or image
    ``[3, S, S]``, any other record as the stack of its images (a shape's views; a photo's own image):
    ``[V, d]`` rows of the per-view ``features`` (``rows[r]:rows[r + 1]``) or ``[V, 3, S, S]``."""

    def __init__(
        self,
        is_sketch: np.ndarray,
        images: list[list[str]],
        features: np.ndarray | None,
        rows: np.ndarray | None,
        transform: Any | None,
    ) -> None:
        self.is_sketch, self.images, self.features = is_sketch, images, features
        self.rows, self.transform = rows, transform

    def __call__(self, record: int) -> Tensor:
        if self.features is not None:
            assert self.rows is not None
            rows = self.features[int(self.rows[record]) : int(self.rows[record + 1])]
            stack = torch.from_numpy(np.array(rows, dtype=np.float32))  # a copy off the memmap
        else:
            images = [load_image(path, mode="RGB") for path in self.images[record]]
            stack = torch.stack([self.transform(image) for image in images])
        return stack[0] if self.is_sketch[record] else stack


class _PartDataset(Dataset):
    """One query or gallery list: ``{"input", "label", "index"}`` with ``index`` the position in the list."""

    def __init__(self, records: np.ndarray, labels: np.ndarray, inputs: _Inputs | _ViewInputs) -> None:
        self.records, self.labels, self.inputs = records, labels, inputs

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, position: int) -> dict[str, Any]:
        return {
            "input": self.inputs(int(self.records[position])),
            "label": int(self.labels[position]),
            "index": position,
        }


class _PairDataset(Dataset):
    """A training sketch with its partner (photo or shape): item ``position`` takes the sketch's own
    photo, item ``(position, partner)`` the partner :class:`_EpochDraws` drew for it."""

    def __init__(
        self, sketches: np.ndarray, own: np.ndarray | None, labels: np.ndarray, inputs: _Inputs | _ViewInputs
    ) -> None:
        self.sketches, self.own, self.labels, self.inputs = sketches, own, labels, inputs

    def __len__(self) -> int:
        return len(self.sketches)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(item, tuple):
            position, partner = item
        else:
            assert self.own is not None, "class pairing: partners come from the sampler"
            position, partner = item, int(self.own[item])
        sketch = int(self.sketches[position])
        return {
            "sketch": self.inputs(sketch),
            "photo": self.inputs(partner),
            "label": int(self.labels[position]),
            "sketch_index": sketch,
            "photo_index": partner,
        }


class _TripletDataset(_PairDataset):
    """A training sketch with the positive and the negative :class:`_EpochDraws` drew for it;
    ``record_labels`` gives the class of every catalog record (the partners' labels)."""

    def __init__(
        self,
        sketches: np.ndarray,
        own: np.ndarray | None,
        labels: np.ndarray,
        inputs: _Inputs | _ViewInputs,
        record_labels: np.ndarray,
        record_attributes: np.ndarray | None = None,
    ) -> None:
        super().__init__(sketches, own, labels, inputs)
        self.record_labels = record_labels
        self.record_attributes = record_attributes  # float32 [num_records, N_attr] or None

    def __getitem__(self, item: tuple[int, int, int]) -> dict[str, Any]:  # type: ignore[override]
        position, positive, negative = item
        sketch = int(self.sketches[position])
        batch = {
            "sketch": self.inputs(sketch),
            "positive": self.inputs(positive),
            "negative": self.inputs(negative),
            "label": int(self.labels[position]),
            "positive_label": int(self.record_labels[positive]),
            "negative_label": int(self.record_labels[negative]),
        }
        if self.record_attributes is not None:
            for key, record in (("sketch", sketch), ("positive", positive), ("negative", negative)):
                batch[f"{key}_attributes"] = torch.from_numpy(self.record_attributes[record])
        return batch


class _EpochDraws(Sampler):
    """Each epoch: a seeded permutation of the training sketches, each with the partners drawn for it.

    The positive is the sketch's own photo when ``own`` is given (instance pairing), else a training
    partner of the sketch's class drawn uniformly (class pairing: TU-Berlin, SHREC; or class-level
    positives). ``negative`` adds a third item drawn uniformly: ``"other_class"`` a training partner of
    another class, ``"other"`` any training partner but the positive. Items are ``(position, positive)`` or
    ``(position, positive, negative)``, partners as record indices.

    The generator is the DataModule's seeded training generator, so epoch ``e`` of a rerun with the same
    seed draws the same items. Under DDP, Lightning wraps it in a ``DistributedSamplerWrapper``; every
    rank builds the same sequence and takes its own share.
    """

    def __init__(
        self,
        sketch_labels: np.ndarray,
        partners: np.ndarray,
        partner_labels: np.ndarray,
        generator: torch.Generator,
        *,
        own: np.ndarray | None,
        negative: str | None = None,
    ) -> None:
        order = np.argsort(partner_labels, kind="stable")
        self.partners_by_label = torch.as_tensor(partners[order])
        sorted_labels = partner_labels[order]
        self.class_start = torch.as_tensor(np.searchsorted(sorted_labels, sketch_labels, side="left"))
        self.class_count = (
            torch.as_tensor(np.searchsorted(sorted_labels, sketch_labels, side="right")) - self.class_start
        )
        if negative not in (None, "other_class", "other"):
            raise ValueError(f"unknown negative rule {negative!r}; expected 'other_class' or 'other'")
        if negative == "other_class" and bool((self.class_count == len(partners)).any()):
            raise DatasetError("triplets need training photos of at least two classes")
        if negative == "other" and len(partners) < 2:
            raise DatasetError("triplets need at least two training photos")
        # positions in partners_by_label of each sketch's own partner (a copy: pandas arrays are read-only)
        position_of = pd.Series(np.arange(len(partners)), index=partners[order])
        self.own = None if own is None else torch.tensor(position_of[own].to_numpy(dtype=np.int64))
        self.negative = negative
        self.generator = generator

    def __len__(self) -> int:
        return len(self.class_start)

    def _uniform(self, high: Tensor) -> Tensor:
        """One draw in ``[0, high)`` per entry of ``high``."""
        return (torch.rand(len(high), generator=self.generator, dtype=torch.float64) * high).long()

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        order = torch.randperm(len(self), generator=self.generator)
        start, count = self.class_start[order], self.class_count[order]
        columns = [order]
        if self.negative == "other_class":  # drawn before the positive: the order of draws is kept
            draw = self._uniform(len(self.partners_by_label) - count)
            negative = draw + count * (draw >= start)  # skip the sketch's own class, a contiguous block
        positive = start + self._uniform(count) if self.own is None else self.own[order]
        if self.negative == "other":
            draw = self._uniform(torch.full_like(count, len(self.partners_by_label) - 1))
            negative = draw + (draw >= positive).long()  # skip the positive
        columns.append(self.partners_by_label[positive])
        if self.negative is not None:
            columns.append(self.partners_by_label[negative])
        yield from zip(*(column.tolist() for column in columns), strict=True)


class _ListedDraws(Sampler):
    """Each epoch: a seeded permutation of the training sketches, each with a (positive, negative) pair.

    ``candidates[i]`` (int ``[k_i, 2]`` record indices) lists sketch ``i``'s (positive, negative) pairs;
    ``pools[i]`` the training photos its random negatives come from. Per sketch one candidate pair is drawn
    uniformly; with probability ``random_probability`` its negative is replaced by a uniform draw from
    ``pools[i]`` (so is the pair of a sketch without candidates: its own photo ``own[i]`` and a pool draw).
    Three uniforms per sketch and epoch from the DataModule's seeded generator, so reruns draw the same.
    """

    def __init__(
        self,
        own: np.ndarray,
        candidates: list[np.ndarray],
        pools: list[np.ndarray],
        random_probability: float,
        generator: torch.Generator,
    ) -> None:
        if any(len(pool) == 0 for pool in pools):
            raise DatasetError("triplets need at least two training photos")
        self.own, self.candidates, self.pools = own, candidates, pools
        self.random_probability = float(random_probability)
        self.generator = generator

    def __len__(self) -> int:
        return len(self.own)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        order = torch.randperm(len(self), generator=self.generator).tolist()
        draws = torch.rand(3, len(self), generator=self.generator, dtype=torch.float64).tolist()
        pick, replace, pool_pick = draws
        for i, position in enumerate(order):
            listed = self.candidates[position]
            if len(listed):
                positive, negative = (int(r) for r in listed[int(pick[i] * len(listed))])
            else:
                positive, negative = int(self.own[position]), -1
            if negative < 0 or replace[i] < self.random_probability:
                pool = self.pools[position]
                negative = int(pool[int(pool_pick[i] * len(pool))])
            yield position, positive, negative


class _ClassDraws:
    """Draws from one class's items: without replacement (a fresh seeded permutation whenever fewer than
    ``k`` are left) while the class has at least ``k`` items, with replacement when it has fewer."""

    def __init__(self, items: Tensor, generator: torch.Generator) -> None:
        self.items, self.generator = items, generator
        self.order = torch.empty(0, dtype=torch.long)

    def take(self, k: int) -> Tensor:
        if len(self.items) < k:
            return self.items[torch.randint(len(self.items), (k,), generator=self.generator)]
        if len(self.order) < k:
            self.order = torch.randperm(len(self.items), generator=self.generator)
        taken, self.order = self.order[:k], self.order[k:]
        return self.items[taken]


class _ClassBatches(Sampler):
    """Each epoch: ``ceil(#sketches / (C * n))`` batches, each of ``C`` distinct training classes drawn
    uniformly, with ``n`` sketches and ``m`` partners (shapes or photos) of each class (:class:`_ClassDraws`,
    the class's sketches and partners drawn without replacement across the epoch while they last).

    An item is one whole batch, ``(sketch records, partner records)``, class-major; every draw comes from
    the DataModule's seeded training generator, so a rerun (or a run resumed with the generator's state)
    draws the same batches. ``C`` is capped at the number of training classes.
    """

    def __init__(
        self,
        sketches: np.ndarray,
        sketch_labels: np.ndarray,
        partners: np.ndarray,
        partner_labels: np.ndarray,
        class_batch: tuple[int, int, int],
        generator: torch.Generator,
    ) -> None:
        classes = np.unique(sketch_labels)  # _training_sets checked that each has partners
        self.sketches = [torch.as_tensor(sketches[sketch_labels == c]) for c in classes]
        self.partners = [torch.as_tensor(partners[partner_labels == c]) for c in classes]
        num_classes, self.n, self.m = class_batch
        self.num_classes = min(num_classes, len(classes))
        self.batches = math.ceil(len(sketches) / (self.num_classes * self.n))
        self.generator = generator

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[tuple[list[int], list[int]]]:
        sketch_draws = [_ClassDraws(items, self.generator) for items in self.sketches]
        partner_draws = [_ClassDraws(items, self.generator) for items in self.partners]
        for _ in range(self.batches):
            chosen = torch.randperm(len(self.sketches), generator=self.generator)[: self.num_classes].tolist()
            sketches = torch.cat([sketch_draws[c].take(self.n) for c in chosen])
            partners = torch.cat([partner_draws[c].take(self.m) for c in chosen])
            yield sketches.tolist(), partners.tolist()


class _ClassBatchDataset(Dataset):
    """One whole ``class_batches`` batch per item (see the module docstring)."""

    def __init__(self, inputs: _Inputs | _ViewInputs, record_labels: np.ndarray) -> None:
        self.inputs, self.record_labels = inputs, record_labels

    def __getitem__(self, item: tuple[list[int], list[int]]) -> dict[str, Tensor]:
        sketches, shapes = item
        batch = {}
        for key, records in (("sketch", sketches), ("shape", shapes)):
            batch[key] = torch.stack([self.inputs(record) for record in records])
            batch[f"{key}_label"] = torch.as_tensor(self.record_labels[records], dtype=torch.long)
            batch[f"{key}_index"] = torch.as_tensor(records, dtype=torch.long)
        return batch


def _annotated_candidates(
    sketches: np.ndarray, own: np.ndarray, partners: np.ndarray, triplets: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Yu et al.'s lists: each sketch's annotated (positive, negative) rows among ``triplets`` (anchor,
    positive, negative record indices; rows leaving the training sketches/photos are skipped) and its pool
    of easy negatives, the training photos outside its annotated triplets (all other photos when that
    leaves none)."""
    position_of = {int(record): i for i, record in enumerate(sketches)}
    in_partners = np.isin(triplets[:, 1:], partners).all(axis=1)
    rows: list[list[tuple[int, int]]] = [[] for _ in sketches]
    for anchor, positive, negative in triplets[in_partners].tolist():
        if anchor in position_of:
            rows[position_of[anchor]].append((positive, negative))
    candidates, pools = [], []
    for i, listed in enumerate(rows):
        candidates.append(np.asarray(listed, dtype=np.int64).reshape(-1, 2))
        pool = np.setdiff1d(partners, [int(own[i]), *(r for pair in listed for r in pair)])
        pools.append(pool if len(pool) else np.setdiff1d(partners, [int(own[i])]))
    return candidates, pools


def _attribute_candidates(
    sketch_attributes: np.ndarray,
    sketch_labels: np.ndarray,
    own: np.ndarray,
    partners: np.ndarray,
    partner_attributes: np.ndarray,
    partner_labels: np.ndarray,
    neighbours: int = ATTRIBUTE_NEIGHBOURS,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """DMAR's attribute-driven lists (this suite's rule): each sketch's hard pairs (own photo, n) for the
    ``neighbours`` training photos n of its class, own photo excluded, whose attribute vectors differ from
    the sketch's in the fewest places (ties by record index), and its pool, every other training photo."""
    mismatches = (sketch_attributes[:, None, :] != partner_attributes[None, :, :]).sum(axis=2)
    candidates, pools = [], []
    for i, positive in enumerate(own.tolist()):
        same = (partner_labels == sketch_labels[i]) & (partners != positive)
        ranked = np.lexsort((partners[same], mismatches[i, same]))[:neighbours]
        hard = partners[same][ranked]
        candidates.append(np.stack([np.full(len(hard), positive), hard], axis=1).astype(np.int64))
        pools.append(partners[partners != positive])
    return candidates, pools


class RetrievalDataModule(L.LightningDataModule):
    """One split of a registered dataset, as features or images, for training and retrieval evaluation.

    ``prepare_data`` builds the dataset and, for ``inputs="features"`` / ``"view_features"``, the
    (pre-trained) backbone and its (pooled / per-view) feature cache; ``setup`` loads them on every
    rank. ``backbone`` holds :class:`BackboneSpec` fields; ``feature_batch_size`` is the backbone's batch
    in feature extraction (small batches are fastest on a CPU, ``benchmarks/feature_throughput.py``; the
    features do not depend on it).
    ``accelerator`` is the trainer's: pre-training and extraction run on its device (``cpu`` never uses
    a GPU) and are cached per device type.
    Seeds: the same ``seed`` gives the same training batches (a ``torch.Generator`` seeded from it);
    random image augmentation additionally follows the global seed when ``num_workers == 0``.
    """

    def __init__(
        self,
        dataset: str,
        split: str,
        *,
        dataset_kwargs: dict[str, Any] | None = None,
        cache_dir: str = ".cache/sbir_bench",
        inputs: str = "features",
        train_sampling: str = "pairs",
        backbone: dict[str, Any] | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        feature_batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        semantics: dict[str, Any] | None = None,
        accelerator: str = "auto",
    ) -> None:
        super().__init__()
        # plain containers (a config's lists arrive as ListConfig, which checkpoints loaded with
        # weights_only=True refuse: e.g. synthetic_fg's ``categories``)
        dataset_kwargs, backbone, semantics = (_plain(v) for v in (dataset_kwargs, backbone, semantics))
        # kept in every checkpoint: ``RetrievalDataModule.load_from_checkpoint`` rebuilds the data of a run
        self.save_hyperparameters(logger=False)  # (the run's config is logged already)
        self.dataset = dataset
        self.split = split
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.cache_dir = str(cache_dir)
        self.backbone = BackboneSpec.from_dict(backbone)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.feature_batch_size = int(feature_batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.semantics = {k: v for k, v in (semantics or {}).items() if v is not None}
        self.accelerator = str(accelerator)
        self._catalog: Catalog | None = None
        self._split: Split | None = None
        self._features: np.ndarray | None = None
        self._rows: np.ndarray | None = None  # per-view features: record r's rows are rows[r]:rows[r + 1]
        self._contours: ContourMaps | None = None
        self._num_views = 0
        self._train_generator = torch.Generator()
        self.inputs, self.train_sampling = "", ""
        self.views: str | None = None
        self.class_batch: tuple[int, int, int] = CLASS_BATCH
        self.configure_for(inputs, train_sampling)

    # --- configuration ---------------------------------------------------------------------------
    def configure_for(
        self,
        inputs: str,
        train_sampling: str,
        *,
        views: str | None = None,
        feature_pyramid: tuple[int, ...] | None = None,
        class_batch: tuple[int, int, int] | None = None,
    ) -> None:
        """Serve what a method asks for (its class attributes); call before ``prepare_data``/``setup``.

        ``views`` (a view set, e.g. ``"two"``) replaces the dataset option ``views``; ``feature_pyramid``
        (non-empty) the backbone's ``pyramid_levels``; ``class_batch`` is ``(C, n, m)`` of
        ``train_sampling="class_batches"``. None (or ``()``) keeps what the DataModule has.
        """
        if inputs not in INPUTS:
            raise ValueError(f"unknown inputs {inputs!r}; expected one of {INPUTS}")
        if train_sampling not in TRAIN_SAMPLINGS:
            raise ValueError(f"unknown train_sampling {train_sampling!r}; expected one of {TRAIN_SAMPLINGS}")
        backbone = self.backbone
        if feature_pyramid:
            backbone = replace(backbone, pyramid_levels=tuple(feature_pyramid))
        if class_batch is not None:
            class_batch = tuple(class_batch)  # type: ignore[assignment]
            if len(class_batch) != 3 or not all(isinstance(k, int) and k >= 1 for k in class_batch):
                raise ValueError(f"class_batch must be three positive ints (C, n, m), got {class_batch!r}")
        changed = inputs != self.inputs or backbone != self.backbone or (views or self.views) != self.views
        if self._catalog is not None and changed:
            raise RuntimeError(
                "configure_for changed inputs, views or the feature pyramid after setup(); "
                "configure the DataModule first"
            )
        self.inputs, self.train_sampling, self.backbone = inputs, train_sampling, backbone
        self.views = views or self.views
        self.class_batch = class_batch or self.class_batch

    def configure_for_method(self, method: type) -> None:
        """:meth:`configure_for` with a method class's attributes ``inputs``, ``train_sampling`` and, where
        it has them, ``views``, ``feature_pyramid`` and ``class_batch`` (defaults: None, (), (8, 4, 2))."""
        self.configure_for(
            method.inputs,
            method.train_sampling,
            views=getattr(method, "views", None),
            feature_pyramid=tuple(getattr(method, "feature_pyramid", ())),
            class_batch=tuple(getattr(method, "class_batch", CLASS_BATCH)),
        )

    # --- Lightning hooks -----------------------------------------------------------------------------
    def _dataset_options(self) -> dict[str, Any]:
        """The dataset's options, with ``views`` replaced by the method's view set when it has one."""
        options = dict(self.dataset_kwargs)
        if self.views is None:
            return options
        parameters = inspect.signature(DATASETS.get(self.dataset)).parameters.values()
        if not any(p.name == "views" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            raise DatasetError(
                f"the method renders its shapes as views={self.views!r}, but dataset {self.dataset!r} has "
                "no view recipe (its builder takes no 'views' option): use a sketch -> 3D dataset "
                "(synthetic_3d, shrec13, shrec14, part_shrec14)"
            )
        options["views"] = self.views
        return options

    def _build_catalog(self) -> Catalog:
        catalog = DATASETS.create(self.dataset, cache_dir=self.cache_dir, **self._dataset_options())
        catalog.split(self.split)  # an unknown split fails here, naming the known ones
        semantics = dict(self.semantics)
        attributes = semantics.pop("attributes", None)
        if attributes and semantics:
            raise ValueError(
                f"semantics: set either attributes or word vectors ({sorted(semantics)}), not both"
            )
        if attributes:  # a per-class attribute table replaces the reader's side information
            catalog.class_semantics = class_attribute_vectors(attributes, catalog.class_names)
            catalog.semantics_kind = f"attributes ({Path(str(attributes)).name})"
        elif semantics.get("vectors"):  # so do word vectors of the class names
            catalog.class_semantics = class_word_vectors(
                catalog.class_names, cache_dir=self.cache_dir, **semantics
            )
            catalog.semantics_kind = f"word vectors ({Path(str(semantics['vectors'])).name})"
        return catalog

    def _features_of(self, catalog: Catalog, progress: bool) -> np.ndarray:
        extract = extract_view_features if self.inputs == "view_features" else extract_features
        return extract(
            catalog,
            self.backbone,
            self.cache_dir,
            batch_size=self.feature_batch_size,
            num_workers=self.num_workers,
            progress=progress,
            accelerator=self.accelerator,
        )

    def prepare_data(self) -> None:
        """Build the dataset, then (features only) pre-train the backbone and fill the feature cache."""
        catalog = self._build_catalog()
        if self.inputs in ("features", "view_features"):
            self._features_of(catalog, progress=True)
        elif self.inputs == "images_with_contours":
            photo_contours(catalog, self.cache_dir, self.backbone.image_size, progress=True)

    def setup(self, stage: str | None = None) -> None:
        """Load the catalog and the features from their caches (every rank); later calls are no-ops."""
        if self._catalog is not None:
            return
        catalog = self._build_catalog()
        if self.inputs not in ("features", *VIEW_INPUTS):
            shapes = catalog.records["path"].eq("").to_numpy()
            if shapes.any():
                raise DatasetError(
                    f"{catalog.name}: inputs={self.inputs!r} serves sketches and photos only; "
                    f"{int(shapes.sum())} records are shapes (use inputs='features', 'view_features' "
                    "or 'view_images')"
                )
        self._num_views = self._views_per_item(catalog)
        with_features = self.inputs in ("features", "view_features")
        self._features = self._features_of(catalog, progress=False) if with_features else None
        self._rows = image_rows(catalog) if self.inputs == "view_features" else None
        if self.inputs == "images_with_contours":
            self._contours = photo_contours(catalog, self.cache_dir, self.backbone.image_size, progress=False)
        self._split = catalog.split(self.split)
        self._train_generator = torch.Generator().manual_seed(self.seed)
        self._catalog = catalog

    def _views_per_item(self, catalog: Catalog) -> int:
        """``V``: the views of every shape (they must agree under view inputs; else the commonest count),
        1 for photos under view inputs, 0 for photos otherwise."""
        records = catalog.records
        shapes = records["domain"].eq("shape").to_numpy()
        if not shapes.any():
            return 1 if self.inputs in VIEW_INPUTS else 0
        counts = records["views"][shapes].map(len)
        if counts.nunique() > 1 and self.inputs in VIEW_INPUTS:  # pooled features average any number
            odd = counts[counts != counts.mode().iloc[0]]
            raise DatasetError(
                f"{catalog.name}: shapes have different numbers of views ({sorted(set(counts))}), e.g. "
                f"{records['instance'][odd.index[0]]!r} has {int(odd.iloc[0])}; view inputs need one count"
            )
        return int(counts.mode().iloc[0])

    def state_dict(self) -> dict[str, Any]:
        """The training generator's state, saved in every checkpoint, so that a run resumed from one draws
        the batches an uninterrupted run draws (Lightning restores it before the first resumed epoch)."""
        return {"train_generator": self._train_generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_generator.set_state(state_dict["train_generator"])

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise RuntimeError("the DataModule is not set up yet: call prepare_data() and setup() first")
        return self._catalog

    @property
    def split_(self) -> Split:
        self.catalog  # noqa: B018 -- raises when not set up
        assert self._split is not None
        return self._split

    def info(self) -> DataInfo:
        """What the method may know about the data: classes, seen classes, feature width, semantics."""
        catalog, split = self.catalog, self.split_
        return DataInfo(
            num_classes=catalog.num_classes,
            seen_classes=tuple(int(c) for c in split.seen_classes),
            feature_dim=None if self._features is None else int(self._features.shape[1]),
            image_size=self.backbone.image_size,
            class_semantics=catalog.class_semantics,
            attribute_dim=self._attribute_dim(),
            dataset=catalog.name,
            num_views=self._num_views,
            feature_levels=self.backbone.pyramid_levels,
        )

    def _attribute_dim(self) -> int:
        vectors = self.catalog.instance_attributes
        return int(len(next(iter(vectors.values())))) if vectors else 0

    def _record_attributes(self, needed: np.ndarray) -> np.ndarray | None:
        """float32 ``[num_records, N_attr]``: each record's instance attributes (None when the catalog has
        none); every record in ``needed`` must have a vector (zeros elsewhere)."""
        vectors = self.catalog.instance_attributes
        if not vectors:
            return None
        instances = self.catalog.records["instance"].to_numpy()
        missing = sorted({str(instances[r]) for r in needed.tolist()} - set(vectors))
        if missing:
            raise DatasetError(
                f"{self.catalog.name}/{self.split}: {len(missing)} training instances have no attribute "
                f"vector, e.g. {missing[0]!r}"
            )
        table = np.zeros((len(instances), self._attribute_dim()), dtype=np.float32)
        for record, instance in enumerate(instances):
            if instance in vectors:
                table[record] = np.asarray(vectors[instance], dtype=np.float32)
        return table

    # --- loaders ---------------------------------------------------------------------------------------
    def _inputs(self, train: bool) -> _Inputs | _ViewInputs:
        paths = self.catalog.records["path"].tolist()
        if self.inputs in VIEW_INPUTS:
            records = self.catalog.records
            views = records["views"]
            images = [[path] if path else list(view) for path, view in zip(paths, views, strict=True)]
            size = self.backbone.image_size
            transform = None if self._features is not None else image_transform(size, train=train)
            is_sketch = records["domain"].eq("sketch").to_numpy()
            return _ViewInputs(is_sketch, images, self._features, self._rows, transform)
        if self.inputs == "features":
            return _Inputs(paths, self._features, None)
        photos = None
        if self._contours is not None:
            is_photo = self.catalog.records["domain"].eq("photo").to_numpy()
            photos = (is_photo, PhotoWithContour(paths, self._contours, train=train))
        return _Inputs(paths, None, image_transform(self.backbone.image_size, train=train), photos)

    def _loader(self, dataset: Dataset, batch_size: int | None, **options: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **options,
        )

    def _training_sets(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, pd.DataFrame]:
        """(training sketch records, their own partners or None under class pairing, their labels,
        the training partners: the photos, or the shapes of a sketch -> 3D dataset)."""
        records = self.catalog.records
        train = records.iloc[self.split_.train]
        sketches = train[train["domain"] == "sketch"]
        partners = train[train["domain"] != "sketch"]
        where = f"{self.catalog.name}/{self.split}"
        if len(sketches) == 0 or len(partners) == 0:
            raise DatasetError(
                f"{where}: the training part needs sketches and photos or shapes "
                f"({len(sketches)} sketches, {len(partners)} others)"
            )
        if partners["domain"].nunique() > 1:
            raise DatasetError(f"{where}: the training part mixes {sorted(set(partners['domain']))}")
        labels = sketches["label"].to_numpy()
        if self.catalog.pairing == "class":
            lonely = np.setdiff1d(labels, partners["label"].to_numpy())
            if len(lonely):
                raise DatasetError(
                    f"{where}: {len(lonely)} classes have training sketches but no training "
                    f"{partners['domain'].iloc[0]}, e.g. {self.catalog.class_names[int(lonely[0])]!r}"
                )
            return sketches.index.to_numpy(), None, labels, partners
        repeated = partners["instance"][partners["instance"].duplicated()]
        if len(repeated):
            raise DatasetError(
                f"{where}: {len(repeated)} training photos share an instance, e.g. {repeated.iloc[0]!r}"
            )
        partner_of_instance = pd.Series(partners.index.to_numpy(), index=partners["instance"].to_numpy())
        own = sketches["instance"].map(partner_of_instance)
        if own.isna().any():
            lonely = sketches["instance"][own.isna()]
            raise DatasetError(
                f"{where}: {len(lonely)} training sketches have no photo of their instance in the "
                f"training part, e.g. instance {lonely.iloc[0]!r}"
            )
        return sketches.index.to_numpy(), own.to_numpy(dtype=np.int64), labels, partners

    def train_dataloader(self) -> DataLoader:
        """Shuffled training items (see the module docstring); a last batch of a single item is dropped."""
        if self.train_sampling == "none":
            raise RuntimeError(
                "train_sampling='none': this method is not trained, so it has no training data"
            )
        sketches, own, labels, partners = self._training_sets()
        inputs = self._inputs(train=True)
        if self.train_sampling == "class_batches":
            sampler = _ClassBatches(
                sketches,
                labels,
                partners.index.to_numpy(),
                partners["label"].to_numpy(),
                self.class_batch,
                self._train_generator,
            )
            dataset = _ClassBatchDataset(inputs, self.catalog.records["label"].to_numpy())
            return self._loader(dataset, None, sampler=sampler, generator=self._train_generator)
        drop_last = len(sketches) % self.batch_size == 1 < len(sketches)  # BatchNorm cannot train on one item
        if self.train_sampling in LISTED_TRIPLETS:
            sampler = self._listed_draws(sketches, own, labels, partners)
            if sampler is not None:
                dataset = self._triplet_dataset(sketches, own, labels, inputs, partners)
                return self._loader(
                    dataset,
                    self.batch_size,
                    sampler=sampler,
                    generator=self._train_generator,
                    drop_last=drop_last,
                )
            positive, negative = TRIPLET_RULES["fine_triplets"]  # the fallback (warned)
        else:
            positive, negative = TRIPLET_RULES.get(self.train_sampling, ("partner", None))
        if negative is None:
            dataset: Dataset = _PairDataset(sketches, own, labels, inputs)
        else:
            dataset = self._triplet_dataset(sketches, own, labels, inputs, partners)
        if own is not None and negative is None:  # fixed pairs: a plain shuffle
            return self._loader(
                dataset, self.batch_size, shuffle=True, generator=self._train_generator, drop_last=drop_last
            )
        sampler = _EpochDraws(
            labels,
            partners.index.to_numpy(),
            partners["label"].to_numpy(),
            self._train_generator,
            own=None if positive == "class" else own,
            negative=negative,
        )
        return self._loader(
            dataset, self.batch_size, sampler=sampler, generator=self._train_generator, drop_last=drop_last
        )

    def _triplet_dataset(
        self,
        sketches: np.ndarray,
        own: np.ndarray | None,
        labels: np.ndarray,
        inputs: _Inputs | _ViewInputs,
        partners: pd.DataFrame,
    ) -> _TripletDataset:
        record_labels = self.catalog.records["label"].to_numpy()
        attributes = self._record_attributes(np.concatenate([sketches, partners.index.to_numpy()]))
        return _TripletDataset(sketches, own, labels, inputs, record_labels, attributes)

    def _listed_draws(
        self, sketches: np.ndarray, own: np.ndarray | None, labels: np.ndarray, partners: pd.DataFrame
    ) -> _ListedDraws | None:
        """The sampler of ``annotated_triplets`` / ``attribute_triplets``, or None (after a warning) when
        the data has no annotated training triplets / no instance attributes."""
        where = f"{self.catalog.name}/{self.split}"
        if own is None:
            raise DatasetError(f"{where}: train_sampling={self.train_sampling!r} needs instance pairing")
        records = partners.index.to_numpy()
        if self.train_sampling == "annotated_triplets":
            triplets = self.catalog.triplets.get(self.split)
            if triplets is None or len(triplets) == 0:
                warnings.warn(
                    f"{where} has no annotated training triplets: annotated_triplets falls back to "
                    "fine_triplets (own photo, any other training photo)",
                    stacklevel=2,
                )
                return None
            candidates, pools = _annotated_candidates(sketches, own, records, np.asarray(triplets))
            probability = EASY_NEGATIVE_PROBABILITY
        else:
            table = self._record_attributes(np.concatenate([sketches, records]))
            if table is None:
                warnings.warn(
                    f"{where} has no instance attributes: attribute_triplets falls back to fine_triplets "
                    "(own photo, any other training photo)",
                    stacklevel=2,
                )
                return None
            candidates, pools = _attribute_candidates(
                table[sketches], labels, own, records, table[records], partners["label"].to_numpy()
            )
            probability = 1.0 - HARD_NEGATIVE_PROBABILITY
        return _ListedDraws(own, candidates, pools, probability, self._train_generator)

    def _relevance_labels(self) -> np.ndarray:
        """What makes a gallery item relevant to a query: its class, or (fine-grained) its instance."""
        records = self.catalog.records
        if self.split_.setting == "fine_grained":
            return pd.factorize(records["instance"])[0].astype(np.int64)
        return records["label"].to_numpy()

    def _eval_loaders(self, stage: str) -> list[DataLoader]:
        loaders = []
        labels = self._relevance_labels()
        inputs = self._inputs(train=False)
        for side in ("query", "gallery"):
            records = self.split_.part(f"{stage}_{side}")
            if len(records) == 0:
                raise DatasetError(f"{self.catalog.name}/{self.split}: split part '{stage}_{side}' is empty")
            loaders.append(
                self._loader(
                    _PartDataset(records, labels[records], inputs), self.eval_batch_size, shuffle=False
                )
            )
        return loaders

    def val_dataloader(self) -> list[DataLoader]:
        """[queries, gallery] of the validation part; ``[]`` (no validation) only when both are empty."""
        split = self.split_
        if len(split.val_query) == 0 and len(split.val_gallery) == 0:
            return []
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        """[queries, gallery] of the test part."""
        return self._eval_loaders("test")

    def test_triplets(self) -> np.ndarray | None:
        """The dataset's annotated test triplets (``Catalog.triplets["fine_grained_test"]``, record indices)
        as int [T, 3] (query, positive, negative) positions in the test part's query and gallery order, for
        ``triplet_acc``; None when the dataset has none or the split is not fine-grained. A triplet whose
        items are not in the test part is an error naming it."""
        triplets = self.catalog.triplets.get(TEST_TRIPLETS)
        if triplets is None or self.split_.setting != "fine_grained":
            return None
        triplets = np.asarray(triplets, dtype=np.int64).reshape(-1, 3)
        positions = []
        for column, side in ((0, "query"), (1, "gallery"), (2, "gallery")):
            part = self.split_.part(f"test_{side}")
            position = pd.Series(np.arange(len(part)), index=part).reindex(triplets[:, column])
            if position.isna().any():
                bad = int(np.flatnonzero(position.isna().to_numpy())[0])
                raise DatasetError(
                    f"{self.catalog.name}: test triplet {bad} {triplets[bad].tolist()} names record "
                    f"{int(triplets[bad, column])}, which is not a test {side} item"
                )
            positions.append(position.to_numpy(dtype=np.int64))
        return np.stack(positions, axis=1)

    # --- voxel grids of shapes ---------------------------------------------------------------------------
    def _up_axis(self) -> str:
        """The dataset's ``up_axis`` view-recipe option (its builder's default when not set; ``"y"``)."""
        options = self._dataset_options()
        if "up_axis" in options:
            return str(options["up_axis"])
        parameter = inspect.signature(DATASETS.get(self.dataset)).parameters.get("up_axis")
        has_default = parameter is not None and parameter.default is not inspect.Parameter.empty
        return str(parameter.default) if has_default else "y"

    def shape_voxels(self, records: np.ndarray, resolution: int = 32) -> np.ndarray:
        """Occupancy grids, bool ``[N, R, R, R]``, of the shapes at catalog record indices ``records`` (e.g.
        ``gallery_records("test").index``), from their model files with the dataset's ``up_axis``
        (:func:`~sbir_bench.data.voxels.cached_voxels`, cached under ``cache_dir``). A record without a
        model file (a sketch, a photo) raises a DatasetError naming it."""
        catalog = self.catalog
        records = np.asarray(records, dtype=np.int64).reshape(-1)
        instances = catalog.records["instance"].to_numpy()
        resolution = check_resolution(resolution)
        for record in records.tolist():
            if record not in catalog.meshes:
                instance = f" (instance {instances[record]!r})" if 0 <= record < len(instances) else ""
                raise DatasetError(
                    f"{catalog.name}: record {record}{instance} has no 3D model file; voxels need the shape "
                    "records of a sketch -> 3D dataset (synthetic_3d, shrec13, shrec14, part_shrec14)"
                )
        up_axis = self._up_axis()
        grids = np.empty((len(records), resolution, resolution, resolution), dtype=bool)
        for position, record in enumerate(records.tolist()):
            grids[position] = cached_voxels(catalog.meshes[record], resolution, up_axis, self.cache_dir)
        return grids

    # --- records for visualisation ---------------------------------------------------------------------
    def _part_records(self, part: str, side: str) -> pd.DataFrame:
        if part not in EVAL_PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {EVAL_PARTS}")
        return self.catalog.records.iloc[self.split_.part(f"{part}_{side}")]

    def query_records(self, part: str = "test") -> pd.DataFrame:
        """The query records; row ``i`` is the item served with ``index == i``."""
        return self._part_records(part, "query")

    def gallery_records(self, part: str = "test") -> pd.DataFrame:
        """The gallery records; row ``i`` is the item served with ``index == i``."""
        return self._part_records(part, "gallery")
