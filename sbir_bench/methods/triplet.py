"""Triplet baselines of the ZS-SBIR reference table (Yelamarthi et al., "A Zero-Shot Framework for Sketch
Based Image Retrieval", ECCV'18, Table 2: "Coarse-grained triplet", "Fine-grained triplet"), after Sangkloy
et al. ("The Sketchy Database", SIGGRAPH 2016), on cached backbone features.

A branch with shared weights (:func:`~sbir_bench.methods.components.branch.embedding_branch`) embeds the
anchor sketch s, a positive photo p⁺ and a negative photo p⁻; the loss is
``max(0, m + d(s, p⁺) − d(s, p⁻))`` with d Euclidean, averaged over the batch
(:func:`~sbir_bench.methods.components.metric_losses.triplet_margin_loss`).

- coarse-grained (``triplet_coarse``, batches ``"class_triplets"``): p⁺ a photo of the sketch's class,
  drawn afresh every epoch, p⁻ a photo of another class;
- fine-grained (``triplet_fine``, batches ``"fine_triplets"``): p⁺ the sketch's own photo, p⁻ any other
  training photo, which may share the sketch's class.

Choices of this suite (the papers' networks are end-to-end CNNs; the table's baselines are trained on VGG
features with no published head): ``hidden`` Linear-ReLU layers (BatchNorm optional, off: see
``shared_branch.py``) then a linear ``embedding_dim`` layer, Glorot-initialised, one branch shared by
sketches and photos (Sangkloy et al. also train unshared branches); Adam; margin, sizes, learning rate and
epochs tuned on validation mAP@200 of the embedded default; the checkpoint tested is the epoch of best
validation mAP@200 (the suite's rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.components.metric_losses import (
    check_positive,
    euclidean_distance,
    triplet_margin_loss,
)
from sbir_bench.methods.shared_branch import SharedBranchMethod
from sbir_bench.registry import register_method


@register_method("triplet_coarse")
class TripletCoarse(SharedBranchMethod):
    """Coarse-grained triplet network of the ZS-SBIR table: class-level positives (module docstring)."""

    train_sampling: ClassVar[str] = "class_triplets"
    loss_name = "triplet loss"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        hidden: Sequence[int] = (512,),
        embedding_dim: int = 128,
        batch_norm: bool = False,
        margin: float = 1.0,
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

    def loss_terms(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        sketch = self.branch(batch["sketch"])
        positive = euclidean_distance(sketch, self.branch(batch["positive"]))
        negative = euclidean_distance(sketch, self.branch(batch["negative"]))
        loss = triplet_margin_loss(positive, negative, margin=self.hparams.margin)
        return loss, {"d_positive": positive.detach().mean(), "d_negative": negative.detach().mean()}


@register_method("triplet_fine")
class TripletFine(TripletCoarse):
    """Fine-grained triplet network of the ZS-SBIR table: the positive is the sketch's own photo, the
    negative any other training photo (module docstring). Same network, loss and hyper-parameters."""

    train_sampling: ClassVar[str] = "fine_triplets"


__all__ = ["TripletCoarse", "TripletFine"]
