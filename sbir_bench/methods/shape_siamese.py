"""Siamese networks for sketch-based 3D shape retrieval (Wang, Kang & Li, "Sketch-based 3D Shape Retrieval
using Convolutional Neural Networks", CVPR 2015).

Two Siamese networks: one embeds sketches (f_s), one embeds the rendered views of a shape (f_v); each is
applied with shared weights to both items of a pair. A shape is seen from 2 fixed view directions only
(``views = "two"``: the DataModule renders the dataset's models with the renderer's ``two`` recipe). The
loss (:mod:`~sbir_bench.methods.components.shape_siamese`) is, per pair with D = ‖f(a) − f(b)‖,
``L = (1 − y)·α·D² + y·β·e^{γD}``, α = 1/C_p, β = C_n, γ = −2.77/C_n, C_p = 0.2, C_n = 10 (eq. 1), y = 0 for
a similar pair, summed over the sketch–sketch, view–view and sketch–view terms (eq. 2). Retrieval ranks a
shape by the smallest Euclidean distance from the sketch's embedding to either of its views' embeddings
(the paper's matching): ``distance = "custom"``, ``embed_gallery`` returns the V view embeddings flattened,
``[B, V·k]``, and :meth:`Siamese3D.pairwise_distance` takes the minimum over views.

Where this implementation departs from the paper:

- inputs: the suite's cached backbone features of sketches and views (``inputs = "view_features"``), each
  network an MLP (``hidden`` Linear-ReLU layers, then a linear ``embedding_dim`` layer, Glorot-initialised),
  where the paper trains two CNNs end to end on the raw 100×100 images;
- pairs: all pairs within a class batch (C classes × n sketches, C × m shapes × 2 views): every unordered
  sketch–sketch and view–view pair (two views of one shape form a similar pair) and every sketch–view pair;
  each term is the mean over its similar pairs plus the mean over its dissimilar pairs, the expected loss of
  a balanced sample of pairs (the paper draws pairs at random; in a class batch most pairs are dissimilar);
- optimiser: Adam (the paper uses SGD in Caffe); sizes, learning rate and epochs are CPU-sized (see
  ``configs/method/siamese3d.yaml``); the checkpoint tested is the epoch of best validation mAP (the suite's
  rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.branch import embedding_branch
from sbir_bench.methods.components.metric_losses import check_positive
from sbir_bench.methods.components.shape_batches import check_class_batch, view_stack
from sbir_bench.methods.components.shape_siamese import (
    WANG_CN,
    WANG_CP,
    balanced_pair_loss,
    batch_pairs,
    min_view_distance,
)
from sbir_bench.registry import register_method


@register_method("siamese3d")
class Siamese3D(RetrievalMethod):
    """Wang et al.'s two Siamese networks (sketches; 2 views) on backbone features (module docstring)."""

    inputs: ClassVar[str] = "view_features"
    train_sampling: ClassVar[str] = "class_batches"
    views: ClassVar[str | None] = "two"
    class_batch: ClassVar[tuple[int, int, int]] = (8, 4, 2)
    distance = "custom"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        hidden: Sequence[int] = (512,),
        embedding_dim: int = 64,
        cp: float = WANG_CP,
        cn: float = WANG_CN,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        # plain values, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        hidden, eval_metrics = tuple(int(w) for w in hidden), tuple(str(m) for m in eval_metrics)
        cp, cn, lr, weight_decay = float(cp), float(cn), float(lr), float(weight_decay)
        super().__init__(data, eval_metrics=eval_metrics)
        self.save_hyperparameters(ignore=["data"])
        check_positive("cp", cp)
        check_positive("cn", cn)
        if self.data_info.feature_dim is None:
            raise ValueError(f"{self.method_name} works on backbone view features, but feature_dim is None")
        dim = int(self.data_info.feature_dim)
        self.sketch_net = embedding_branch(dim, hidden, int(embedding_dim))
        self.view_net = embedding_branch(dim, hidden, int(embedding_dim))

    # --- the loss ------------------------------------------------------------------------------------
    def loss_terms(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Eq. 2: the sketch–sketch, view–view and sketch–view terms and their sum."""
        check_class_batch(batch, self.method_name)
        sketch = self.sketch_net(batch["sketch"])
        shape = view_stack(batch["shape"], self.method_name)
        views = self.view_net(shape).flatten(0, 1)  # [M·V, k], the views of each shape in turn
        view_labels = batch["shape_label"].repeat_interleave(shape.shape[1])
        constants = {"cp": self.hparams.cp, "cn": self.hparams.cn}
        terms = {
            "sketch_sketch": balanced_pair_loss(batch_pairs(sketch, batch["sketch_label"]), **constants),
            "view_view": balanced_pair_loss(batch_pairs(views, view_labels), **constants),
            "sketch_view": balanced_pair_loss(
                batch_pairs(sketch, batch["sketch_label"], views, view_labels), **constants
            ),
        }
        return sum(terms.values()), terms

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, terms = self.loss_terms(batch)
        terms = {name: value.detach() for name, value in terms.items()}
        self.check_loss(loss.detach(), terms)
        self.log_training(loss, terms, batch_size=batch["sketch"].shape[0])
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # --- retrieval -----------------------------------------------------------------------------------
    def embed_query(self, x: Tensor) -> Tensor:
        return self.sketch_net(x)

    def embed_gallery(self, x: Tensor) -> Tensor:
        """The embeddings of a shape's V views, flattened: ``[B, V, d] → [B, V·k]``."""
        return self.view_net(view_stack(x, self.method_name)).flatten(1)

    def pairwise_distance(self, queries: Tensor, gallery: Tensor) -> Tensor:
        """Smallest Euclidean distance from each query to any view of each shape:
        ``[Q, k], [G, V·k] → [Q, G]``."""
        k = queries.shape[1]
        if gallery.shape[1] % k:
            raise ValueError(
                f"{self.method_name}: gallery embeddings of width {gallery.shape[1]} are not V views of the "
                f"{k}-d query embedding"
            )
        return min_view_distance(queries, gallery.reshape(len(gallery), -1, k))


__all__ = ["Siamese3D"]
