"""Cross-domain neural networks for sketch-based 3D shape retrieval: CDNN and its pyramid variant PCDNN (Zhu,
Xie & Fang, "Learning Cross-Domain Neural Networks for Sketch-Based 3D Shape Retrieval", AAAI 2016).

Each class y has a target vector t_y shared by both domains. A sketch network h_s and a shape network h_t
each regress their domain's features onto the item's class target, with weight decay
(:mod:`~sbir_bench.methods.components.shape_cdnn`):
``L = mean_i ‖t_{y_i} − h_s(x_i)‖² + mean_j ‖t_{y_j} − h_t(z_j)‖² + λ·(Σ‖W_s‖² + Σ‖W_t‖²)``.
Both domains thus land near the same points, and retrieval ranks shapes by the Euclidean distance between
the encoded features of the sketch and of the shape. PCDNN (``feature_pyramid = (1, 2, 4)``) has one such
pair of networks per pooling level of the backbone's last feature map (1×1, 2×2, 4×4 cells, served by the
DataModule as one level-major vector of width d·21) and concatenates the levels' encodings.

Choices and departures from the paper:

- inputs: the suite's backbone features (a sketch's feature; a shape's = the mean of its V view features,
  the pyramid pooled per view before that mean), where the paper feeds ScSPM features of sketches and
  LD-SIFT features of the 3D models (and PCDNN pools those descriptors on its pyramid);
- targets: fixed orthonormal class codes (:func:`~sbir_bench.methods.components.shape_cdnn.
  class_target_codes`, seeded by ``target_seed``; ``target_dim`` 0 = the number of classes), every two
  classes' targets √2 apart; kept in a buffer, so a checkpoint loads alone;
- each network: ``hidden`` Linear-ReLU layers, then a linear layer onto the target space, Glorot-initialised;
  the encoded feature used for retrieval is that last layer's output (the layer tied to the shared targets,
  the only one in a space common to both domains' unshared networks); PCDNN concatenates these per-level
  encodings, where the paper speaks of concatenating hidden layers;
- the weight decay λ·Σ‖W‖² is part of the loss (weights, not biases), optimised with Adam (the paper's
  optimiser and layer sizes are not reproduced); sizes, λ, learning rate and epochs are CPU-sized (see
  ``configs/method/cdnn.yaml``); the checkpoint tested is the epoch of best validation mAP (the suite's
  rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.branch import embedding_branch
from sbir_bench.methods.components.shape_batches import check_class_batch, view_stack
from sbir_bench.methods.components.shape_cdnn import (
    class_target_codes,
    pyramid_slices,
    target_regression_loss,
    weight_penalty,
)
from sbir_bench.registry import register_method


@register_method("cdnn")
class CDNN(RetrievalMethod):
    """Zhu et al.'s cross-domain neural networks on backbone features (module docstring)."""

    inputs: ClassVar[str] = "view_features"
    train_sampling: ClassVar[str] = "class_batches"
    class_batch: ClassVar[tuple[int, int, int]] = (8, 4, 2)
    feature_pyramid: ClassVar[tuple[int, ...]] = ()
    distance = "euclidean"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        hidden: Sequence[int] = (512,),
        target_dim: int = 0,
        target_seed: int = 0,
        lam: float = 1e-4,
        lr: float = 1e-3,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        # plain values, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        hidden, eval_metrics = tuple(int(w) for w in hidden), tuple(str(m) for m in eval_metrics)
        lam, lr, target_seed = float(lam), float(lr), int(target_seed)
        super().__init__(data, eval_metrics=eval_metrics)
        name = self.method_name
        if self.data_info.feature_dim is None:
            raise ValueError(f"{name} works on backbone view features, but feature_dim is None")
        served = tuple(getattr(self.data_info, "feature_levels", ()) or ())
        if served and served != self.feature_pyramid:
            raise ValueError(
                f"{name} reads feature pyramid levels {self.feature_pyramid or '(none)'}, but the data "
                f"serves levels {served}"
            )
        if lam < 0:
            raise ValueError(f"{name}: the weight decay lam must be >= 0, got {lam}")
        target_dim = int(target_dim) or self.data_info.num_classes
        self.save_hyperparameters(ignore=["data"])  # target_dim as resolved: checkpoints rebuild the buffer
        self.slices = pyramid_slices(int(self.data_info.feature_dim), self.feature_pyramid or (1,))
        widths = [s.stop - s.start for s in self.slices]
        self.sketch_nets = nn.ModuleList(embedding_branch(w, hidden, target_dim) for w in widths)
        self.shape_nets = nn.ModuleList(embedding_branch(w, hidden, target_dim) for w in widths)
        self.register_buffer(
            "targets", class_target_codes(self.data_info.num_classes, target_dim, target_seed)
        )

    # --- the networks --------------------------------------------------------------------------------
    def encode(self, x: Tensor, nets: nn.ModuleList) -> list[Tensor]:
        """Each level's network applied to its part of the features ``[B, D]``: a list of ``[B, k]``."""
        return [net(x[:, part]) for net, part in zip(nets, self.slices, strict=True)]

    def shape_features(self, x: Tensor) -> Tensor:
        """A shape's input: the mean of its V view features, ``[B, V, D] → [B, D]``."""
        return view_stack(x, self.method_name).mean(dim=1)

    # --- the loss ------------------------------------------------------------------------------------
    def loss_terms(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The regression of both domains onto the class targets (summed over levels) and the weight decay."""
        check_class_batch(batch, self.method_name)
        sketch = self.encode(batch["sketch"], self.sketch_nets)
        shape = self.encode(self.shape_features(batch["shape"]), self.shape_nets)
        terms = {
            "sketch_regression": sum(
                target_regression_loss(h, batch["sketch_label"], self.targets) for h in sketch
            ),
            "shape_regression": sum(
                target_regression_loss(h, batch["shape_label"], self.targets) for h in shape
            ),
            "weight_decay": weight_penalty([self.sketch_nets, self.shape_nets]),
        }
        loss = (
            terms["sketch_regression"] + terms["shape_regression"] + self.hparams.lam * terms["weight_decay"]
        )
        return loss, terms

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, terms = self.loss_terms(batch)
        terms = {name: value.detach() for name, value in terms.items()}
        self.check_loss(loss.detach(), terms)
        self.log_training(loss, terms, batch_size=batch["sketch"].shape[0])
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # --- retrieval -----------------------------------------------------------------------------------
    def embed_query(self, x: Tensor) -> Tensor:
        return torch.cat(self.encode(x, self.sketch_nets), dim=-1)

    def embed_gallery(self, x: Tensor) -> Tensor:
        return torch.cat(self.encode(self.shape_features(x), self.shape_nets), dim=-1)


@register_method("pcdnn")
class PCDNN(CDNN):
    """Pyramid CDNN (Zhu et al., AAAI'16): a CDNN per pooling level 1×1, 2×2, 4×4, encodings concatenated."""

    feature_pyramid: ClassVar[tuple[int, ...]] = (1, 2, 4)


__all__ = ["CDNN", "PCDNN"]
