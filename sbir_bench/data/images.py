"""Image loading that fails with the file's name, and the standard tensor transforms."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError
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
    return transforms.Compose(
        [*geometry, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
