"""What a run costs, measured on its own test embeddings: bytes per gallery item and query time.

The leaderboard's efficiency block (leaderboard/README.md) tables these beside the training time
(``RunRecord.train_seconds``, the wall time of ``trainer.fit``; 0 for an untrained method) and names the
hardware they were measured on (``RunRecord.hardware``: CPU model, torch threads, GPUs).

- Embedding: what one gallery item is stored as (``"64-bit code"``, ``"512 × float32"``), and the bytes it
  takes, from its dimension and dtype; for a Hamming-distance method one bit per code dimension
  (dimension / 8), as its codes are stored packed (:func:`sbir_bench.evaluation.search.pack_codes`),
  whatever dtype the method emits them in.
- Query time: the wall time of the evaluation engine's search plus metrics
  (:func:`sbir_bench.evaluation.engine.evaluate`) of all test queries against the test gallery, in seconds
  per 1,000 queries. It excludes embedding the queries (the backbone and the method's forward pass).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the leaderboard reads the names below without importing torch
    from torch import Tensor

EFFICIENCY_KEY = "efficiency"  # RunRecord.extra[EFFICIENCY_KEY]: the measurements below
EMBEDDING_BYTES = "embedding_bytes"
QUERY_SECONDS_PER_1K = "query_seconds_per_1k"
EMBEDDING = "embedding"


def embedding_description(gallery: Tensor, distance: str) -> str:
    """What a gallery item is stored as: ``"64-bit code"`` (Hamming), else ``"512 × float32"`` (with the
    ``m × d`` of a multi-vector embedding)."""
    shape = " × ".join(str(size) for size in gallery.shape[1:]) or "1"
    if distance == "hamming":
        return f"{gallery[0].numel()}-bit code"
    return f"{shape} × {str(gallery.dtype).removeprefix('torch.')}"


def embedding_bytes(gallery: Tensor, distance: str) -> float:
    """Bytes per gallery item: ``dim * element size``, or ``dim / 8`` for Hamming codes (packed bits).

    A multi-vector embedding [G, m, d] counts all of its ``m * d`` values.
    """
    values = gallery[0].numel() if gallery.ndim > 1 else 1
    if distance == "hamming":
        return values / 8
    return float(values * gallery.element_size())


def query_seconds_per_1k(
    queries: Tensor,
    query_labels: Tensor,
    gallery: Tensor,
    gallery_labels: Tensor,
    *,
    distance: str | Callable,
    metrics: Sequence[str],
) -> float:
    """Seconds the engine takes to rank the gallery for, and score, 1,000 queries (measured on all;
    ``triplet_acc``, scored on annotated triplets rather than on rankings, is left out)."""
    from sbir_bench.evaluation.engine import evaluate
    from sbir_bench.evaluation.metrics import parse_metric

    ranked = [name for name in metrics if not parse_metric(name).on_triplets]
    started = time.perf_counter()
    evaluate(queries, query_labels, gallery, gallery_labels, distance=distance, metrics=ranked)
    return (time.perf_counter() - started) / max(len(queries), 1) * 1000


def measure(
    embeddings: dict[str, tuple[Tensor, Tensor]], *, distance: str | Callable, metrics: Sequence[str]
) -> dict:
    """The efficiency entry of a run's record from its test embeddings (``RetrievalMethod.last_embeddings``);
    empty when there are none. ``distance``: a name, or a method's own score function (stored as floats)."""
    if "query" not in embeddings or "gallery" not in embeddings:
        return {}
    (queries, query_labels), (gallery, gallery_labels) = embeddings["query"], embeddings["gallery"]
    seconds = query_seconds_per_1k(
        queries, query_labels, gallery, gallery_labels, distance=distance, metrics=metrics
    )
    name = distance if isinstance(distance, str) else "custom"
    return {
        EMBEDDING: embedding_description(gallery, name),
        EMBEDDING_BYTES: embedding_bytes(gallery, name),
        QUERY_SECONDS_PER_1K: round(seconds, 6),
        "queries": len(queries),
        "gallery": len(gallery),
    }


def hardware_description(hardware: dict[str, Any], accelerator: str | None = None) -> str:
    """One line naming what a record was measured on: CPU model, torch threads, and the GPUs when the run
    used CUDA (``accelerator``: ``RunRecord.extra["accelerator"]``). Records written before the CPU model
    and threads were recorded give the machine and its CPU count."""
    cpu = hardware.get("cpu_model")
    threads = hardware.get("torch_threads")
    if cpu:
        text = f"{cpu}, {threads} torch thread{'s' if threads != 1 else ''}"
    else:
        cpus = hardware.get("cpus_available") or hardware.get("cpu_count")
        text = (
            f"{hardware.get('machine') or 'a machine'} with {cpus} CPUs (CPU model and threads not recorded)"
        )
    gpus = hardware.get("cuda_devices") or []
    if accelerator == "CUDAAccelerator" and gpus:
        text += ", GPU " + " + ".join(sorted(set(gpus)))
    return text
