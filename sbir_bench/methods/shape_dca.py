"""Semantics-preserving adversarial cross-modality adaptation for sketch-based 3D shape retrieval (DCA: Chen &
Fang, "Deep Cross-modality Adaptation via Semantics Preserving Adversarial Learning for Sketch-based 3D Shape
Retrieval", ECCV'18).

Per modality a metric network: the sketch net on a sketch's backbone feature, the shape net on the mean of a
shape's view features (as the public reimplementation mean-pools its 12 views). A transformation network T
maps sketch embeddings into the shape embedding space; a discriminator D tells transformed sketches
``z_t = T(f_s(sketch))`` from shape embeddings ``f_t(shape)``. The losses
(:mod:`~sbir_bench.methods.components.adversarial_adaptation`): importance-aware metric learning (IAML:
hardest positive / hardest negative in the batch, hinge with margin η), the class-mean discrepancy L_CMD,
the non-saturating GAN losses L_D / L_G. Three stages as epoch ranges of one Lightning fit:

1. ``metric`` (epochs ``0 .. metric_epochs − 1``): both metric nets, ``IAML(sketches) + IAML(shapes)``, each
   within its own modality;
2. ``transformation`` (the next ``transformation_epochs``): the metric nets frozen (evaluation mode: their
   BatchNorm uses its running statistics, as at test time); T pre-trained with
   ``w_cmd·L_CMD + w_sem·IAML(z_t against the shape embeddings)``;
3. ``adversarial`` (the remaining epochs): per batch one Adam step of D on L_D, then one of T on
   ``w_adv·L_G + w_cmd·L_CMD + w_sem·IAML(z_t against the shapes)``, alternating.

Three Adam optimisers (metric nets, T, D), manual optimisation. Retrieval: Euclidean distance between
transformed sketch embeddings and shape embeddings. Validation scores of stage 1 reflect an untrained T; the
tested checkpoint is the best validation epoch.

Deviations (README row): backbone features (the sketch's, the views' mean) and MLPs instead of the paper's
CNNs; the GAN is the standard non-saturating one on logits (the paper does not fix it here); the metric nets
stay frozen after stage 1; the loss weights w_adv, w_cmd, w_sem, the transformation's activations (ReLU,
last Tanh) and the discriminator's (LeakyReLU 0.2) are ours; IAML averages over the anchors, L_CMD sums over
the classes of the batch; with fewer than ``metric_epochs + transformation_epochs + 1`` epochs the adversarial
stage does not run (a warning says so).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.adversarial_adaptation import (
    class_mean_discrepancy,
    discriminator_loss,
    discriminator_net,
    generator_loss,
    importance_aware_loss,
    metric_net,
    transformation_net,
)
from sbir_bench.registry import register_method

STAGES = ("metric", "transformation", "adversarial")


@register_method("dca")
class DCA(RetrievalMethod):
    """DCA of Chen & Fang (ECCV'18) on sketch and view features; see the module docstring."""

    inputs: ClassVar[str] = "view_features"
    train_sampling: ClassVar[str] = "class_batches"
    class_batch: ClassVar[tuple[int, int, int]] = (3, 16, 4)
    distance = "euclidean"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        widths: Sequence[int] = (256, 128, 64),
        transformation_widths: Sequence[int] = (64, 32, 16, 32, 64),
        discriminator_widths: Sequence[int] = (64, 32, 1),
        margin: float = 5.0,
        adversarial_weight: float = 1.0,
        cmd_weight: float = 1.0,
        semantic_weight: float = 1.0,
        metric_epochs: int = 10,
        transformation_epochs: int = 10,
        lr: float = 1e-4,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        # plain values, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        widths = tuple(int(w) for w in widths)
        transformation_widths = tuple(int(w) for w in transformation_widths)
        discriminator_widths = tuple(int(w) for w in discriminator_widths)
        eval_metrics = tuple(str(m) for m in eval_metrics)
        margin, lr = float(margin), float(lr)
        adversarial_weight, cmd_weight, semantic_weight = (
            float(adversarial_weight),
            float(cmd_weight),
            float(semantic_weight),
        )
        super().__init__(data, eval_metrics=eval_metrics)
        self.save_hyperparameters(ignore=["data"])
        if not (math.isfinite(margin) and margin > 0 and math.isfinite(lr) and lr > 0):
            raise ValueError(f"dca: margin (η) and lr must be finite positive numbers, got {margin}, {lr}")
        if min(adversarial_weight, cmd_weight, semantic_weight) < 0:
            raise ValueError(
                f"dca: the loss weights must be >= 0, got adversarial_weight={adversarial_weight}, "
                f"cmd_weight={cmd_weight}, semantic_weight={semantic_weight}"
            )
        if metric_epochs < 1 or transformation_epochs < 0:
            raise ValueError(
                f"dca: need metric_epochs >= 1 and transformation_epochs >= 0, got {metric_epochs}, "
                f"{transformation_epochs}"
            )
        if transformation_widths[0] != widths[-1] or discriminator_widths[0] != widths[-1]:
            raise ValueError(
                f"dca: transformation_widths and discriminator_widths must start at the embedding width "
                f"{widths[-1]} (the last of widths), got {transformation_widths}, {discriminator_widths}"
            )
        if self.data_info.feature_dim is None:
            raise ValueError("dca works on backbone view features, but DataInfo.feature_dim is None")
        feature_dim = int(self.data_info.feature_dim)
        self.sketch_net = metric_net(feature_dim, widths)
        self.shape_net = metric_net(feature_dim, widths)
        self.transformation = transformation_net(transformation_widths)
        self.discriminator = discriminator_net(discriminator_widths)
        self.automatic_optimization = False

    # --- stages --------------------------------------------------------------------------------------
    def stage(self, epoch: int) -> str:
        """ "metric", "transformation" or "adversarial" for a training epoch (module docstring)."""
        metric_end = self.hparams.metric_epochs
        if epoch < metric_end:
            return STAGES[0]
        return STAGES[1] if epoch < metric_end + self.hparams.transformation_epochs else STAGES[2]

    def on_fit_start(self) -> None:
        first_adversarial = self.hparams.metric_epochs + self.hparams.transformation_epochs
        if self.trainer.max_epochs is not None and self.trainer.max_epochs <= first_adversarial:
            rank_zero_warn(
                f"dca: max_epochs={self.trainer.max_epochs} ends before the adversarial stage (metric_epochs="
                f"{self.hparams.metric_epochs}, transformation_epochs={self.hparams.transformation_epochs})"
            )

    # --- embeddings ----------------------------------------------------------------------------------
    def embed_shapes(self, x: Tensor) -> Tensor:
        """``[B, V, d]`` view features (or ``[B, d]``) → shape embeddings ``[B, k]`` (views mean-pooled)."""
        if x.dim() == 3:
            x = x.mean(dim=1)
        if x.dim() != 2:
            raise ValueError(f"dca: a shape is [B, V, d] view features (or [B, d]), got {tuple(x.shape)}")
        return self.shape_net(x)

    def transformed_sketches(self, x: Tensor) -> Tensor:
        """``z_t = T(f_s(x))``: sketches in the shape embedding space."""
        return self.transformation(self.sketch_net(x))

    # --- training ------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        stage = self.stage(self.current_epoch)
        sketch_labels, shape_labels = batch["sketch_label"].long(), batch["shape_label"].long()
        metric_optimiser, transformation_optimiser, discriminator_optimiser = self.optimizers()
        if stage == "metric":
            margin = self.hparams.margin
            sketch = self.sketch_net(batch["sketch"])
            shape = self.embed_shapes(batch["shape"])
            terms = {
                "iaml_sketch": importance_aware_loss(sketch, sketch_labels, sketch, sketch_labels, margin),
                "iaml_shape": importance_aware_loss(shape, shape_labels, shape, shape_labels, margin),
            }
            loss = terms["iaml_sketch"] + terms["iaml_shape"]
            self.check_loss(loss, terms, hint="in the metric networks' step: lower lr or check the features")
            self._step(metric_optimiser, loss)
            self.log_training(loss, terms, batch_size=len(sketch_labels))
            return
        self.sketch_net.eval(), self.shape_net.eval()  # frozen from stage 2 on (module docstring)
        with torch.no_grad():
            sketch = self.sketch_net(batch["sketch"])
            shape = self.embed_shapes(batch["shape"])
        transformed = self.transformation(sketch)
        terms: dict[str, Tensor] = {}
        if stage == "adversarial":
            d_loss = discriminator_loss(self.discriminator(shape), self.discriminator(transformed.detach()))
            self.check_loss(
                d_loss,
                {"discriminator": d_loss},
                hint="the discriminator's GAN loss (L_D): lower lr or check the features",
            )
            self._step(discriminator_optimiser, d_loss)
            terms["discriminator"] = d_loss.detach()
        terms["cmd"] = class_mean_discrepancy(transformed, sketch_labels, shape, shape_labels)
        terms["iaml_semantic"] = importance_aware_loss(
            transformed, sketch_labels, shape, shape_labels, self.hparams.margin
        )
        loss = self.hparams.cmd_weight * terms["cmd"] + self.hparams.semantic_weight * terms["iaml_semantic"]
        if stage == "adversarial":
            terms["generator"] = generator_loss(self.discriminator(transformed))
            loss = loss + self.hparams.adversarial_weight * terms["generator"]
        self.check_loss(
            loss,
            terms,
            hint="the transformation (generator) network's loss (L_G + L_CMD + IAML): lower lr or check the "
            "features",
        )
        self._step(transformation_optimiser, loss)  # also leaves gradients on D: zeroed before its next step
        self.log_training(loss, terms, batch_size=len(sketch_labels))

    def _step(self, optimiser: Any, loss: Tensor) -> None:
        optimiser.zero_grad()
        self.manual_backward(loss)
        optimiser.step()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[metric nets, transformation, discriminator], each Adam at ``lr``."""
        lr = self.hparams.lr
        metric = [*self.sketch_net.parameters(), *self.shape_net.parameters()]
        return [
            torch.optim.Adam(metric, lr=lr),
            torch.optim.Adam(self.transformation.parameters(), lr=lr),
            torch.optim.Adam(self.discriminator.parameters(), lr=lr),
        ]

    # --- retrieval -----------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_query(self, x: Tensor) -> Tensor:
        return self.transformed_sketches(x)

    @torch.no_grad()
    def embed_gallery(self, x: Tensor) -> Tensor:
        return self.embed_shapes(x)


__all__ = ["DCA"]
