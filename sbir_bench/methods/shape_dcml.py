"""Deep Correlated Metric Learning for sketch-based 3D shape retrieval (Dai, Xie, Fang, Wang, Fang, AAAI'17).

Two deep non-linear maps, f_s for sketches and f_t for shapes, trained jointly with

    L = α·L_d + (1 − α)·(L1c + L2c) + λ·(‖W_s‖² + ‖W_t‖²)

(:mod:`~sbir_bench.methods.components.correlated_metric`): L_d the within-domain contrastive loss (same-class
squared distance down, different-class distance pushed beyond margin h), L1c the same form across the
domains, L2c the distance-structure term R = (‖f_s(x_i) − f_s(x_j)‖ − ‖f_t(y_i) − f_t(y_j)‖)². Pairs are
formed within each class batch (C classes × n sketches + C × m shapes). Retrieval ranks shapes by Euclidean
distance to the sketch's embedding.

The shape map is a per-view MLP shared by the V views of a shape (its rendered views' backbone features),
pooled with learned softmax view weights (``pooling: softmax_weights``, one logit per view position) or the
plain mean; the sketch map an MLP of the same widths. The authors' code: 4096 → 2000 → 2000 → 1000 → 500 →
256 on 12 views, margin 20, lr 1e-3 (``configs/method/dcml_paper.yaml``).

Deviations (README row): inputs are the suite's backbone features (sketch feature, per-view features) rather
than the authors' CNN features; "maximise R" for different-class pairs is bounded by the margin hinge
``max(0, h − |D_s − D_t|)²`` (unbounded otherwise); every term is a mean over its pairs instead of a sum;
L2c couples the r-th sketch of a class with the (r mod m)-th shape of the class in the batch; the hidden
layers are ReLU and the last layer linear; Adam; α = 0.5 and λ are ours (not published); the view count
for learned weights comes from the data (``num_views`` only when the data does not say, e.g. a checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.correlated_metric import (
    correlation_loss,
    dcml_total_loss,
    discriminative_loss,
    weight_penalty,
)
from sbir_bench.methods.components.metric_losses import check_positive
from sbir_bench.methods.components.multiview_pooling import MultiViewEncoder, mlp, resolve_num_views
from sbir_bench.registry import register_method


@register_method("dcml")
class DCML(RetrievalMethod):
    """DCML of Dai et al. (AAAI'17) on sketch and per-view shape features; see the module docstring."""

    inputs: ClassVar[str] = "view_features"
    train_sampling: ClassVar[str] = "class_batches"
    class_batch: ClassVar[tuple[int, int, int]] = (8, 4, 2)
    distance = "euclidean"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        widths: Sequence[int] = (256, 64),
        pooling: str = "mean",
        num_views: int = 0,
        margin: float = 5.0,
        alpha: float = 0.5,
        weight_decay: float = 1e-4,
        lr: float = 1e-3,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        # plain values, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        widths, eval_metrics = tuple(int(w) for w in widths), tuple(str(m) for m in eval_metrics)
        margin, alpha, weight_decay, lr = float(margin), float(alpha), float(weight_decay), float(lr)
        super().__init__(data, eval_metrics=eval_metrics)
        num_views = resolve_num_views(num_views, self.data_info.num_views)
        self.save_hyperparameters(ignore=["data"])
        self.hparams["num_views"] = num_views  # the count the view weights are built for, for the checkpoint
        check_positive("margin", margin)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"dcml: alpha must lie in [0, 1], got {alpha}")
        if weight_decay < 0:
            raise ValueError(f"dcml: weight_decay (λ) must be >= 0, got {weight_decay}")
        if self.data_info.feature_dim is None:
            raise ValueError("dcml works on backbone view features, but DataInfo.feature_dim is None")
        feature_dim = int(self.data_info.feature_dim)
        self.sketch_net = mlp(feature_dim, widths)
        self.shape_net = MultiViewEncoder(feature_dim, widths, pooling=pooling, num_views=num_views)

    # --- training ------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        sketch_labels, shape_labels = batch["sketch_label"].long(), batch["shape_label"].long()
        sketch, shape = self.sketch_net(batch["sketch"]), self.shape_net(batch["shape"])
        margin = self.hparams.margin
        l_d = discriminative_loss(sketch, sketch_labels, shape, shape_labels, margin)
        l1c, l2c = correlation_loss(sketch, sketch_labels, shape, shape_labels, margin)
        penalty = weight_penalty([self.sketch_net, self.shape_net])
        terms = {"discriminative": l_d, "cross_domain": l1c, "distance_structure": l2c, "weights": penalty}
        loss = dcml_total_loss(
            l_d, l1c + l2c, penalty, alpha=self.hparams.alpha, weight_decay=self.hparams.weight_decay
        )
        self.check_loss(loss, terms)
        self.log_training(loss, terms, batch_size=len(sketch_labels))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # --- retrieval -----------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_query(self, x: Tensor) -> Tensor:
        return self.sketch_net(x)

    @torch.no_grad()
    def embed_gallery(self, x: Tensor) -> Tensor:
        return self.shape_net(x)


__all__ = ["DCML"]
