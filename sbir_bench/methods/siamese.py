"""Siamese baselines of the ZS-SBIR reference table (Yelamarthi et al., "A Zero-Shot Framework for Sketch
Based Image Retrieval", ECCV'18, Table 2: "Siamese-1", "Siamese-2"), on cached backbone features.

Two branches with shared weights (:func:`~sbir_bench.methods.components.branch.embedding_branch`) embed a
sketch and a photo; d is the Euclidean distance between the embeddings; y = 1 for a pair of the same class.

- Siamese-1: the contrastive loss ``y·d² + (1 − y)·max(0, m − d)²`` (Hadsell, Chopra & LeCun, CVPR 2006);
- Siamese-2: the energy form of Chopra, Hadsell & LeCun (CVPR 2005),
  ``y·(2/Q)·d² + (1 − y)·2Q·exp(−2.77·d/Q)`` (:mod:`~sbir_bench.methods.components.metric_losses`).

Choices of this suite (the paper gives none of them):

- pairs: every training item of a ``"class_triplets"`` batch gives one positive pair (sketch, a random
  photo of its class, y = 1) and one negative pair (sketch, a photo of another class, y = [negative label
  == label] = 0): balanced positive and negative pairs, the loss averaged over the 2B pairs;
- the branch: ``hidden`` Linear-ReLU layers (BatchNorm optional, off: see ``shared_branch.py``) then a
  linear ``embedding_dim`` layer, Glorot-initialised; Adam; sizes, margin m, Q, learning rate and epochs
  tuned on validation mAP@200 of the embedded default (``configs/method/siamese{1,2}.yaml``);
- Q: the 2005 paper's Q is the upper bound of the energy (a reimplementation on 4096-d VGG features used
  Q = 500). Here the energy is the distance between learned embeddings, whose scale Q itself sets: a
  negative pair's force 5.54·exp(−2.77·d/Q) fades past d ≈ Q/2.77 and a positive pair's is 4d/Q, so the
  default Q is sized to the distances of the default embedding (see the config);
- the checkpoint tested is the epoch of best validation mAP@200 (the suite's rule for trained methods).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.components.metric_losses import (
    check_positive,
    chopra_energy_loss,
    contrastive_loss,
    euclidean_distance,
)
from sbir_bench.methods.shared_branch import SharedBranchMethod
from sbir_bench.registry import register_method


class _SiameseMethod(SharedBranchMethod):
    """A shared-weight Siamese network trained on the balanced pairs of a triplet batch (module docstring)."""

    train_sampling: ClassVar[str] = "class_triplets"

    def pair_loss(self, distance: Tensor, same: Tensor) -> Tensor:
        raise NotImplementedError

    def pairs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Distances and same-class flags of the 2B pairs: B (sketch, positive), then B (sketch, negative)."""
        sketch = self.branch(batch["sketch"])
        distance = torch.cat(
            [
                euclidean_distance(sketch, self.branch(batch["positive"])),
                euclidean_distance(sketch, self.branch(batch["negative"])),
            ]
        )
        same = torch.cat(
            [batch["positive_label"] == batch["label"], batch["negative_label"] == batch["label"]]
        )
        return distance, same

    def loss_terms(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        distance, same = self.pairs(batch)
        loss = self.pair_loss(distance, same)
        d = distance.detach()
        return loss, {"d_same": d[same].mean(), "d_other": d[~same].mean()}


@register_method("siamese1")
class Siamese1(_SiameseMethod):
    """Siamese-1 of the ZS-SBIR table: contrastive loss with margin ``margin`` (module docstring)."""

    loss_name = "contrastive loss"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        hidden: Sequence[int] = (512,),
        embedding_dim: int = 128,
        batch_norm: bool = False,
        margin: float = 5.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        # plain values, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        hidden, eval_metrics = tuple(int(w) for w in hidden), tuple(str(m) for m in eval_metrics)
        margin, lr, weight_decay = float(margin), float(lr), float(weight_decay)
        check_positive("margin", margin)
        super().__init__(
            data,
            hidden=hidden,
            embedding_dim=int(embedding_dim),
            batch_norm=bool(batch_norm),
            lr=lr,
            weight_decay=weight_decay,
            eval_metrics=eval_metrics,
        )
        self.save_hyperparameters(ignore=["data"])

    def pair_loss(self, distance: Tensor, same: Tensor) -> Tensor:
        return contrastive_loss(distance, same, margin=self.hparams.margin)


@register_method("siamese2")
class Siamese2(_SiameseMethod):
    """Siamese-2 of the ZS-SBIR table: the energy loss of Chopra et al. (2005) with constant ``q``."""

    loss_name = "energy loss"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        hidden: Sequence[int] = (512,),
        embedding_dim: int = 128,
        batch_norm: bool = False,
        q: float = 10.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        hidden, eval_metrics = tuple(int(w) for w in hidden), tuple(str(m) for m in eval_metrics)
        q, lr, weight_decay = float(q), float(lr), float(weight_decay)
        check_positive("q", q)
        super().__init__(
            data,
            hidden=hidden,
            embedding_dim=int(embedding_dim),
            batch_norm=bool(batch_norm),
            lr=lr,
            weight_decay=weight_decay,
            eval_metrics=eval_metrics,
        )
        self.save_hyperparameters(ignore=["data"])

    def pair_loss(self, distance: Tensor, same: Tensor) -> Tensor:
        return chopra_energy_loss(distance, same, q=self.hparams.q)


__all__ = ["Siamese1", "Siamese2"]
