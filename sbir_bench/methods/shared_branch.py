"""Common ground of the metric-learning baselines of the ZS-SBIR reference table (Yelamarthi et al.,
ECCV'18, Table 2): one embedding branch with shared weights over the backbone features of sketches and
photos (:func:`~sbir_bench.methods.components.branch.embedding_branch`), trained on triplet batches
``{"sketch", "positive", "negative", "label", "positive_label", "negative_label"}`` with Adam, compared
with the Euclidean distance. Subclasses (``siamese.py``, ``triplet.py``) give the loss.
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

TRIPLET_KEYS = ("sketch", "positive", "negative", "label", "positive_label", "negative_label")


class SharedBranchMethod(RetrievalMethod):
    """A shared-weight branch f: ``embed_query = f(sketch feature)``, ``embed_gallery = f(photo feature)``.

    ``batch_norm`` (off by default) puts a BatchNorm1d after each hidden ReLU. One branch embeds two domains,
    so BN's running statistics, used at test time, are those of a sketch/photo mixture that neither side's
    inputs follow alone: on the embedded default it lowered validation mAP@200 from 0.154 to 0.113
    (triplet_coarse, seed 0).

    Subclasses implement :meth:`loss_terms` and call ``self.save_hyperparameters(ignore=["data"])`` after
    this ``__init__`` (their own arguments are the hyper-parameters).
    """

    inputs: ClassVar[str] = "features"
    train_sampling: ClassVar[str] = "class_triplets"
    distance = "euclidean"
    loss_name: ClassVar[str] = "loss"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        hidden: Sequence[int],
        embedding_dim: int,
        batch_norm: bool,
        lr: float,
        weight_decay: float,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        super().__init__(data, eval_metrics=tuple(str(m) for m in eval_metrics))
        if self.data_info.feature_dim is None:
            raise ValueError(
                f"{type(self).__name__} works on cached backbone features, but feature_dim is None"
            )
        self.branch = embedding_branch(
            int(self.data_info.feature_dim), tuple(hidden), embedding_dim, batch_norm=batch_norm
        )

    # --- the loss ------------------------------------------------------------------------------------
    def loss_terms(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss of ``batch`` and diagnostics to log beside it (detached scalars)."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        missing = [key for key in TRIPLET_KEYS if key not in batch]
        if missing:
            raise KeyError(
                f"{self.method_name} trains on {self.train_sampling!r} batches with keys {TRIPLET_KEYS}; "
                f"this batch lacks {missing}"
            )
        loss, diagnostics = self.loss_terms(batch)
        self.check_loss(loss, {self.loss_name: loss, **diagnostics})
        batch_size = batch["sketch"].shape[0]
        self.log_training(loss, diagnostics, batch_size)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # --- retrieval -----------------------------------------------------------------------------------
    def embed_query(self, x: Tensor) -> Tensor:
        return self.branch(x)

    def embed_gallery(self, x: Tensor) -> Tensor:
        return self.branch(x)


__all__ = ["TRIPLET_KEYS", "SharedBranchMethod"]
