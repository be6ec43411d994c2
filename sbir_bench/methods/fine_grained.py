"""Fine-grained SBIR methods trained end to end on images, with one Sketch-a-Net-style branch shared by
sketches and photos (:class:`~sbir_bench.methods.components.fine_grained.SketchANet`).

``triplet_fg`` — Yu et al., "Sketch Me That Shoe" (CVPR'16): three branches with fully shared weights
(anchor sketch s, positive photo p⁺, negative photo p⁻), L2-normalised embeddings, the triplet loss
``mean max(0, Δ + ‖f(s) − f(p⁺)‖² − ‖f(s) − f(p⁻)‖²)`` with Δ = 0.3 on SQUARED Euclidean distances, SGD
(lr 1e-3, momentum 0.9, weight decay 5e-4, batch 128); batches ``"annotated_triplets"``: a random annotated
(p⁺, p⁻) of the sketch, the negative replaced by a random photo outside its annotated triplets with
probability 0.25 (``sbir_bench/data/modules.py``). Retrieval: Euclidean distance.

``dmar`` — Song et al., "Deep Multi-task Attribute-driven Ranking" (BMVC'16): the same branch plus an
attribute head f^ap = sigmoid(Linear(ReLU(fc1))) over the N instance attributes, trained on
``L = L_θ + λ_a L_a + λ_s L_p(s) + λ_p⁺ L_p(p⁺) + λ_p⁻ L_p(p⁻) + λ_θ‖θ‖²`` with
``L_θ = max(0, Δ + D(f(s), f(p⁺)) − D(f(s), f(p⁻)))`` (D Euclidean), L_p the attribute binary
cross-entropy, ``L_a = H(f^ap(s), f^ap(p⁺))`` (``components/fine_grained.py``); λ_θ‖θ‖² is the optimiser's
weight decay (decay w gives λ_θ = w / 2). Test-time score ``R(s, p) = D(f(s), f(p)) + λ_a H(f^ap(s),
f^ap(p))``: ``distance = "custom"`` and :meth:`DMAR.pairwise_distance`; embed_query / embed_gallery return
``concat(f, f^ap probabilities)``. The registered ablations of the paper's Table 2 switch terms off (their
weights must be 0): ``dmar_no_ap`` (no attribute prediction: λ_s = λ_p⁺ = λ_p⁻ = 0; the head is then
trained by L_a alone), ``dmar_no_ar`` (no attribute ranking: λ_a = 0, so the score is D alone and the
embeddings are f alone, ``distance`` Euclidean), ``dmar_no_ap_ar`` (neither: the triplet network with
DMAR's Euclidean loss and sampling).

Choices of this suite (not public or not applicable): attribute counts come from the data
(``DataInfo.attribute_dim``); Δ = 0.3, λ_s = λ_p⁺ = λ_p⁻ = 1, λ_a = 0.1 (CPU default) and the staging are
our choices, not tuned (the test-time weight of H barely matters there: λ_a from 0 to 3 moved validation
acc@1 by at most 0.02, seed 0). Staged pre-training: the first ``pretrain_epochs`` epochs train the
attribute prediction terms alone (the shared branch and the head learn the attributes), then the full
loss; variants without attribute prediction have no first stage. Batches ``"attribute_triplets"``: p⁺ the
sketch's own photo, p⁻ with probability 0.5 one of the 10 training photos of its class with the most
attributes in common with the sketch's instance (hard negatives), otherwise any other training photo. Data
without instance attributes (e.g. category-level data): the attribute terms are off, with a warning, as in
``dmar_no_ap_ar``.

Both methods: one grey input channel (the channel mean of the served RGB image, inverted so that strokes are
1: :func:`~sbir_bench.methods.components.fine_grained.ink_image`); ``image_size`` resizes the served images
first (None: as served); no pre-training of the branch on ImageNet edge maps / TU-Berlin (Yu et al. pre-train
twice); photos enter as served by the data (edge maps where the data serves them, as in the papers).
``test_crops=10`` averages each embedding over 10 crops and flips as Yu et al. test
(:mod:`~sbir_bench.methods.components.test_time`; off by default: 1, the served image alone).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.fine_grained import (
    SketchANet,
    attribute_prediction_loss,
    attribute_ranking_loss,
    dmar_score,
    squared_euclidean_distance,
)
from sbir_bench.methods.components.metric_losses import (
    check_positive,
    euclidean_distance,
    triplet_margin_loss,
)
from sbir_bench.methods.components.test_time import TEST_CROPS, crop_averaged
from sbir_bench.registry import register_method

OPTIMIZERS = ("sgd", "adam")
# the CPU-sized branch of the defaults (configs/method/*_paper.yaml: the published 64-128-256-256-256,
# 15×15 stride 3, fc 512 → 256 on 225-px inputs)
CPU_CHANNELS, CPU_FC = (16, 32, 64, 64, 64), (128, 64)
TRIPLET_KEYS = ("sketch", "positive", "negative")
ATTRIBUTE_KEYS = ("sketch_attributes", "positive_attributes", "negative_attributes")


class _ImageTripletMethod(RetrievalMethod):
    """A shared :class:`SketchANet` on image triplets; ``embed_query = embed_gallery = f``."""

    inputs: ClassVar[str] = "images"
    distance = "euclidean"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        channels: Sequence[int],
        first_kernel: int,
        first_stride: int,
        fc: Sequence[int],
        image_size: int | None,
        margin: float,
        optimizer: str,
        lr: float,
        momentum: float,
        weight_decay: float,
        test_crops: int,
        eval_metrics: Sequence[str],
    ) -> None:
        super().__init__(data, eval_metrics=tuple(str(m) for m in eval_metrics))
        name = type(self).__name__
        if test_crops not in TEST_CROPS:
            raise ValueError(f"{name}: test_crops must be one of {TEST_CROPS}, got {test_crops}")
        check_positive("margin", float(margin))
        check_positive("lr", float(lr))
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"{name}: unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}")
        size = image_size if image_size is not None else self.data_info.image_size
        if size is None:
            raise ValueError(f"{name} works on images: give image_size or data with an image size")
        self.net = SketchANet(
            int(size),
            channels=tuple(int(c) for c in channels),
            first_kernel=int(first_kernel),
            first_stride=int(first_stride),
            fc=tuple(int(w) for w in fc),
        )

    def _check_batch(self, batch: Mapping[str, Tensor], keys: Sequence[str]) -> None:
        missing = [key for key in keys if key not in batch]
        if missing:
            raise KeyError(
                f"{self.method_name} trains on {self.train_sampling!r} batches with keys {tuple(keys)}; "
                f"this batch lacks {missing}"
            )

    def _hidden(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """ReLU(fc1) of sketch, positive and negative, in one pass of the shared branch."""
        images = torch.cat([batch[key] for key in TRIPLET_KEYS])
        return self.net.hidden(images).chunk(3)

    def loss_terms(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, terms = self.loss_terms(batch)
        self.check_loss(loss, terms)
        self.log_training(loss, terms, batch["sketch"].shape[0])
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        return torch.optim.SGD(
            self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )

    def _embed(self, x: Tensor) -> Tensor:
        return self.net(x)

    def embed_query(self, x: Tensor) -> Tensor:
        return crop_averaged(self._embed, x, self.hparams.test_crops)

    def embed_gallery(self, x: Tensor) -> Tensor:
        return crop_averaged(self._embed, x, self.hparams.test_crops)


@register_method("triplet_fg")
class TripletFG(_ImageTripletMethod):
    """Triplet ranking network of Yu et al., CVPR'16 (module docstring)."""

    train_sampling: ClassVar[str] = "annotated_triplets"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        channels: Sequence[int] = CPU_CHANNELS,
        first_kernel: int = 7,
        first_stride: int = 2,
        fc: Sequence[int] = CPU_FC,
        image_size: int | None = 64,
        margin: float = 0.3,
        optimizer: str = "sgd",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        test_crops: int = 1,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        # plain values, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        channels, fc = tuple(int(c) for c in channels), tuple(int(w) for w in fc)
        eval_metrics = tuple(str(m) for m in eval_metrics)
        first_kernel, first_stride = int(first_kernel), int(first_stride)
        image_size = None if image_size is None else int(image_size)
        margin, lr, momentum, weight_decay = float(margin), float(lr), float(momentum), float(weight_decay)
        optimizer = str(optimizer)
        test_crops = int(test_crops)
        super().__init__(
            data,
            channels=channels,
            first_kernel=first_kernel,
            first_stride=first_stride,
            fc=fc,
            image_size=image_size,
            margin=margin,
            optimizer=optimizer,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            test_crops=test_crops,
            eval_metrics=eval_metrics,
        )
        self.save_hyperparameters(ignore=["data"])

    def loss_terms(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        self._check_batch(batch, TRIPLET_KEYS)
        sketch, positive, negative = (self.net.embed(h) for h in self._hidden(batch))
        d_positive = squared_euclidean_distance(sketch, positive)
        d_negative = squared_euclidean_distance(sketch, negative)
        loss = triplet_margin_loss(d_positive, d_negative, margin=self.hparams.margin)
        terms = {"triplet": loss, "d2_positive": d_positive.detach().mean(), "d2_negative": d_negative.mean()}
        return loss, {k: v.detach() for k, v in terms.items()}


@register_method("dmar")
class DMAR(_ImageTripletMethod):
    """Deep Multi-task Attribute-driven Ranking, Song et al., BMVC'16 (module docstring)."""

    train_sampling: ClassVar[str] = "attribute_triplets"
    distance = "custom"
    terms_off: ClassVar[frozenset[str]] = frozenset()  # ablations: "prediction" and/or "ranking"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        channels: Sequence[int] = CPU_CHANNELS,
        first_kernel: int = 7,
        first_stride: int = 2,
        fc: Sequence[int] = CPU_FC,
        image_size: int | None = 64,
        margin: float = 0.3,
        prediction_weights: Sequence[float] | None = None,
        ranking_weight: float | None = None,
        pretrain_epochs: int = 0,
        num_attributes: int | None = None,
        optimizer: str = "sgd",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        test_crops: int = 1,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        channels, fc = tuple(int(c) for c in channels), tuple(int(w) for w in fc)
        eval_metrics = tuple(str(m) for m in eval_metrics)
        first_kernel, first_stride = int(first_kernel), int(first_stride)
        image_size = None if image_size is None else int(image_size)
        margin, lr, momentum, weight_decay = float(margin), float(lr), float(momentum), float(weight_decay)
        optimizer, pretrain_epochs = str(optimizer), int(pretrain_epochs)
        test_crops = int(test_crops)
        if prediction_weights is None:  # defaults: 1 each, 0 in the variants without them
            prediction_weights = (0.0,) * 3 if "prediction" in self.terms_off else (1.0,) * 3
        if ranking_weight is None:
            ranking_weight = 0.0 if "ranking" in self.terms_off else 1.0
        prediction_weights = tuple(float(w) for w in prediction_weights)
        ranking_weight = float(ranking_weight)
        super().__init__(
            data,
            channels=channels,
            first_kernel=first_kernel,
            first_stride=first_stride,
            fc=fc,
            image_size=image_size,
            margin=margin,
            optimizer=optimizer,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            test_crops=test_crops,
            eval_metrics=eval_metrics,
        )
        name = self.method_name
        if len(prediction_weights) != 3 or min(prediction_weights) < 0 or ranking_weight < 0:
            raise ValueError(
                f"{name}: prediction_weights (λ_s, λ_p+, λ_p-) are 3 non-negative numbers and ranking_weight "
                f"(λ_a) is non-negative, got {prediction_weights} and {ranking_weight}"
            )
        if "prediction" in self.terms_off and any(prediction_weights):
            raise ValueError(
                f"{name} has no attribute prediction: prediction_weights must be 0, got {prediction_weights}"
            )
        if "ranking" in self.terms_off and ranking_weight:
            raise ValueError(
                f"{name} has no attribute ranking: ranking_weight must be 0, got {ranking_weight}"
            )
        if pretrain_epochs < 0 or (pretrain_epochs and not any(prediction_weights)):
            raise ValueError(
                f"{name}: pretrain_epochs (attribute prediction alone) must be >= 0, and 0 without attribute "
                f"prediction; got {pretrain_epochs} with prediction_weights {prediction_weights}"
            )
        if num_attributes is None:
            num_attributes = int(self.data_info.attribute_dim)
        num_attributes = int(num_attributes)
        if num_attributes == 0 and (any(prediction_weights) or ranking_weight):
            warnings.warn(
                f"{name}: the data has no instance attributes; attribute prediction and ranking are off "
                "(it trains as dmar_no_ap_ar)",
                stacklevel=2,
            )
        self.attribute_head = nn.Linear(self.net.hidden_dim, num_attributes) if num_attributes else None
        self.save_hyperparameters(ignore=["data"])  # num_attributes as resolved: checkpoints rebuild the head
        # R(s, p) with λ_a = 0 (or no attributes) is D alone: the embeddings are f and the distance Euclidean
        self.distance = "custom" if self.uses_attribute_score else "euclidean"

    @property
    def num_attributes(self) -> int:
        return int(self.hparams.num_attributes)

    @property
    def uses_attribute_score(self) -> bool:
        return self.num_attributes > 0 and self.hparams.ranking_weight > 0

    @property
    def in_pretraining(self) -> bool:
        """The first stage: attribute prediction alone, for ``pretrain_epochs`` epochs."""
        return self.num_attributes > 0 and self.current_epoch < self.hparams.pretrain_epochs

    def loss_terms(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted total and each term (unweighted; detached for logging)."""
        hp = self.hparams
        self._check_batch(batch, (*TRIPLET_KEYS, *ATTRIBUTE_KEYS) if self.num_attributes else TRIPLET_KEYS)
        hidden = self._hidden(batch)
        sketch, positive, negative = (self.net.embed(h) for h in hidden)
        terms = {
            "triplet": triplet_margin_loss(
                euclidean_distance(sketch, positive), euclidean_distance(sketch, negative), margin=hp.margin
            )
        }
        total = sketch.new_zeros(()) if self.in_pretraining else terms["triplet"]
        if self.attribute_head is not None:
            logits = [self.attribute_head(h) for h in hidden]
            for key, weight, z in zip(ATTRIBUTE_KEYS, hp.prediction_weights, logits, strict=True):
                targets = batch[key]
                if targets.shape != z.shape:
                    raise ValueError(
                        f"{self.method_name}: {key} is {tuple(targets.shape)}, expected {tuple(z.shape)} "
                        f"({self.num_attributes} attributes per item)"
                    )
                if weight:
                    terms[f"prediction_{key.split('_')[0]}"] = loss = attribute_prediction_loss(z, targets)
                    total = total + weight * loss
            if hp.ranking_weight:
                terms["ranking"] = attribute_ranking_loss(logits[0], logits[1])
                if not self.in_pretraining:
                    total = total + hp.ranking_weight * terms["ranking"]
        return total, {k: v.detach() for k, v in terms.items()}

    def _embed(self, x: Tensor) -> Tensor:
        hidden = self.net.hidden(x)
        embedding = self.net.embed(hidden)
        if not self.uses_attribute_score:
            return embedding
        return torch.cat([embedding, torch.sigmoid(self.attribute_head(hidden))], dim=1)

    def pairwise_distance(self, queries: Tensor, gallery: Tensor) -> Tensor:
        """``R(s, p) = D(f(s), f(p)) + λ_a H(f^ap(s), f^ap(p))`` for ``[Q, k + N]`` queries and ``[G, k + N]``
        gallery items (embeddings ``concat(f, f^ap)``; tensors or arrays) → ``[Q, G]`` float64, smaller =
        closer."""
        queries, gallery = torch.as_tensor(queries), torch.as_tensor(gallery)
        k = self.net.embedding_dim
        if queries.shape[1] != gallery.shape[1] or queries.shape[1] not in (k, k + self.num_attributes):
            raise ValueError(
                f"{self.method_name}: embeddings of widths {queries.shape[1]} and {gallery.shape[1]}; "
                f"expected {k + self.num_attributes if self.uses_attribute_score else k}"
            )
        weight = self.hparams.ranking_weight if queries.shape[1] > k else 0.0
        return dmar_score(queries[:, :k], gallery[:, :k], queries[:, k:], gallery[:, k:], weight)


@register_method("dmar_no_ap")
class DMARNoAP(DMAR):
    """DMAR − AP (Table 2 of Song et al.): no attribute prediction terms (λ_s = λ_p⁺ = λ_p⁻ = 0)."""

    terms_off: ClassVar[frozenset[str]] = frozenset({"prediction"})


@register_method("dmar_no_ar")
class DMARNoAR(DMAR):
    """DMAR − AR (Table 2 of Song et al.): no attribute ranking (λ_a = 0: neither L_a nor the score's H)."""

    terms_off: ClassVar[frozenset[str]] = frozenset({"ranking"})


@register_method("dmar_no_ap_ar")
class DMARNoAPAR(DMAR):
    """DMAR − AP − AR (Table 2 of Song et al.): the triplet ranking term alone."""

    terms_off: ClassVar[frozenset[str]] = frozenset({"prediction", "ranking"})


__all__ = ["DMAR", "DMARNoAP", "DMARNoAPAR", "DMARNoAR", "TripletFG"]
