"""Image loading that fails with the file's name, and the standard tensor transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError
from torchvision import transforms

from sbir_bench.data.records import DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Read an image fully and convert it to ``mode``.

    Transparent pixels (RGBA, LA or palette transparency, common in sketch PNGs) are composited on white
    first, so a transparent background reads as paper rather than black. Raises :class:`DatasetError`
    naming the file when it is missing, empty, truncated or not an image.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DatasetError(f"image file not found: {path}") from None
    if size == 0:
        raise DatasetError(f"image file is empty (0 bytes): {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decoding is lazy: truncation and corrupt data only show up here
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(paper, rgba).convert(mode)
            return image.convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"cannot read image {path}: {error}") from error


class RandomEdgeMap:
    """With probability ``p``, replace a photo by its binarised edge map: dark lines on white paper.

    Used only in the stand-in pre-training on training-class photos (:func:`pretrain_transform`):
    ImageNet features respond to object outlines, which is what lets a photo-trained backbone say
    something about sketches; a small classifier trained on a few thousand cluttered photos does not
    learn that on its own. The edge map is computed from the photo itself (PIL's FIND_EDGES on the grey
    image, inverted, pixels darker than ``threshold`` become ink), so no sketch is ever seen.
    """

    def __init__(self, p: float, threshold: int = 200) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"edge-map probability must be in [0, 1], got {p}")
        self.p, self.threshold = p, threshold

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.p == 0.0 or torch.rand(()) >= self.p:
            return image
        # PIL leaves a filter's outermost pixels unfiltered (the grey photo itself, mostly inked once
        # inverted): filter a copy padded by repeating its border and crop, so the frame is not ink
        width, height = image.size
        grey = Image.fromarray(np.pad(np.asarray(image.convert("L")), 1, mode="edge"))
        edges = ImageOps.invert(grey.filter(ImageFilter.FIND_EDGES).crop((1, 1, width + 1, height + 1)))
        return edges.point(lambda value: 255 if value > self.threshold else 0).convert("RGB")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, threshold={self.threshold})"


def _to_normalised_tensor() -> list:
    return [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def image_transform(image_size: int, train: bool) -> transforms.Compose:
    """Resize to ``image_size`` × ``image_size``, convert to a tensor, normalise with ImageNet statistics;
    when ``train``, a random resized crop (scale 0.8–1) and a horizontal flip come first."""
    if train:
        geometry = [
            transforms.RandomResizedCrop(image_size, scale=(0.8, 1.0)),
            transforms.RandomHorizontalFlip(),
        ]
    else:
        geometry = [transforms.Resize((image_size, image_size))]
    return transforms.Compose([*geometry, *_to_normalised_tensor()])


def resize_to_uint8(image_size: int) -> transforms.Compose:
    """The geometry of :func:`image_transform` (``train=False``) without the float conversion: a PIL image
    becomes a ``uint8 [3, image_size, image_size]`` tensor; :func:`normalise_uint8_batch` finishes it.

    Feature extraction decodes with this in its DataLoader workers and normalises whole batches on the
    device: a per-image ``ToTensor`` + ``Normalize`` costs more than the PNG decoding itself on the CPU,
    and a uint8 batch is a quarter of the bytes to collate, pin and copy to a GPU.
    """
    return transforms.Compose([transforms.Resize((image_size, image_size)), transforms.PILToTensor()])


def normalise_uint8_batch(batch: torch.Tensor) -> torch.Tensor:
    """``uint8 [B, 3, H, W]`` -> the float32 tensors :func:`image_transform` (``train=False``) gives,
    bit for bit: the same float32 operations in the same order (``/ 255``, ``- mean``, ``/ std``)."""
    if batch.dtype != torch.uint8 or batch.ndim != 4:
        raise ValueError(f"expected a uint8 [B, 3, H, W] batch, got {batch.dtype} {list(batch.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=batch.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=batch.device)[:, None, None]
    return batch.to(torch.float32).div_(255).sub_(mean).div_(std)


def pretrain_transform(image_size: int, edge_prob: float, grayscale_prob: float) -> transforms.Compose:
    """The stand-in pre-training augmentation: the training geometry of :func:`image_transform`, then a
    photo → edge map swap (:class:`RandomEdgeMap`) and a random grey conversion."""
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size, scale=(0.8, 1.0)),
            transforms.RandomHorizontalFlip(),
            RandomEdgeMap(edge_prob),
            transforms.RandomGrayscale(grayscale_prob),
            *_to_normalised_tensor(),
        ]
    )
