"""Conditional adversarial autoencoder (CAAE) for zero-shot SBIR (Yelamarthi et al., "A Zero-Shot Framework
for Sketch Based Image Retrieval", ECCV'18, sec. 3.2).

A reconstruction: the paper describes the CAAE in a few lines and no code for it was released. Our reading:
the same conditional encoder q(z | x_img, x_sk), decoder p(x_img | z, x_sk), regulariser f_NN (weight 10),
fixed test-noise bank and retrieval by averaging decoded samples as the CVAE (``methods/cvae.py``, whose
code this class reuses by subclassing); the CVAE's KL term is replaced by the adversarial game on z of an
adversarial autoencoder (Makhzani et al., "Adversarial Autoencoders", 2015): a discriminator D tells prior
samples z ~ N(0, I) ("real") from encoder outputs ("fake"), and the encoder is trained to fool it,

    min_E max_D  E_{z ~ N(0, I)} [log D(z)] + E_{x} [log(1 − D(E(x_img, x_sk)))].

Choices of this reconstruction (the paper states none of them):

- discriminator ``latent → 512 → 512 → 1`` at the paper's latent 1024 (``Linear → BatchNorm → LeakyReLU(0.2)``
  per hidden layer, a logit out), modelled on the PyTorch discriminators of later ZS-SBIR code; trained with
  binary cross-entropy (``components/adversarial.py``). The CPU default keeps the ratio: latent 128 → 64 → 64;
- the encoder takes the non-saturating GAN loss ``−log D(E(x))`` in place of the KL term, with weight
  ``adversarial_weight`` (default 1, like the CVAE's KL weight): ``L = L_rec + w·L_adv + 10·L_reg``;
- the encoder stays Gaussian, ``z = μ + σ ε`` (Makhzani et al.'s "Gaussian posterior" variant), not the
  deterministic z = μ: the CVAE's tanh heads bound μ to (−1, 1), so a deterministic code could never cover
  the prior's tails, while σ = exp(½ log σ²) ∈ (0.61, 1.65) lets the aggregated posterior match N(0, I);
- updates per batch, manual optimisation with two Adam optimisers (lr 2e-4, betas (0.5, 0.999), as the
  CVAE): one for encoder + decoder + regressor, one for the discriminator. The encoder is run once, then
  (1) a discriminator step on prior codes against the detached encoder codes, (2) one autoencoder step on
  ``L`` above, judged by the updated discriminator. Makhzani et al. alternate a reconstruction phase and a
  regularisation phase (discriminator, then generator); folding the generator half into the reconstruction
  step keeps the adversarial term where the CVAE has its KL term and saves a third pass per batch;
- the discriminator always sees a batch of half prior, half encoder codes (the same prior draws in both
  steps), so its BatchNorm statistics are those of the same mixture in both steps;
- everything else as the CVAE, with its departures from the released CVAE code (module docstring there).

``configs/method/caae_paper.yaml`` gives the published CVAE widths at d = 4096 and the 512-512 discriminator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from sbir_bench.data.records import DataInfo
from sbir_bench.methods.components.adversarial import discriminator_loss, generator_loss
from sbir_bench.methods.components.losses import cvae_reconstruction_loss, sketch_regression_loss
from sbir_bench.methods.components.mlp import glorot_init_, leaky_discriminator
from sbir_bench.methods.cvae import CVAE
from sbir_bench.registry import register_method


def _plain(value: Any) -> Any:
    """Hydra's ListConfig (or a list) as a tuple: checkpoints must load with torch.load(weights_only=True)."""
    return tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else value


@register_method("caae")
class CAAE(CVAE):
    """CAAE of Yelamarthi et al. (ECCV'18), reconstructed; see the module docstring.

    Takes the CVAE's keyword arguments (sizes, dropout, regulariser weight, optimiser, test samples) except
    ``kl_weight``, plus ``adversarial_weight``, ``discriminator_hidden`` and ``leaky_slope``.
    """

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        adversarial_weight: float = 1.0,
        discriminator_hidden: Sequence[int] = (64, 64),
        leaky_slope: float = 0.2,
        **cvae_kwargs: Any,
    ) -> None:
        if "kl_weight" in cvae_kwargs:
            raise TypeError("CAAE has no KL term: its adversarial term is weighted by adversarial_weight")
        discriminator_hidden = tuple(int(w) for w in discriminator_hidden)
        cvae_kwargs = {name: _plain(value) for name, value in cvae_kwargs.items()}
        super().__init__(data, **cvae_kwargs)  # saves this frame's arguments too (Lightning walks __init__s)
        self.remove_ignored_hparams(["kl_weight"])
        if not discriminator_hidden:
            raise ValueError("CAAE needs at least one discriminator hidden layer")
        self.discriminator = leaky_discriminator(
            self.hparams.latent_dim, discriminator_hidden, slope=leaky_slope
        )
        glorot_init_(self.discriminator)
        self.automatic_optimization = False

    def draw_prior(self, like: Tensor) -> Tensor:
        """Prior samples z ~ N(0, I), the discriminator's "real" codes, one per encoder code."""
        return torch.randn_like(like)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        sketch, photo = batch["sketch"], batch["photo"]
        autoencoder_optimiser, discriminator_optimiser = self.optimizers()
        _, _, z = self.encode_sample(photo, sketch)
        prior = self.draw_prior(z)
        batch_size = sketch.shape[0]

        # (1) discriminator step: prior codes are real, the (detached) encoder codes fake
        real_logits, fake_logits = self.discriminator(torch.cat([prior, z.detach()])).split(batch_size)
        d_loss = discriminator_loss(real_logits, fake_logits)
        self.check_loss(d_loss, {"discriminator": d_loss})
        discriminator_optimiser.zero_grad()
        self.manual_backward(d_loss)
        discriminator_optimiser.step()

        # (2) autoencoder step: the CVAE loss with the KL term replaced by the non-saturating generator loss
        generated = self.decode(z, sketch)
        fake_logits = self.discriminator(torch.cat([prior, z]))[batch_size:]
        terms = {
            "reconstruction": cvae_reconstruction_loss(generated, photo),
            "adversarial": generator_loss(fake_logits),
            "regression": sketch_regression_loss(self.regressor(generated), sketch),
        }
        loss = (
            terms["reconstruction"]
            + self.hparams.adversarial_weight * terms["adversarial"]
            + self.hparams.regulariser_weight * terms["regression"]
        )
        self.check_loss(loss, terms)
        autoencoder_optimiser.zero_grad()
        self.manual_backward(loss)  # also leaves gradients on D: zeroed before its next step
        autoencoder_optimiser.step()

        self.log_training(loss, {**terms, "discriminator": d_loss}, batch_size)
        return loss.detach()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[autoencoder (encoder, heads, decoder, regressor), discriminator], both Adam as the CVAE's."""
        autoencoder = [p for name, p in self.named_parameters() if not name.startswith("discriminator.")]
        return [
            torch.optim.Adam(params, lr=self.hparams.lr, betas=self.hparams.betas)
            for params in (autoencoder, self.discriminator.parameters())
        ]
