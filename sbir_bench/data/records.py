"""The one record schema every reader produces and every DataModule consumes.

A dataset is a :class:`Catalog`: a table of records (one row per sketch, photo or 3D shape) plus its
classes, their side information and its named splits. Readers know nothing of Lightning; DataModules
know nothing of on-disk layouts.

Record columns (``Catalog.records``, a pandas DataFrame indexed 0..N-1):

============  ======  ===========================================================================
column        type    meaning
============  ======  ===========================================================================
domain        str     ``"sketch"``, ``"photo"`` or ``"shape"`` (a 3D model seen as rendered views)
label         int     class id, an index into ``Catalog.class_names``
instance      str     instance id; a sketch shares it with its paired photo (``pairing="instance"``)
path          str     image file (sketch/photo); empty for shapes
views         object  tuple of view image paths for shapes, ``()`` otherwise
============  ======  ===========================================================================

Per-instance attributes (fine-grained DMAR) live in ``Catalog.instance_attributes`` keyed by instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

Domain = Literal["sketch", "photo", "shape"]
# zeroshot: unseen-class queries against unseen-class items only; gzs (generalised zero-shot, as in
# SEM-PCYC and Doodle2Search): unseen-class queries against a gallery of every class; fine_grained:
# relevant = same instance (otherwise relevant = same class)
Setting = Literal["traditional", "zeroshot", "gzs", "fine_grained"]
SETTINGS = ("traditional", "zeroshot", "gzs", "fine_grained")
# how a training sketch finds its partner (photo or shape): the item of its own instance, or a same-class
# item drawn afresh every epoch (TU-Berlin, SHREC: no drawn-from pairs exist)
Pairing = Literal["instance", "class"]
PAIRINGS = ("instance", "class")
RECORD_COLUMNS = ("domain", "label", "instance", "path", "views")
SPLIT_PARTS = ("train", "val_query", "val_gallery", "test_query", "test_gallery")


@dataclass
class DataInfo:
    """What a method may know about its data when it is built (no paths, no records)."""

    num_classes: int
    seen_classes: tuple[int, ...]
    feature_dim: int | None = None  # set when the DataModule serves cached backbone features
    image_size: int | None = None
    class_semantics: np.ndarray | None = field(default=None, repr=False)  # [num_classes, dim]
    attribute_dim: int = 0  # width of the per-instance attribute vectors (fine-grained), 0 when none
    num_views: int = 0  # views per gallery item under view inputs (a shape's rendered views), 0 when none
    feature_levels: tuple[int, ...] = ()  # the backbone's pooling pyramid (feature_dim = d * sum(L * L))
    dataset: str = ""  # the dataset's name, for error messages (not saved in checkpoints)


class DatasetError(RuntimeError):
    """A dataset is missing, malformed or inconsistent; the message names the path and what was expected."""


@dataclass(frozen=True)
class Split:
    """A named evaluation protocol over a catalog: record indices for each part.

    ``train`` holds training records of both domains (only seen classes); ``val_*`` come from seen
    classes only (never from unseen ones); ``test_query`` are sketches and ``test_gallery`` the
    photos (or shapes) they are searched against (in a ``gzs`` split: unseen-class queries, a gallery
    of seen and unseen classes).
    """

    name: str
    setting: Setting
    seen_classes: tuple[int, ...]
    unseen_classes: tuple[int, ...]
    train: np.ndarray
    val_query: np.ndarray
    val_gallery: np.ndarray
    test_query: np.ndarray
    test_gallery: np.ndarray

    def part(self, name: str) -> np.ndarray:
        if name not in SPLIT_PARTS:
            raise KeyError(f"unknown split part {name!r}; expected one of {SPLIT_PARTS}")
        return getattr(self, name)

    def counts(self) -> dict[str, int]:
        return {part: int(len(self.part(part))) for part in SPLIT_PARTS}


TEST_TRIPLETS = "fine_grained_test"  # Catalog.triplets key of the annotated test triplets (triplet_acc)


@dataclass
class Catalog:
    """Everything a reader knows about one dataset."""

    name: str
    records: pd.DataFrame
    class_names: list[str]
    splits: dict[str, Split]
    class_semantics: np.ndarray | None = None  # [num_classes, dim] side information
    semantics_kind: str = ""  # e.g. "attributes", "word2vec-300"
    instance_attributes: dict[str, np.ndarray] = field(default_factory=dict)
    # split name -> int [T, 3] record indices (anchor sketch, positive photo, negative photo), e.g. QMUL's:
    # "<split>" training triplets, "<split>_test" the annotated test triplets
    triplets: dict[str, np.ndarray] = field(default_factory=dict)
    fingerprint: str = ""  # changes whenever the records change; keys feature caches
    pairing: Pairing = "instance"  # see Pairing: how training sketches find their photo or shape
    attribute_names: list[str] = field(default_factory=list)  # the columns of instance_attributes
    # record index -> its model file (``.off``) for the shape records of a sketch -> 3D dataset (voxels)
    meshes: dict[int, str] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DatasetError(
                f"dataset {self.name!r} has no split {name!r}; its splits: {', '.join(sorted(self.splits))}"
            )
        return self.splits[name]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def validate(self) -> None:
        """Check the schema and that every split is well formed; raise DatasetError naming the problem."""
        if self.pairing not in PAIRINGS:
            raise DatasetError(f"{self.name}: unknown pairing {self.pairing!r}; expected one of {PAIRINGS}")
        missing = [c for c in RECORD_COLUMNS if c not in self.records.columns]
        if missing:
            raise DatasetError(f"{self.name}: record table lacks columns {missing}")
        n = len(self.records)
        if n == 0:
            raise DatasetError(f"{self.name}: no records")
        labels = self.records["label"].to_numpy()
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise DatasetError(f"{self.name}: labels outside 0..{self.num_classes - 1}")
        self._validate_attributes()
        self._validate_triplets()
        for split in self.splits.values():
            if split.setting not in SETTINGS:
                raise DatasetError(
                    f"{self.name}/{split.name}: unknown setting {split.setting!r}; expected one of {SETTINGS}"
                )
            for part in SPLIT_PARTS:
                idx = split.part(part)
                if part != "val_query" and part != "val_gallery" and len(idx) == 0:
                    raise DatasetError(f"{self.name}/{split.name}: split part {part!r} is empty")
                if len(idx) and (idx.min() < 0 or idx.max() >= n):
                    raise DatasetError(f"{self.name}/{split.name}: {part} indexes outside the records")
            seen, unseen = set(split.seen_classes), set(split.unseen_classes)
            if seen & unseen:
                raise DatasetError(f"{self.name}/{split.name}: classes both seen and unseen: {seen & unseen}")
            train_classes = set(labels[split.train].tolist())
            if train_classes & unseen:
                raise DatasetError(f"{self.name}/{split.name}: training data holds unseen classes")
            for part in ("val_query", "val_gallery"):
                if set(labels[split.part(part)].tolist()) & unseen:
                    raise DatasetError(f"{self.name}/{split.name}: {part} holds unseen classes")

    def _validate_attributes(self) -> None:
        widths = {np.shape(vector)[-1] for vector in self.instance_attributes.values()}
        if len(widths) > 1:
            raise DatasetError(
                f"{self.name}: instance attribute vectors of different widths {sorted(widths)}"
            )
        if self.attribute_names and widths and widths != {len(self.attribute_names)}:
            names = len(self.attribute_names)
            raise DatasetError(f"{self.name}: {names} attribute names but vectors of width {widths.pop()}")

    def _validate_triplets(self) -> None:
        domains = self.records["domain"].to_numpy()
        for name, triplets in self.triplets.items():
            triplets = np.asarray(triplets)
            if triplets.ndim != 2 or triplets.shape[1] != 3:
                raise DatasetError(
                    f"{self.name}: triplets[{name!r}] has shape {triplets.shape}; expected [T, 3]"
                )
            if len(triplets) == 0:
                continue
            if triplets.min() < 0 or triplets.max() >= len(domains):
                raise DatasetError(f"{self.name}: triplets[{name!r}] index outside the records")
            if (domains[triplets[:, 0]] != "sketch").any() or (domains[triplets[:, 1:]] == "sketch").any():
                raise DatasetError(
                    f"{self.name}: triplets[{name!r}] must be (sketch, photo, photo) record indices"
                )
