"""Direct regression to class side information, the first zero-shot baseline of the reference table of
Yelamarthi et al., "A Zero-Shot Framework for Sketch Based Image Retrieval" (ECCV'18).

The paper describes it as a regressor from a sketch's feature to its class's side vector, images ranked by
their own projection; it gives no architecture. Our reading:

- two regressors, sketch → semantic and photo → semantic (each ``Linear → ReLU`` per ``hidden`` width, then
  a linear output layer of the side-information width; ``hidden=()`` is a linear map), trained together on
  the training pairs with a named loss to the class vector of each item's label: ``"mse"``
  (:func:`~sbir_bench.methods.components.losses.semantic_regression_loss`) or ``"cosine"``
  (:func:`~sbir_bench.methods.components.losses.semantic_cosine_loss`);
- input features are L2-normalised first (``normalise_features``), Adam, the suite's checkpoint rule (the
  epoch of best validation mAP@200 on held-out seen-class data);
- query sketches and gallery photos are embedded by their own regressor and ranked by cosine distance.

The class vectors are ``DataInfo.class_semantics`` (data.semantics), kept in a buffer so checkpoints load
alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.losses import semantic_cosine_loss, semantic_regression_loss
from sbir_bench.methods.components.mlp import dense_relu_stack
from sbir_bench.methods.components.side_information import class_semantics_of
from sbir_bench.registry import register_method

LOSSES = {"mse": semantic_regression_loss, "cosine": semantic_cosine_loss}


def regressor(in_features: int, hidden: Sequence[int], out_features: int, dropout: float) -> nn.Sequential:
    """``Linear → ReLU`` (then Dropout) per hidden width, then a linear output layer."""
    if not hidden:
        return nn.Sequential(nn.Linear(in_features, out_features))
    body = dense_relu_stack(in_features, hidden, dropout=dropout)
    tail = [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(*body, *tail, nn.Linear(hidden[-1], out_features))


@register_method("direct_regression")
class DirectRegression(RetrievalMethod):
    """Sketch and photo regressors onto the class side information; see the module docstring."""

    inputs: ClassVar[str] = "features"
    train_sampling: ClassVar[str] = "pairs"
    distance = "cosine"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        hidden: Sequence[int] = (256,),
        dropout: float = 0.0,
        loss: str = "mse",
        normalise_features: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
    ) -> None:
        hidden, eval_metrics = tuple(int(w) for w in hidden), tuple(str(m) for m in eval_metrics)
        super().__init__(data, eval_metrics=eval_metrics)
        self.save_hyperparameters(ignore=["data"])
        if loss not in LOSSES:
            raise ValueError(f"DirectRegression: unknown loss {loss!r}; one of {sorted(LOSSES)}")
        if self.data_info.feature_dim is None:
            raise ValueError("DirectRegression works on cached backbone features, but feature_dim is None")
        if isinstance(data, Mapping):  # a checkpoint being loaded: the vectors come with the state_dict
            if data.get("semantics_dim") is None:
                raise ValueError("DirectRegression: the checkpoint's data has no semantics_dim")
            vectors = torch.zeros(self.data_info.num_classes, int(data["semantics_dim"]))
        else:
            vectors = torch.from_numpy(class_semantics_of(self.data_info, self.method_name)).clone()
        self.register_buffer("class_vectors", vectors)
        feature_dim, semantics_dim = int(self.data_info.feature_dim), vectors.shape[1]
        self.sketch_regressor = regressor(feature_dim, hidden, semantics_dim, dropout)
        self.photo_regressor = regressor(feature_dim, hidden, semantics_dim, dropout)

    def _prepare(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) if self.hparams.normalise_features else x

    # --- training ------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        target = self.class_vectors[batch["label"].long()]
        loss_fn = LOSSES[self.hparams.loss]
        terms = {
            "sketch": loss_fn(self.sketch_regressor(self._prepare(batch["sketch"])), target),
            "photo": loss_fn(self.photo_regressor(self._prepare(batch["photo"])), target),
        }
        loss = terms["sketch"] + terms["photo"]
        self.check_loss(loss, terms)
        batch_size = batch["sketch"].shape[0]
        self.log_training(loss, terms, batch_size)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # --- retrieval -----------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_query(self, x: Tensor) -> Tensor:
        return self.sketch_regressor(self._prepare(x))

    @torch.no_grad()
    def embed_gallery(self, x: Tensor) -> Tensor:
        return self.photo_regressor(self._prepare(x))
