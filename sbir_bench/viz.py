"""Retrieval grids: each row a query sketch and its top-ranked gallery images, wrong classes outlined red."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps

CORRECT, WRONG, QUERY = (40, 170, 60), (220, 30, 30), (60, 90, 220)


def retrieval_grid(
    query_paths: Sequence[str],
    query_labels: Sequence[int],
    gallery_paths: Sequence[str],
    gallery_labels: Sequence[int],
    ranked: np.ndarray,
    *,
    tile: int = 64,
    border: int = 3,
) -> Image.Image:
    """Draw ``len(query_paths)`` rows: the query, then ``ranked.shape[1]`` gallery items in rank order.

    ``ranked[i]`` holds gallery indices for query ``i``; a tile whose class differs from the query's gets
    a red outline, a matching one green, the query blue.
    """
    rows, cols = len(query_paths), 1 + ranked.shape[1]
    canvas = Image.new("RGB", (cols * tile, rows * tile), "white")
    for row, (query_path, query_label) in enumerate(zip(query_paths, query_labels, strict=True)):
        tiles = [(query_path, QUERY)] + [
            (gallery_paths[g], CORRECT if gallery_labels[g] == query_label else WRONG) for g in ranked[row]
        ]
        for col, (path, colour) in enumerate(tiles):
            with Image.open(path) as image:
                thumb = ImageOps.fit(image.convert("RGB"), (tile - 2 * border, tile - 2 * border))
            framed = ImageOps.expand(thumb, border=border, fill=colour)
            canvas.paste(framed, (col * tile, row * tile))
        ImageDraw.Draw(canvas).line([(tile, row * tile), (tile, (row + 1) * tile)], fill="black", width=1)
    return canvas
