"""Networks, losses and the code update of Generative Domain-Migration Hashing (GDH: Zhang et al.,
"Generative Domain-Migration Hashing for Sketch-to-Image Retrieval", ECCV'18), checked against the
authors' released category-level code (``category/network.py``, ``category/GDH.py``).

- :class:`Generator`: CycleGAN's ResNet generator (Zhu et al., ICCV'17): reflect-padded 7×7 conv, two
  stride-2 convs, ``num_blocks`` residual blocks, two transposed convs, reflect-padded 7×7 conv, tanh; every
  conv but the last followed by a norm (BatchNorm as in the released code, or CycleGAN's InstanceNorm:
  :func:`norm_layer`) and ReLU. With ``attention`` the bottleneck features are multiplied by
  :class:`AttentionMask`'s binary mask before the decoder (where the released code applies it);
  :func:`running_stats_frozen` keeps BatchNorm's test-time statistics out of the cycle passes.
- :class:`PatchDiscriminator`: the 70×70 PatchGAN of CycleGAN (4×4 convs, LeakyReLU 0.2, BatchNorm).
- LSGAN losses (Mao et al., ICCV'17) and CycleGAN's cycle-consistency L1 (weight 10 each way).
- :func:`hash_loss`: GDH's hashing objective on one batch; :func:`code_update`: the released code's D-step
  and B-step with one-hot class labels; :func:`squared_triplet_loss`: the fine-grained variant's ranking term.
- :class:`ImagePool`: CycleGAN's history of 50 generated images shown to the discriminators;
  :func:`linear_decay_factor`: the generators' and discriminators' learning-rate schedule.

The generators work in [−1, 1] (their tanh range); :func:`imagenet_to_unit` and :func:`unit_to_imagenet`
convert from and to the suite's ImageNet-normalised tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbir_bench.data.images import IMAGENET_MEAN, IMAGENET_STD

INIT_STD = 0.02  # N(0, 0.02) conv weights, zero biases: the released code's (and CycleGAN's) initialisation


def imagenet_to_unit(x: Tensor) -> Tensor:
    """ImageNet-normalised RGB ``(v − mean) / std`` → ``2v − 1`` in [−1, 1] (v ∈ [0, 1] the pixel value)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x * std + mean) * 2.0 - 1.0


def unit_to_imagenet(x: Tensor) -> Tensor:
    """The inverse of :func:`imagenet_to_unit`: ``2v − 1`` → ``(v − mean) / std`` (the input of ImageNet-style
    networks, such as the suite's backbones)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return ((x + 1.0) / 2.0 - mean) / std


def init_normal_(module: nn.Module, std: float = INIT_STD) -> nn.Module:
    """Each (transposed) conv of ``module``: weights N(0, std), biases 0; BatchNorm keeps PyTorch's."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


