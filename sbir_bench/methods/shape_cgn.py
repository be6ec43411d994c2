"""Cross-modal guidance network for sketch-based 3D shape retrieval (Dai & Liang, ICME'20).

A teacher learns shape features, then guides a sketch student into its feature space:

1. teacher stage (epochs ``0 .. teacher_epochs − 1``): the multi-view shape network (a per-view MLP on the
   rendered views' backbone features, views average-pooled) trained with AM-softmax (cosine margin; s = 15,
   m = 0.35 as in the same lab's code) on the shapes of each class batch;
2. centre epoch (epoch ``teacher_epochs``): the teacher is no longer updated; the class centres are the mean
   of its L2-normalised features over every training shape drawn in that epoch (a buffer, saved with the
   checkpoint); no parameter changes in this epoch;
3. student stage (the remaining epochs): the sketch network trained with the guidance loss
   ``L_G = −cos(s, c_y) + λ·Σ_{c≠y} cos(s, c_c)`` (:mod:`~sbir_bench.methods.components.cross_modal_guidance`)
   on the sketches of each class batch.

All three run in one Lightning fit (one Adam optimiser; a network with no gradient in a stage is not
stepped). Retrieval: cosine between student sketch features and teacher shape features. Validation scores
of the teacher stage reflect an untrained student; the tested checkpoint is the best validation epoch, so a
student-stage one.

Deviations (README row): backbone features (sketch, per-view) and MLPs instead of the paper's CNNs; the
centres are taken over the shapes the class-batch sampler draws in one epoch (with the sampler's repeats)
rather than one pass over the training set, and a class with no shape drawn there has no centre (its
sketches are left out of L_G, and it is not among the "other" centres); λ and the widths are ours; the sign
convention of L_G as in the module docstring of the loss file; with fewer than ``teacher_epochs + 2``
epochs the student is not trained (a warning says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.cross_modal_guidance import (
    am_softmax_loss,
    class_mean_sums,
    cosine_logits,
    guidance_loss,
)
from sbir_bench.methods.components.multiview_pooling import MultiViewEncoder, mlp
from sbir_bench.registry import register_method

STAGES = ("teacher", "centres", "student")


@register_method("cgn")
class CGN(RetrievalMethod):
    """Cross-modal guidance network of Dai & Liang (ICME'20); see the module docstring."""

    inputs: ClassVar[str] = "view_features"
    train_sampling: ClassVar[str] = "class_batches"
    class_batch: ClassVar[tuple[int, int, int]] = (8, 4, 2)
    distance = "cosine"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        widths: Sequence[int] = (256, 128),
        scale: float = 15.0,
        margin: float = 0.35,
        guidance_weight: float = 0.05,
        teacher_epochs: int = 10,
        lr: float = 1e-3,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        # plain values, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        widths, eval_metrics = tuple(int(w) for w in widths), tuple(str(m) for m in eval_metrics)
        scale, margin, guidance_weight, lr = float(scale), float(margin), float(guidance_weight), float(lr)
        super().__init__(data, eval_metrics=eval_metrics)
        self.save_hyperparameters(ignore=["data"])
        if scale <= 0 or not 0 <= margin < 1:
            raise ValueError(f"cgn: AM-softmax needs scale > 0 and 0 <= margin < 1, got {scale}, {margin}")
        if guidance_weight < 0 or teacher_epochs < 1:
            raise ValueError(
                f"cgn: need guidance_weight >= 0 and teacher_epochs >= 1, got {guidance_weight}, "
                f"{teacher_epochs}"
            )
        if self.data_info.feature_dim is None:
            raise ValueError("cgn works on backbone view features, but DataInfo.feature_dim is None")
        feature_dim, num_classes = int(self.data_info.feature_dim), self.data_info.num_classes
        self.teacher = MultiViewEncoder(feature_dim, widths, pooling="mean")
        self.class_weights = nn.Parameter(torch.randn(num_classes, widths[-1]) * 0.01)  # AM-softmax's w_c
        self.student = mlp(feature_dim, widths)
        self.register_buffer("centre_sums", torch.zeros(num_classes, widths[-1]))
        self.register_buffer("centre_counts", torch.zeros(num_classes))

    # --- stages --------------------------------------------------------------------------------------
    def stage(self, epoch: int) -> str:
        """ "teacher", "centres" or "student" for a training epoch (module docstring)."""
        teacher_epochs = self.hparams.teacher_epochs
        return STAGES[0] if epoch < teacher_epochs else STAGES[1] if epoch == teacher_epochs else STAGES[2]

    @property
    def class_centres(self) -> tuple[Tensor, Tensor]:
        """(centres [K, k], known [K] bool): the normalised mean teacher feature of each class with one."""
        known = self.centre_counts > 0
        centres = F.normalize(self.centre_sums / self.centre_counts.clamp(min=1).unsqueeze(1), dim=-1)
        return centres, known

    def on_fit_start(self) -> None:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs < self.hparams.teacher_epochs + 2:
            rank_zero_warn(
                f"cgn: max_epochs={self.trainer.max_epochs} leaves no student epoch (teacher_epochs="
                f"{self.hparams.teacher_epochs}, then one centre epoch): the sketch network stays untrained"
            )

    def on_train_epoch_start(self) -> None:
        if self.stage(self.current_epoch) == "centres":  # a resumed centre epoch starts from zero again
            self.centre_sums.zero_()
            self.centre_counts.zero_()

    # --- training ------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        stage = self.stage(self.current_epoch)
        if stage == "centres":
            with torch.no_grad():
                sums, counts = class_mean_sums(
                    self.teacher(batch["shape"]), batch["shape_label"].long(), self.data_info.num_classes
                )
            self.centre_sums += sums
            self.centre_counts += counts
            return None  # nothing is optimised in this epoch
        if stage == "teacher":
            labels = batch["shape_label"].long()
            cosines = cosine_logits(self.teacher(batch["shape"]), self.class_weights)
            loss = am_softmax_loss(cosines, labels, scale=self.hparams.scale, margin=self.hparams.margin)
            terms = {"am_softmax": loss}
        else:
            labels = batch["sketch_label"].long()
            centres, known = self.class_centres
            loss = guidance_loss(
                self.student(batch["sketch"]), labels, centres, known, weight=self.hparams.guidance_weight
            )
            terms = {"guidance": loss}
        self.check_loss(loss, terms)
        self.log_training(loss, terms, batch_size=len(labels))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # --- retrieval -----------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_query(self, x: Tensor) -> Tensor:
        return self.student(x)

    @torch.no_grad()
    def embed_gallery(self, x: Tensor) -> Tensor:
        return self.teacher(x)


__all__ = ["CGN"]
