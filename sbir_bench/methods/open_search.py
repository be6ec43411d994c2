"""Open cross-domain visual search (Thong, Mettes, Snoek, CVIU 2020).

One encoder per domain maps its items into a shared space fixed by class prototypes: the class side
information (``data.class_semantics``: word vectors of the class names on real data, given with
``data.semantics.vectors=FILE``; the classes' structure vectors on the embedded ``synthetic_3d``), frozen in a
buffer. Each encoder is trained with ``−log softmax_c(cos(x, p_c)/T)[y]``, T = 0.1, the softmax over the
training (seen) classes' prototypes (:mod:`~sbir_bench.methods.components.prototype_search`). A shape's
embedding is the mean of its view embeddings (one view encoder shared by the views); a photo (image
datasets: the DataModule serves it as one view, ``[B, 1, d]``; ``[B, d]`` is taken too) is a gallery item
of one view. Retrieval: cosine between the query
sketch's and the gallery item's embeddings, so any domain searches any other and unseen classes are
searched in the same space (zero-shot).

Refinement (the paper's optional step): each query is moved to ``slerp(q, g, 0.4)`` towards its nearest
gallery item g before ranking. It is a separate registered method, ``open_search_refine``, so its records
and leaderboard rows never mix with the plain ones (``refine=true`` under the name ``open_search`` is
refused).

Deviations (README row): the suite's backbone features (sketch, per view, photo) and MLP encoders instead
of the paper's CNNs; the gallery encoder is shared by the gallery's domain (shapes' views, or photos);
widths and lr ours; training batches are class batches (C classes × n sketches + C × m shapes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.multiview_pooling import MultiViewEncoder, mlp
from sbir_bench.methods.components.prototype_search import prototype_loss, refine_towards_nearest
from sbir_bench.methods.components.side_information import class_semantics_of
from sbir_bench.registry import register_method


@register_method("open_search")
class OpenSearch(RetrievalMethod):
    """Open cross-domain visual search of Thong et al. (CVIU'20); see the module docstring."""

    inputs: ClassVar[str] = "view_features"
    train_sampling: ClassVar[str] = "class_batches"
    class_batch: ClassVar[tuple[int, int, int]] = (8, 4, 2)
    distance = "cosine"
    refines: ClassVar[bool] = False  # True only for the registered variant open_search_refine
    # ``refine`` (None: as the registered name says) exists so that ``refine=true`` under the name
    # open_search fails loudly instead of being mixed with the plain records

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        hidden: Sequence[int] = (256,),
        temperature: float = 0.1,
        refine: bool | None = None,
        refine_weight: float = 0.4,
        lr: float = 1e-3,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        # plain values, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        hidden, eval_metrics = tuple(int(w) for w in hidden), tuple(str(m) for m in eval_metrics)
        temperature, refine_weight, lr = float(temperature), float(refine_weight), float(lr)
        super().__init__(data, eval_metrics=eval_metrics)
        self.save_hyperparameters(ignore=["data"])
        if refine is not None and bool(refine) != self.refines:
            raise ValueError(
                "open_search: the refinement step is reported separately: use method=open_search_refine"
                if refine
                else "open_search_refine always refines: use method=open_search for no refinement"
            )
        if temperature <= 0 or not 0 <= refine_weight <= 1:
            raise ValueError(
                f"open_search: need temperature > 0 and refine_weight in [0, 1], got {temperature}, "
                f"{refine_weight}"
            )
        if self.data_info.feature_dim is None:
            raise ValueError("open_search works on backbone features, but DataInfo.feature_dim is None")
        if isinstance(data, Mapping):  # a checkpoint being loaded: the prototypes come with the state_dict
            if data.get("semantics_dim") is None:
                raise ValueError("open_search: the checkpoint's data has no semantics_dim")
            prototypes = torch.zeros(self.data_info.num_classes, int(data["semantics_dim"]))
        else:
            prototypes = torch.from_numpy(class_semantics_of(self.data_info, self.method_name)).clone()
        self.register_buffer("prototypes", prototypes)  # frozen: a buffer, never optimised
        seen = torch.tensor(self.data_info.seen_classes, dtype=torch.long)
        position = torch.full((self.data_info.num_classes,), -1, dtype=torch.long)
        position[seen] = torch.arange(len(seen))
        self.register_buffer("seen_classes", seen, persistent=False)
        self.register_buffer("seen_position", position, persistent=False)  # class -> row of the softmax
        feature_dim, widths = int(self.data_info.feature_dim), (*hidden, prototypes.shape[1])
        self.sketch_encoder = mlp(feature_dim, widths)
        self.gallery_encoder = MultiViewEncoder(feature_dim, widths, pooling="mean")

    # --- training ------------------------------------------------------------------------------------
    def domain_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The prototype loss of one domain, the softmax over the seen classes' prototypes."""
        positions = self.seen_position[labels.long()]
        if (positions < 0).any():
            raise ValueError("open_search: a training label is not among the seen classes")
        seen_prototypes = self.prototypes[self.seen_classes]
        return prototype_loss(embeddings, positions, seen_prototypes, temperature=self.hparams.temperature)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        terms = {
            "sketch": self.domain_loss(self.sketch_encoder(batch["sketch"]), batch["sketch_label"]),
            "gallery": self.domain_loss(self.gallery_encoder(batch["shape"]), batch["shape_label"]),
        }
        loss = terms["sketch"] + terms["gallery"]
        self.check_loss(loss, terms)
        self.log_training(loss, terms, batch_size=len(batch["sketch_label"]))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # --- retrieval -----------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_query(self, x: Tensor) -> Tensor:
        return F.normalize(self.sketch_encoder(x), dim=-1)

    @torch.no_grad()
    def embed_gallery(self, x: Tensor) -> Tensor:
        """Shapes ``[B, V, d]`` (mean of the view embeddings) or photos ``[B, 1, d]`` / ``[B, d]``."""
        return F.normalize(self.gallery_encoder(x), dim=-1)

    def pairwise_distance(self, queries: Tensor, gallery: Tensor) -> Tensor:
        """With refinement: cosine distance of each refined query (``slerp(q, g_nn, w)``) to the gallery."""
        refined = refine_towards_nearest(queries.float(), gallery.float(), self.hparams.refine_weight)
        return 1.0 - refined @ F.normalize(gallery.float(), dim=-1).T


@register_method("open_search_refine")
class OpenSearchRefine(OpenSearch):
    """:class:`OpenSearch` with the refinement step (``slerp(q, g_nn, 0.4)``), reported under its own name."""

    refines: ClassVar[bool] = True
    distance = "custom"  # ranked by pairwise_distance: the refined query against the gallery


__all__ = ["OpenSearch", "OpenSearchRefine"]
