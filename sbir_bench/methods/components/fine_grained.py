"""Networks and losses of the fine-grained SBIR methods: the triplet ranking network of Yu et al. ("Sketch
Me That Shoe", CVPR'16) and DMAR (Song et al., "Deep Multi-task Attribute-driven Ranking for Fine-grained
Sketch-based Image Retrieval", BMVC'16).

- :class:`SketchANet`: the Sketch-a-Net-style branch both methods share between sketches and photos;
- :func:`squared_euclidean_distance`: the distance of Yu et al.'s triplet loss (with
  :func:`~sbir_bench.methods.components.metric_losses.triplet_margin_loss`);
- :func:`attribute_prediction_loss` (DMAR's L_p), :func:`attribute_ranking_loss` (L_a) and
  :func:`dmar_score` (the test-time score R(s, p)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbir_bench.data.images import IMAGENET_MEAN, IMAGENET_STD

PROBABILITY_EPS = 1e-7  # keeps log(p) and log(1 − p) finite in the test-time score


def ink_image(x: Tensor) -> Tensor:
    """``[B, 3, H, W]`` ImageNet-normalised RGB → ``[B, 1, H, W]`` one grey "ink" channel: the channel mean
    of the un-normalised image, inverted (``1 − grey``), so a sketch's strokes are 1 on a background of 0
    (Sketch-a-Net takes one channel)."""
    mean = x.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = x.new_tensor(IMAGENET_STD)[:, None, None]
    return 1.0 - (x * std + mean).mean(dim=1, keepdim=True)


class SketchANet(nn.Module):
    """Sketch-a-Net-style branch of Yu et al. (CVPR'16): ``conv c1@k1×k1 stride s1 → ReLU → maxpool 3/2 →
    conv c2@5×5 → ReLU → maxpool 3/2 → (conv c3@3×3 pad 1 → ReLU) × 3 → maxpool 3/2 → fc h1 → ReLU →
    fc h2``; published: c = (64, 128, 256, 256, 256), k1 = 15, s1 = 3, fc (512, 256) on 225 × 225 crops.

    He-initialised (normal, fan-in), biases 0. ``embed`` gives the L2-normalised last layer, ``hidden``
    the ReLU of the first fc layer (DMAR's attribute head reads it). ``input_size``: the size the served
    images are resized to first (bilinear, antialiased; none when they already have it).
    """

    def __init__(
        self,
        input_size: int,
        *,
        channels: Sequence[int] = (64, 128, 256, 256, 256),
        first_kernel: int = 15,
        first_stride: int = 3,
        fc: Sequence[int] = (512, 256),
    ) -> None:
        super().__init__()
        if len(channels) != 5 or len(fc) != 2 or min(*channels, *fc) < 1:
            raise ValueError(
                f"SketchANet needs 5 positive channel widths and 2 fc widths, got {channels}, {fc}"
            )
        c1, c2, c3, c4, c5 = (int(c) for c in channels)
        self.input_size = int(input_size)
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, first_kernel, stride=first_stride),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Flatten(),
        )
        with torch.no_grad():
            try:
                width = self.features(torch.zeros(1, 1, self.input_size, self.input_size)).shape[1]
            except RuntimeError as error:
                raise ValueError(
                    f"SketchANet: input size {self.input_size} is too small for first_kernel {first_kernel}, "
                    f"first_stride {first_stride} and three 3/2 poolings"
                ) from error
        self.fc1 = nn.Linear(width, int(fc[0]))
        self.fc2 = nn.Linear(int(fc[0]), int(fc[1]))
        self.hidden_dim, self.embedding_dim = int(fc[0]), int(fc[1])
        for layer in self.modules():  # He initialisation: PyTorch's default shrinks the activations layer
            if isinstance(layer, (nn.Conv2d, nn.Linear)):  # by layer until every embedding is the same
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    def hidden(self, x: Tensor) -> Tensor:
        """ReLU(fc1) of images ``[B, 3, S, S]`` (ImageNet-normalised RGB, see :func:`ink_image`)."""
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True
            )
        return F.relu(self.fc1(self.features(ink_image(x))))

    def embed(self, hidden: Tensor) -> Tensor:
        """The L2-normalised embedding ``fc2(hidden) / ‖fc2(hidden)‖``."""
        return F.normalize(self.fc2(hidden), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(self.hidden(x))


def squared_euclidean_distance(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise ``‖a − b‖₂²``: ``[N, k], [N, k] → [N]`` (Yu et al.'s triplet loss compares these)."""
    return (a - b).square().sum(dim=-1)


def attribute_prediction_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """DMAR's attribute prediction loss (Song et al., BMVC'16), averaged over the batch:
    ``L_p(x, t) = −(1/N) Σ_n [t_n log f^ap_n(x) + (1 − t_n) log(1 − f^ap_n(x))]``, f^ap = sigmoid(logits)."""
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def attribute_ranking_loss(sketch_logits: Tensor, positive_logits: Tensor) -> Tensor:
    """DMAR's attribute ranking loss ``L_a(s, p⁺) = H(f^ap(s), f^ap(p⁺))``, the cross-entropy of the
    positive photo's predicted attributes under the sketch's, per attribute and averaged over the N
    attributes and the batch: ``−(1/N) Σ_n [a_n log b_n + (1 − a_n) log(1 − b_n)]``, a = f^ap(s),
    b = f^ap(p⁺) (both predicted: the gradient reaches both)."""
    return F.binary_cross_entropy_with_logits(positive_logits, torch.sigmoid(sketch_logits))


def pairwise_attribute_cross_entropy(query_probabilities: Tensor, gallery_probabilities: Tensor) -> Tensor:
    """``[Q, N], [G, N] → [Q, G]``: ``H(a_q, b_g) = −(1/N) Σ_n [a_qn log b_gn + (1 − a_qn) log(1 − b_gn)]``
    (probabilities clipped to ``[ε, 1 − ε]``, ε = 1e-7, before the logarithms)."""
    a = query_probabilities
    b = gallery_probabilities.clamp(PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    return -(a @ b.log().T + (1 - a) @ (1 - b).log().T) / a.shape[1]


def dmar_score(
    query_embeddings: Tensor,
    gallery_embeddings: Tensor,
    query_probabilities: Tensor,
    gallery_probabilities: Tensor,
    weight: float,
) -> Tensor:
    """DMAR's test-time score (smaller = closer), ``R(s, p) = D(f(s), f(p)) + λ_a H(f^ap(s), f^ap(p))``,
    D Euclidean: ``[Q, k], [G, k], [Q, N], [G, N] → [Q, G]`` float64."""
    q, g = query_embeddings.double(), gallery_embeddings.double()
    distance = torch.cdist(q, g)
    if weight == 0:
        return distance
    return distance + weight * pairwise_attribute_cross_entropy(
        query_probabilities.double(), gallery_probabilities.double()
    )


__all__ = [
    "PROBABILITY_EPS",
    "SketchANet",
    "attribute_prediction_loss",
    "attribute_ranking_loss",
    "dmar_score",
    "ink_image",
    "pairwise_attribute_cross_entropy",
    "squared_euclidean_distance",
]
