"""The untrained reference row of the ZS-SBIR table (Yelamarthi et al., ECCV'18, "Baseline").

Queries and gallery are the backbone features themselves (VGG-16 fc7 in the paper), ranked by cosine
distance: what retrieval gets with no sketch-to-photo learning at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.registry import register_method


@register_method("baseline")
class Baseline(RetrievalMethod):
    """Backbone features unchanged for queries and gallery; cosine distance; nothing to train."""

    inputs: ClassVar[str] = "features"
    train_sampling: ClassVar[str] = "none"
    distance = "cosine"

    def __init__(
        self, data: DataInfo | Mapping[str, Any], eval_metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS
    ) -> None:
        eval_metrics = tuple(str(m) for m in eval_metrics)  # plain types: checkpoints load with weights_only
        super().__init__(data, eval_metrics=eval_metrics)
        self.save_hyperparameters(ignore=["data"])

    def embed_query(self, x: Tensor) -> Tensor:
        return x

    def embed_gallery(self, x: Tensor) -> Tensor:
        return x
