"""Bring-your-own embeddings: score ``.npz`` files produced anywhere (``sbir-bench evaluate``).

A file holds ``embeddings`` (float [N, d]; or bool/uint8 bits [N, bits] for Hamming) and ``labels`` ([N],
integers or strings). String labels are mapped to integers consistently across the query and gallery
files, so a query is relevant to the gallery items carrying the same string. ``triplet_acc`` reads its
annotated triplets from an ``.npy`` file: int [T, 3] rows (query row, positive gallery row, negative
gallery row).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sbir_bench.evaluation.engine import DEFAULT_METRICS, evaluate
from sbir_bench.evaluation.metrics import parse_metric

REQUIRED_KEYS = ("embeddings", "labels")


class EmbeddingFileError(ValueError):
    """A malformed embeddings file; the message names the file and the problem."""


def load_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [N, d], labels [N]) from an ``.npz`` file, validated; EmbeddingFileError otherwise."""
    path = Path(path)

    def fail(problem: str) -> EmbeddingFileError:
        return EmbeddingFileError(f"{path}: {problem}")

    if not path.is_file():
        raise fail("no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise fail(f"cannot be read as .npz ({error})") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise fail("not an .npz archive (write it with numpy.savez(path, embeddings=..., labels=...))")
    with archive:
        missing = [key for key in REQUIRED_KEYS if key not in archive.files]
        if missing:
            raise fail(f"missing key(s) {missing}; found {sorted(archive.files)}")
        try:
            embeddings, labels = archive["embeddings"], archive["labels"]
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise fail(f"cannot be read ({error})") from error
    if embeddings.dtype.kind not in "fb" and embeddings.dtype != np.uint8:
        raise fail(f"embeddings must be float, or bool/uint8 bits; got dtype {embeddings.dtype}")
    if embeddings.ndim != 2:
        raise fail(f"embeddings must be 2-D [N, d], got shape {embeddings.shape}")
    if embeddings.size == 0:
        raise fail(f"embeddings are empty (shape {embeddings.shape})")
    if embeddings.dtype.kind == "f" and not np.isfinite(embeddings).all():
        raise fail("embeddings contain NaN or inf")
    if labels.dtype.kind not in "iuU":
        raise fail(f"labels must be integers or strings, got dtype {labels.dtype}")
    if labels.ndim != 1 or len(labels) != len(embeddings):
        raise fail(f"labels must be 1-D with one per embedding: {labels.shape} for {len(embeddings)} rows")
    return embeddings, labels


def evaluate_files(
    queries_path: str | Path,
    gallery_path: str | Path,
    *,
    metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
    distance: str = "cosine",
    triplets_path: str | Path | None = None,
    class_mean: bool = False,
) -> dict[str, float]:
    """Metrics of the query file against the gallery file (see :func:`evaluate`)."""
    queries, query_labels = load_embeddings(queries_path)
    gallery, gallery_labels = load_embeddings(gallery_path)
    if (query_labels.dtype.kind == "U") != (gallery_labels.dtype.kind == "U"):
        raise EmbeddingFileError(
            f"{queries_path} and {gallery_path}: one file has string labels and the other integers"
        )
    if queries.shape[1] != gallery.shape[1]:
        raise EmbeddingFileError(
            f"{queries_path} has {queries.shape[1]}-dimensional embeddings "
            f"but {gallery_path} has {gallery.shape[1]}"
        )
    if query_labels.dtype.kind == "U":
        _, codes = np.unique(np.concatenate([query_labels, gallery_labels]), return_inverse=True)
        query_labels, gallery_labels = codes[: len(query_labels)], codes[len(query_labels) :]
    triplets = load_triplets(triplets_path) if triplets_path is not None else None
    try:
        return evaluate(
            queries,
            query_labels,
            gallery,
            gallery_labels,
            distance=distance,
            metrics=metrics,
            triplets=triplets,
            class_mean=class_mean,
        )
    except ValueError as error:
        if triplets is not None and str(error).startswith("triplet"):
            raise EmbeddingFileError(f"{triplets_path}: {error}") from error
        raise


def load_triplets(path: str | Path) -> np.ndarray:
    """int [T, 3] triplets from an ``.npy`` file; EmbeddingFileError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise EmbeddingFileError(f"{path}: no such file")
    try:
        triplets = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise EmbeddingFileError(f"{path}: cannot be read as .npy ({error})") from error
    if not isinstance(triplets, np.ndarray) or triplets.ndim != 2 or triplets.shape[1] != 3:
        raise EmbeddingFileError(
            f"{path}: triplets must be an array [T, 3], got {getattr(triplets, 'shape', '?')}"
        )
    if triplets.dtype.kind not in "iu":
        raise EmbeddingFileError(f"{path}: triplets must be integers, got dtype {triplets.dtype}")
    return triplets


def json_ready(result: dict[str, float], metrics: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``result`` for a JSON file: undefined (NaN) values become null, and ``queries_left_out`` gives, for
    each metric that leaves queries without relevant items out of its mean, how many it left out."""
    excluded = int(result.get("n_queries_without_relevant", 0))
    payload: dict[str, Any] = {
        key: None if isinstance(value, float) and math.isnan(value) else value
        for key, value in result.items()
    }
    payload["queries_left_out"] = {
        name: excluded for name in metrics if parse_metric(name).undefined_without_relevant
    }
    return payload