NORMS = ("batch", "instance")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """``"batch"``: BatchNorm (the released GDH code); ``"instance"``: InstanceNorm without affine parameters
    or running statistics (CycleGAN's default), the same computation in training and at test time."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")


class ResidualBlock(nn.Module):
    """``x + N(conv3(pad(ReLU(N(conv3(pad(x)))))))``, reflect padding, norm N: CycleGAN's ResNet block."""

    def __init__(self, channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            norm_layer(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class AttentionMask(nn.Module):
    """GDH's attention layer: a binary mask over a feature map's positions, ``[B, C, h, w] → [B, 1, h, w]``.

    ``a = softmax over the h·w positions of ReLU(conv1×1(x))``; ``mask = 1`` where ``a > τ``, else 0, with
    ``τ = threshold / (h·w)``: ``threshold`` times the uniform weight. The released code thresholds at
    2.44e-5 on its 64×64 bottleneck (256-px inputs), i.e. ``threshold = 0.1``; relative to h·w the rule does
    not depend on the input size. A position is dropped when its weight is under a tenth of the mean.

    The mask is a hard threshold: as in the released code no gradient reaches the 1×1 convolution, which
    keeps its initial weights; the mask follows the features the (trained) encoder feeds it.
    """

    def __init__(self, channels: int, threshold: float = 0.1) -> None:
        super().__init__()
        if not threshold > 0:
            raise ValueError(f"the attention threshold must be positive, got {threshold}")
        self.threshold = float(threshold)
        self.score = nn.Conv2d(channels, 1, 1)

    def weights(self, x: Tensor) -> Tensor:
        """The softmax weights over positions, ``[B, 1, h, w]``, each map summing to 1."""
        scores = F.relu(self.score(x))
        return torch.softmax(scores.flatten(1), dim=1).view_as(scores)

    def forward(self, x: Tensor) -> Tensor:
        weights = self.weights(x)
        positions = weights.shape[-2] * weights.shape[-1]
        return (weights > self.threshold / positions).to(x.dtype)


class Generator(nn.Module):
    """CycleGAN ResNet generator ``[B, 3, S, S] → [B, 3, S, S]`` in (−1, 1); S divisible by 4.

    ``ngf`` channels after the first conv, 2·ngf and 4·ngf after the two downsamplings, ``num_blocks``
    residual blocks at 4·ngf, then back up; ``norm`` after every conv but the last (:func:`norm_layer`).
    ``attention``: the bottleneck (after the residual blocks, at S/4 × S/4) is multiplied by the
    :class:`AttentionMask` of itself, as the released code's ``flag=True``.
    """

    def __init__(
        self,
        ngf: int = 32,
        num_blocks: int = 9,
        attention: bool = True,
        attention_threshold: float = 0.1,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        width = 4 * ngf
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, ngf, 7),
            norm_layer(norm, ngf),
            nn.ReLU(inplace=True),
            nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1),
            norm_layer(norm, 2 * ngf),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * ngf, width, 3, stride=2, padding=1),
            norm_layer(norm, width),
            nn.ReLU(inplace=True),
            *(ResidualBlock(width, norm) for _ in range(num_blocks)),
        )
        self.attention = AttentionMask(width, attention_threshold) if attention else None
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(width, 2 * ngf, 3, stride=2, padding=1, output_padding=1),
            norm_layer(norm, 2 * ngf),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1),
            norm_layer(norm, ngf),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, 3, 7),
            nn.Tanh(),
        )
        init_normal_(self)

    def forward_with_mask(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(translated image, the bottleneck's binary mask ``[B, 1, S/4, S/4]`` or None without attention)."""
        features = self.encoder(x)
        mask = None
        if self.attention is not None:
            mask = self.attention(features)
            features = features * mask
        return self.decoder(features), mask

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_mask(x)[0]


@contextmanager
def running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """Inside, ``module``'s BatchNorm layers still normalise a training batch with its own statistics but
    leave their running statistics (the test-time ones) as they are (momentum 0); restored on exit.

    A CycleGAN generator also translates the other generator's output in the cycle pass (G_I(G_S(I))):
    its running statistics would average real and generated inputs, while at test time it sees real ones.
    """
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        yield
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum


class PatchDiscriminator(nn.Module):
    """PatchGAN ``[B, 3, S, S] → [B, 1, S/8 − 2, S/8 − 2]`` real/fake scores (no sigmoid: LSGAN); S ≥ 24.

    4×4 convs: ndf (stride 2, no norm), 2·ndf and 4·ndf (stride 2), 8·ndf (stride 1), 1 (stride 1), padding 1,
    LeakyReLU 0.2 and BatchNorm between them. One output channel, as in PatchGAN; the released code gives
    its discriminators ``bits`` output channels, each scored by the same LSGAN loss.
    """

    def __init__(self, ndf: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out, stride in ((ndf, 2 * ndf, 2), (2 * ndf, 4 * ndf, 2), (4 * ndf, 8 * ndf, 1)):
            layers += [nn.Conv2d(c_in, c_out, 4, stride, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(8 * ndf, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        init_normal_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# --- losses ------------------------------------------------------------------------------------------------
def lsgan_generator_loss(fake_scores: Tensor) -> Tensor:
    """LSGAN generator loss ``mean (D(G(x)) − 1)²`` over patches and batch (Mao et al., eq. 2, b = c = 1)."""
    return F.mse_loss(fake_scores, torch.ones_like(fake_scores))


def lsgan_discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """LSGAN discriminator loss ``½ [mean (D(y) − 1)² + mean D(G(x))²]`` (Mao et al., eq. 2, a = 0, b = 1;
    halved as CycleGAN and the released code do)."""
    real = F.mse_loss(real_scores, torch.ones_like(real_scores))
    fake = F.mse_loss(fake_scores, torch.zeros_like(fake_scores))
    return 0.5 * (real + fake)


def cycle_loss(reconstructed: Tensor, original: Tensor, weight: float = 10.0) -> Tensor:
    """Cycle consistency ``λ · mean |G_back(G(x)) − x|`` (CycleGAN eq. 2; λ = 10 each way in GDH's code)."""
    return weight * F.l1_loss(reconstructed, original)


def hash_loss(h_image: Tensor, h_migrated: Tensor, b_image: Tensor, b_sketch: Tensor) -> Tensor:
    """GDH's hashing objective on a batch of n (image, sketch) pairs, ``[n, K]`` each:

    ``(‖B_I − H(I)‖² + ‖B_S − H(G_I(S))‖² + ‖H(I) − H(G_I(S))‖²) / n``: squared Frobenius norms (sums over
    bits and samples) divided by the batch size, as the released code divides its summed terms.
    """
    terms = (b_image - h_image).square().sum() + (b_sketch - h_migrated).square().sum()
    return (terms + (h_image - h_migrated).square().sum()) / h_image.shape[0]


def sign_codes(x: Tensor) -> Tensor:
    """``sign(x)`` as ±1 floats with sign(0) = +1 (binary codes have no zero)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def code_update(
    labels_onehot: Tensor,
    b_image: Tensor,
    b_sketch: Tensor,
    h_image: Tensor,
    h_sketch: Tensor,
    epsilon: float = 1e-5,
) -> tuple[Tensor, Tensor, Tensor]:
    """GDH's discrete step with one-hot labels Y ``[N, C]`` and codes/network outputs ``[N, K]``:

    D-step ``D = (2YᵀY + I)⁻¹ Yᵀ (B_I + B_S)`` (``[C, K]``: the least-squares fit of both code matrices by
    ``Y D`` with a unit ridge), then B-steps ``B_I = sign(Y D + ε H_I)``, ``B_S = sign(Y D + ε H_S)``, H the
    networks' last outputs for each sample (ε breaks the ties of ``Y D``; sign(0) = +1). Returns
    (D, B_I, B_S). Solved in float64; the codes come back in ``b_image``'s dtype.
    """
    y = labels_onehot.double()
    system = 2.0 * y.T @ y + torch.eye(y.shape[1], dtype=y.dtype, device=y.device)
    d = torch.linalg.solve(system, y.T @ (b_image.double() + b_sketch.double()))
    fitted = y @ d
    dtype = b_image.dtype
    new_image = sign_codes(fitted + epsilon * h_image.double()).to(dtype)
    new_sketch = sign_codes(fitted + epsilon * h_sketch.double()).to(dtype)
    return d, new_image, new_sketch


def squared_triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 18.0) -> Tensor:
    """GDH's fine-grained ranking term ``mean_b max(0, m + ‖a − p‖² − ‖a − n‖²)`` on squared Euclidean
    distances, margin m = 18 (the released code sums over the batch; here averaged)."""
    positive_distance = (anchor - positive).square().sum(dim=-1)
    negative_distance = (anchor - negative).square().sum(dim=-1)
    return F.relu(margin + positive_distance - negative_distance).mean()


def linear_decay_factor(epoch: int, decay_start: int, max_epochs: int) -> float:
    """The G/D learning-rate factor of the released code at (0-based) ``epoch``: 1 before ``decay_start``,
    then lowered by ``1 / (max_epochs − decay_start)`` at the start of each later epoch, down to 0 in the last
    (30 epochs, decay after 25: 0.8, 0.6, 0.4, 0.2, 0 in epochs 25–29)."""
    if epoch < decay_start or max_epochs <= decay_start:
        return 1.0
    return max(0.0, 1.0 - (epoch - decay_start + 1) / (max_epochs - decay_start))


class ImagePool:
    """CycleGAN's image history (Shrivastava et al., CVPR'17): the discriminator sees generated images from
    the pool as well as from the current batch.

    Until ``size`` images are stored every image is kept and returned; afterwards each image is returned
    with probability ½, or else swapped into the pool for a stored one, which is returned instead (draws
    from torch's global generator). ``size = 0`` returns the batch unchanged.
    """

    def __init__(self, size: int = 50) -> None:
        self.size = int(size)
        self.images: list[Tensor] = []

    def query(self, batch: Tensor) -> Tensor:
        if self.size == 0:
            return batch
        out = []
        for image in batch.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) < 0.5:
                slot = int(torch.randint(self.size, ()))
                out.append(self.images[slot])
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)


__all__ = [
    "AttentionMask",
    "Generator",
    "ImagePool",
    "PatchDiscriminator",
    "ResidualBlock",
    "code_update",
    "cycle_loss",
    "hash_loss",
    "imagenet_to_unit",
    "init_normal_",
    "linear_decay_factor",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "norm_layer",
    "sign_codes",
    "running_stats_frozen",
    "squared_triplet_loss",
    "unit_to_imagenet",
]
