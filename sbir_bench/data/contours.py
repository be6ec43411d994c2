"""Contour maps of photos ("sketch tokens"), computed once per catalog and cached, and the photo + contour
tensors that methods with ``inputs="images_with_contours"`` train and search on.

Deep Sketch Hashing (Liu et al., CVPR'17) feeds its image network a natural image together with its
*sketch-token* map, the mid-level contour map of Lim et al. ("Sketch Tokens", CVPR'13), so that both
domains meet in a sketch-like representation. Sketch tokens come from a random forest trained on the
BSDS contours, which nothing installable offers; this suite substitutes Canny edges (scikit-image's
:func:`skimage.feature.canny`, on the grey photo resized to the input size, Gaussian ``sigma``), which the
DSH reimplementations also use in its place. The substitution is recorded in the cache key and in the
README's method table.

Cache entry: ``<cache_dir>/contours/<catalog>/<digest>/contours.npy``, ``uint8 [n_photos, size,
ceil(size / 8)]`` (bits packed along the width; row ``i`` belongs to the catalog's ``i``-th photo record),
plus ``meta.json`` with its key and checksum (:mod:`.cache_entries`); built under a file lock, verified on
every load and rebuilt, with a warning, when it does not verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.feature import canny
from torch import Tensor
from torchvision import transforms
from torchvision.transforms import functional as TF
from tqdm.auto import tqdm

from sbir_bench.data.cache_entries import (
    CACHE_FORMAT,
    key_digest,
    normalised_key,
    require_fingerprint,
    use_or_rebuild,
    write_meta,
)
from sbir_bench.data.images import IMAGENET_MEAN, IMAGENET_STD, load_image
from sbir_bench.data.records import Catalog
from sbir_bench.files import atomic_save_npy, file_lock, remove_interrupted_writes

__all__ = ["CONTOUR_SIGMA", "ContourMaps", "PhotoWithContour", "contour_map", "photo_contours"]

CONTOUR_SIGMA = 1.0  # Canny's Gaussian at the 64 px of the embedded default; scale it with the input size


def contour_map(image: Image.Image, size: int, sigma: float = CONTOUR_SIGMA) -> np.ndarray:
    """``bool [size, size]``: True where Canny finds an edge of ``image`` resized to ``size`` × ``size``
    (grey levels in [0, 1], scikit-image's default hysteresis thresholds)."""
    grey = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
    return canny(np.asarray(grey, dtype=np.float64) / 255.0, sigma=sigma)


@dataclass(frozen=True)
class ContourMaps:
    """The cached contour maps of a catalog's photos, looked up by record index."""

    packed: np.ndarray  # uint8 [n_photos, size, ceil(size / 8)], memory-mapped
    row_of_record: np.ndarray  # int64 [n_records]: the photo's row, -1 for a record that is no photo
    size: int

    def __call__(self, record: int) -> np.ndarray:
        """``bool [size, size]``: the contour map of photo record ``record``."""
        row = int(self.row_of_record[record])
        if row < 0:
            raise KeyError(f"record {record} is not a photo: it has no contour map")
        return np.unpackbits(self.packed[row], axis=1, count=self.size).astype(bool)


def _contour_key(catalog: Catalog, size: int, sigma: float) -> dict:
    return normalised_key(
        {
            "format": CACHE_FORMAT,
            "catalog": catalog.name,
            "fingerprint": catalog.fingerprint,
            "detector": "skimage.feature.canny on the grey photo resized (bilinear) to size",
            "size": size,
            "sigma": sigma,
        }
    )


def photo_contours(
    catalog: Catalog, cache_dir: str | Path, size: int, sigma: float = CONTOUR_SIGMA, progress: bool = True
) -> ContourMaps:
    """The contour map of every photo of ``catalog`` at ``size`` px, from the cache or computed into it
    (a corrupt or unreadable photo fails with a :class:`~sbir_bench.data.records.DatasetError` naming it)."""
    require_fingerprint(catalog)
    records = catalog.records
    photos = np.flatnonzero(records["domain"].to_numpy() == "photo")
    row_of_record = np.full(len(records), -1, dtype=np.int64)
    row_of_record[photos] = np.arange(len(photos))
    key = _contour_key(catalog, int(size), float(sigma))
    entry = Path(cache_dir) / "contours" / catalog.name / key_digest(key)
    data_file = entry / "contours.npy"
    with file_lock(entry / ".lock"):
        if not use_or_rebuild(data_file, key, "contour cache"):
            remove_interrupted_writes(entry)
            paths = records["path"].to_numpy()[photos]
            packed = np.zeros((len(photos), size, (size + 7) // 8), dtype=np.uint8)
            for row, path in enumerate(tqdm(paths, desc="contour maps", disable=not progress)):
                packed[row] = np.packbits(contour_map(load_image(path), size, sigma), axis=1)
            atomic_save_npy(data_file, packed)
            write_meta(data_file, key, shape=list(packed.shape))
    return ContourMaps(np.load(data_file, mmap_mode="r"), row_of_record, int(size))


class PhotoWithContour:
    """Photo record -> ``float32 [6, size, size]``: the photo (channels 0-2) and its contour map drawn as a
    sketch is, black ink on white paper in RGB (channels 3-5), both normalised as :func:`image_transform`
    normalises images.

    Evaluation: the photo resized as :func:`~sbir_bench.data.images.image_transform` resizes it. Training:
    one random resized crop (scale 0.8-1) and one horizontal flip applied to photo and contour together (the
    crop is taken from the photo at ``size`` px, where the contour map was computed).
    """

    def __init__(self, paths: list[str], contours: ContourMaps, train: bool) -> None:
        self.paths, self.contours, self.train = paths, contours, train
        size = contours.size
        self.resize = transforms.Resize((size, size))
        self.geometry = (
            transforms.Compose(
                [transforms.RandomResizedCrop(size, scale=(0.8, 1.0)), transforms.RandomHorizontalFlip()]
            )
            if train
            else None
        )
        self.normalise = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)

    def __call__(self, record: int) -> Tensor:
        photo = TF.to_tensor(self.resize(load_image(self.paths[record], mode="RGB")))
        ink = torch.from_numpy(self.contours(record)).to(torch.float32)[None]
        both = torch.cat([photo, ink])
        if self.geometry is not None:
            both = self.geometry(both)
        drawing = (1.0 - both[3:]).expand(3, -1, -1)  # ink 1 -> black on white paper
        return torch.cat([self.normalise(both[:3]), self.normalise(drawing)])
