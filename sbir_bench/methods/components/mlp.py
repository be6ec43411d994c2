"""Fully connected stacks as the Keras models of the ZS-SBIR code (Yelamarthi et al., ECCV'18) build them,
and the latent discriminator of the CAAE (a reconstruction, see ``methods/caae.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

# Keras' BatchNormalization defaults: epsilon 1e-3 and a moving average that keeps 0.99 of the old value,
# which is PyTorch's momentum 0.01 (PyTorch weighs the *new* batch statistic by ``momentum``).
KERAS_BATCHNORM_EPS = 1e-3
KERAS_BATCHNORM_MOMENTUM = 0.01


def dense_relu_stack(
    in_features: int, widths: Sequence[int], *, batch_norm: bool = False, dropout: float = 0.0
) -> nn.Sequential:
    """``Linear → ReLU`` for each width in turn (the last layer included).

    With ``batch_norm`` a BatchNorm1d follows each ReLU (Keras defaults, see the constants above); a
    ``dropout`` > 0 adds Dropout after every layer but the last, i.e. ``Dense(relu) → BN → Dropout`` between
    layers as in the released CVAE encoder.
    """
    if not widths:
        raise ValueError("dense_relu_stack needs at least one layer width")
    layers: list[nn.Module] = []
    for position, width in enumerate(widths):
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        if batch_norm:
            layers.append(nn.BatchNorm1d(width, eps=KERAS_BATCHNORM_EPS, momentum=KERAS_BATCHNORM_MOMENTUM))
        if dropout > 0 and position < len(widths) - 1:
            layers.append(nn.Dropout(dropout))
        in_features = width
    return nn.Sequential(*layers)


def leaky_discriminator(in_features: int, widths: Sequence[int], *, slope: float = 0.2) -> nn.Sequential:
    """A GAN discriminator: ``Linear → BatchNorm1d → LeakyReLU(slope)`` for each hidden width, then a
    ``Linear`` to one logit (no sigmoid: the losses take logits). PyTorch's BatchNorm defaults, as in the
    PyTorch discriminators of later ZS-SBIR code this one is modelled on."""
    if not widths:
        raise ValueError("leaky_discriminator needs at least one hidden width")
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.LeakyReLU(slope)]
        in_features = width
    layers.append(nn.Linear(in_features, 1))
    return nn.Sequential(*layers)


def glorot_init_(module: nn.Module) -> None:
    """Keras' ``Dense`` initialisation of every Linear in ``module``: Glorot-uniform weights, zero bias."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
