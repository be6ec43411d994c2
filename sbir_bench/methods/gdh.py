"""Generative Domain-Migration Hashing (GDH: Zhang et al., "Generative Domain-Migration Hashing for
Sketch-to-Image Retrieval", ECCV'18), category-level, end to end on images.

A generator G_I migrates sketches to the image domain; a hashing network H then codes real images and
migrated sketches alike. Verified from the released category-level code (``category/GDH.py``,
``category/network.py``); the parts live in :mod:`~sbir_bench.methods.components.domain_migration`:

- G_I (sketch → image) and G_S (image → sketch): CycleGAN ResNet generators (reflect padding, BatchNorm,
  residual blocks, tanh), with the attention layer (1×1 conv → ReLU → softmax over positions → threshold →
  binary mask) multiplying each generator's bottleneck features, after its residual blocks and before its
  decoder (the code's ``flag=True``; the code computes the mask but leaves it off, the paper uses it: on
  by default here, ``attention: false`` switches it off). Only the generators use the mask: H codes the
  unmasked image, as in the code, so database codes are ``sign(H(image))``;
- PatchGAN discriminators D_I (real images vs G_I(sketch)) and D_S (sketches vs G_S(image)), LSGAN losses,
  a history pool of 50 generated images each; cycle consistency L1, weight 10 each way;
- H: ResNet-18 with a K-bit linear head on its pooled output (512-d: the code's head took 2048), started
  from pre-trained weights (the code loads its own pre-trained H);
- per batch, in the code's order: one Adam step of both generators (LSGAN + cycle terms), one of D_I, one
  of D_S, one of H on the hash loss ``(‖B_I − H(I)‖² + ‖B_S − H(G_I(S))‖² + ‖H(I) − H(G_I(S))‖²) / n``
  with G_I(S) recomputed after the generator step and held fixed (the hash loss trains H only);
- at the start of every epoch, the discrete step on the per-sample training codes with one-hot labels Y:
  ``D = (2YᵀY + I)⁻¹Yᵀ(B_I + B_S)``, ``B = sign(Y D + 1e-5·H)`` (H: each sample's last outputs of H;
  codes start random ±1). With one-hot Y this gives every sample its class's code, a majority vote of
  the class's codes;
- Adam 2e-4, betas (0.5, 0.999) for G and D (constant, then linearly to 0 in the last epochs: paper
  30 epochs, decay after 25), Adam with betas (0.5, 0.999) for H; query codes ``sign(H(G_I(sketch)))``,
  database codes ``sign(H(image))``, ranked by Hamming distance.

Departures (besides the CPU-sized default, ``configs/method/gdh.yaml``):

- H's weights (``hash_init="backbone"``) are the data's backbone's (``data.backbone``, whose name
  ``hash_arch`` must be): ImageNet weights when it has them (the paper config: ImageNet ResNet-18 at 256 px),
  else the suite's stand-in for ImageNet pre-training, redone at H's input size when that differs from
  the backbone's (cached like it). The CPU default uses the default backbone, resnet10t, at 32 px: H from
  random weights does not learn within its two epochs (validation mAP@200 at chance). ``"random"``: timm's
  initialisation;
- ``joint_hash_loss`` (the CPU default; off in the paper config): the hash loss also trains G_I, through
  H, in the generators' step (one backward of the GAN, cycle and hash terms, then a step of G and of H)
  instead of the code's separate hashing step on a fixed G_I(S);
- ``generator_norm``: the code's BatchNorm (paper config) or InstanceNorm (CycleGAN's own default; the CPU
  default). With BatchNorm the test-time G_I normalises with running statistics, which in a two-epoch run
  lag weights that change fast, so queries pass a G_I that H was not trained on (validation mAP@200 of
  the CPU default, seed 0: 0.063 with G_I's running statistics, 0.121 with batch statistics); InstanceNorm
  computes the same in training and at test time (0.108);
- with BatchNorm, the generators' running statistics follow their real inputs only: the cycle passes
  G_S(G_I(S)) and G_I(G_S(I)) normalise with their batch statistics without updating them. In the code they
  do, so the test-time G_I normalises real sketches with statistics half drawn from G_S's fake sketches
  (validation mAP@200 0.051 with them, 0.115 without, BatchNorm CPU default, seed 0);
- the hash loss regresses onto the codes B (the released code's copy of B into the batch targets is
  commented out, so it regresses H(I) and H(G_I(S)) onto zeros), and H's outputs are recorded for the
  B-step (also commented out there, leaving ``sign(Y D)``);
- H sees each batch's images and migrated sketches in one call (one set of BatchNorm statistics, those
  the test-time running statistics average), on ImageNet-normalised inputs (generated images converted
  from [−1, 1]); the code calls H on each domain apart, on [−1, 1] images;
- H's learning rate is constant unless ``hash_lr_step`` > 0 (×0.1 every that many epochs): the code
  steps it down ×0.1 every 5 epochs, with an ad-hoc ×0.1 plateau in epochs 21–24;
- the discriminators have one output channel (the code gives them ``bits`` channels, each an LSGAN score);
- images arrive ImageNet-normalised from the suite's DataModule (random resized crop 0.8–1 and a flip
  while training: the code's resize to 286, random 256 crop and flip); the generators take them in
  [−1, 1] at ``image_size``, H at ``hash_image_size`` (bilinear, antialiased; null: as served);
- the tested checkpoint is the epoch of best validation mAP@200 (the suite's rule);
- the fine-grained variant is the registered method ``gdh_fg`` (:class:`GDHFineGrained`, ``mode
  "fine_grained"``): triplet batches (``annotated_triplets``: the sketch, its photo p⁺ and a negative photo
  p⁻), the GAN and cycle terms on (sketch, p⁺), and in place of the class-level hash loss and the D/B-steps
  the triplet hash loss ``mean max(0, m + ‖H(G_I(s)) − H(p⁺)‖² − ‖H(G_I(s)) − H(p⁻)‖²)``, margin m =
  ``triplet_margin`` = 18 on squared distances as in the released fine-grained code
  (:func:`~sbir_bench.methods.components.domain_migration.squared_triplet_loss`; averaged over the batch
  where the code sums); codes are ``sign(H(·))`` as in the category mode. Our reading: instance-level data
  has no class codes B, so no B-step;
- under DDP each rank records H's outputs for its own samples only (they only break ties in the B-step).

The training codes B, H's recorded outputs and the image pools are kept out of the state dict (test time
needs none of them) but travel in the checkpoint under ``gdh_training_state``, so a resumed run continues
with them. :meth:`GDH.summary_images` draws test sketches above their G_I(sketch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from sbir_bench.data.backbones import create_backbone
from sbir_bench.data.pretraining import pretrain_backbone
from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import QUERIES, RetrievalMethod
from sbir_bench.methods.components.domain_migration import (
    NORMS,
    Generator,
    ImagePool,
    PatchDiscriminator,
    code_update,
    cycle_loss,
    hash_loss,
    imagenet_to_unit,
    linear_decay_factor,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    running_stats_frozen,
    sign_codes,
    squared_triplet_loss,
    unit_to_imagenet,
)
from sbir_bench.registry import register_method

MODES = ("category", "fine_grained")
HASH_INITS = ("backbone", "random")
STATE_KEY = "gdh_training_state"
SUMMARY_SKETCHES = 8
SUMMARY_TILE = 64


def _resized(x: Tensor, size: int | None) -> Tensor:
    """``x`` at ``size`` × ``size`` (bilinear, antialiased); unchanged when ``size`` is None or already so."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def backbone_weights(datamodule: Any, arch: str, image_size: int | None) -> dict[str, Tensor]:
    """The weights of the data's backbone (``data.backbone``) for a network ``arch`` at ``image_size``.

    With ``pretrain_epochs > 0`` the suite's stand-in for ImageNet pre-training, with the backbone's recipe
    at ``image_size`` (the very weights the feature methods use when it equals ``data.backbone.image_size``;
    cached otherwise like them); else the backbone's initial weights (ImageNet through ``pretrained`` or
    ``weights_path``, or a seeded random initialisation). ``arch`` must be the backbone's name.
    """
    spec = datamodule.backbone
    if spec.name != arch:
        raise ValueError(
            f"gdh: hash_init='backbone' takes the weights of data.backbone ({spec.name!r}), but hash_arch "
            f"is {arch!r}: set method.kwargs.hash_arch={spec.name} or data.backbone.name={arch}, or "
            "method.kwargs.hash_init=random"
        )
    if spec.pretrain_epochs > 0:
        spec = replace(spec, image_size=image_size or spec.image_size)
        path = pretrain_backbone(
            datamodule.catalog,
            spec,
            datamodule.cache_dir,
            num_workers=datamodule.num_workers,
            accelerator=datamodule.accelerator,
        )
        return torch.load(path, map_location="cpu", weights_only=True)
    return create_backbone(spec).state_dict()


@register_method("gdh")
class GDH(RetrievalMethod):
    """GDH (Zhang et al., ECCV'18); see the module docstring. ``bits``: the code length K."""

    inputs: ClassVar[str] = "images"
    train_sampling: ClassVar[str] = "pairs"
    distance = "hamming"
    mode_of_class: ClassVar[str] = (
        "category"  # the mode this class trains (its batches); gdh_fg: fine_grained
    )

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        bits: int = 64,
        mode: str | None = None,
        image_size: int | None = 32,
        ngf: int = 8,
        ndf: int = 8,
        num_blocks: int = 2,
        generator_norm: str = "batch",
        attention: bool = True,
        attention_threshold: float = 0.1,
        cycle_weight: float = 10.0,
        pool_size: int = 50,
        lr: float = 2e-4,
        betas: Sequence[float] = (0.5, 0.999),
        lr_decay_start: int = 25,
        hash_lr: float = 2e-4,
        hash_lr_step: int = 0,
        joint_hash_loss: bool = False,
        hash_arch: str = "resnet18",
        hash_init: str = "backbone",
        hash_image_size: int | None = None,
        code_epsilon: float = 1e-5,
        triplet_margin: float = 18.0,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        # plain values, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        betas, eval_metrics = tuple(float(b) for b in betas), tuple(str(m) for m in eval_metrics)
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
            raise ValueError(f"gdh: bits (the code length) must be a positive integer, got {bits!r}")
        mode = self.mode_of_class if mode is None else mode
        if mode not in MODES:
            raise ValueError(f"gdh: unknown mode {mode!r}; implemented: {MODES}")
        if mode != self.mode_of_class:
            other = "gdh_fg" if mode == "fine_grained" else "gdh"
            raise ValueError(
                f"gdh: mode {mode!r} trains on other batches than this method's: use method={other}"
            )
        triplet_margin = float(triplet_margin)
        if not triplet_margin > 0:
            raise ValueError(f"gdh: triplet_margin must be positive, got {triplet_margin}")
        if image_size is not None and (image_size < 24 or image_size % 4):
            raise ValueError(
                f"gdh: image_size must be a multiple of 4 and at least 24 (the generators downsample by 4, "
                f"the PatchGAN by 8), got {image_size}"
            )
        if hash_init not in HASH_INITS:
            raise ValueError(f"gdh: unknown hash_init {hash_init!r}; expected one of {HASH_INITS}")
        if not timm.is_model(hash_arch):
            raise ValueError(f"gdh: hash_arch {hash_arch!r} is not a timm model name")
        super().__init__(data, eval_metrics=eval_metrics)
        self.save_hyperparameters(ignore=["data"])
        if generator_norm not in NORMS:
            raise ValueError(f"gdh: unknown generator_norm {generator_norm!r}; expected one of {NORMS}")
        gen = dict(
            ngf=ngf,
            num_blocks=num_blocks,
            attention=attention,
            attention_threshold=attention_threshold,
            norm=generator_norm,
        )
        self.sketch_to_image = Generator(**gen)  # G_I
        self.image_to_sketch = Generator(**gen)  # G_S
        self.image_discriminator = PatchDiscriminator(ndf)  # D_I: real images vs G_I(sketch)
        self.sketch_discriminator = PatchDiscriminator(ndf)  # D_S: sketches vs G_S(image)
        self.hash_net = timm.create_model(hash_arch, pretrained=False, num_classes=int(bits))
        self.automatic_optimization = False
        # training state, kept out of the state dict (see the module docstring)
        self._row_lookup: Tensor | None = None  # catalog record index of a training sketch -> row 0..N-1
        self._labels_onehot: Tensor | None = None  # Y, [N, C]
        self._codes: dict[str, Tensor] | None = None  # b_image, b_sketch, h_image, h_sketch: [N, K]
        self._restored: dict[str, Tensor] | None = None
        self._pools = {"image": ImagePool(pool_size), "sketch": ImagePool(pool_size)}

    # --- inputs ----------------------------------------------------------------------------------------
    @property
    def hash_size(self) -> int | None:
        """H's input size: ``hash_image_size``, else ``image_size`` (None: as served)."""
        return self.hparams.hash_image_size or self.hparams.image_size

    def generator_input(self, x: Tensor) -> Tensor:
        """ImageNet-normalised images → [−1, 1] at ``image_size``: the generators' input."""
        return _resized(imagenet_to_unit(x), self.hparams.image_size)

    def hash_input(self, x: Tensor, generated: bool = False) -> Tensor:
        """H's input: ImageNet-normalised at :attr:`hash_size`, from served images or (``generated``) from a
        generator's [−1, 1] output."""
        return _resized(unit_to_imagenet(x) if generated else x, self.hash_size)

    # --- training data facts: the rows of B --------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """``hash_init="backbone"``: before training, H takes the weights of the data's backbone (a resumed
        run's checkpoint then overrides them); see :func:`backbone_weights`."""
        if stage != "fit" or self.hparams.hash_init != "backbone":
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "backbone"):
            raise RuntimeError(
                "gdh: hash_init='backbone' needs the suite's RetrievalDataModule (data.backbone)"
            )
        state = backbone_weights(datamodule, self.hparams.hash_arch, self.hash_size)
        result = self.hash_net.load_state_dict(state, strict=False)  # the backbone has no classifier
        head = self.hash_net.pretrained_cfg.get("classifier", "fc")
        if result.unexpected_keys or set(result.missing_keys) - {f"{head}.weight", f"{head}.bias"}:
            raise ValueError(
                f"gdh: the backbone's weights do not fit {self.hparams.hash_arch} (missing "
                f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
            )

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "_training_sets"):
            raise RuntimeError(
                "gdh trains through the suite's RetrievalDataModule: its training set gives B's rows"
            )
        sketches, _, labels, _ = datamodule._training_sets()
        lookup = torch.full((int(sketches.max()) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(sketches, dtype=torch.long)] = torch.arange(len(sketches))
        self._row_lookup = lookup.to(self.device)
        onehot = F.one_hot(torch.tensor(labels, dtype=torch.long), self.data_info.num_classes)
        self._labels_onehot = onehot.float().to(self.device)

    def rows(self, sketch_index: Tensor) -> Tensor:
        assert self._row_lookup is not None
        return self._row_lookup[sketch_index.to(self._row_lookup.device)]

    def _start_codes(self) -> None:
        """Random ±1 codes and zero outputs (the released code's start), or those of a resumed checkpoint."""
        assert self._labels_onehot is not None
        n, bits = self._labels_onehot.shape[0], self.hparams.bits
        restored = self._restored or {}
        if restored.get("b_image") is not None and tuple(restored["b_image"].shape) == (n, bits):
            self._codes = {
                k: restored[k].to(self.device) for k in ("b_image", "b_sketch", "h_image", "h_sketch")
            }
            for name, pool in self._pools.items():
                pool.images = list(restored[f"pool_{name}"].to(self.device).unbind())
        else:
            self._codes = {
                "b_image": sign_codes(torch.randn(n, bits)).to(self.device),
                "b_sketch": sign_codes(torch.randn(n, bits)).to(self.device),
                "h_image": torch.zeros(n, bits, device=self.device),
                "h_sketch": torch.zeros(n, bits, device=self.device),
            }
        self._restored = None

    def on_train_epoch_start(self) -> None:
        """Learning rates of the epoch, then GDH's D-step and B-step on the training codes."""
        self._set_learning_rates()
        if self._codes is None:
            self._start_codes()
        assert self._codes is not None and self._labels_onehot is not None
        _, b_image, b_sketch = code_update(
            self._labels_onehot,
            self._codes["b_image"],
            self._codes["b_sketch"],
            self._codes["h_image"],
            self._codes["h_sketch"],
            epsilon=self.hparams.code_epsilon,
        )
        self._codes.update(b_image=b_image, b_sketch=b_sketch)

    def _set_learning_rates(self) -> None:
        """The G/D learning rate's linear decay and H's step schedule, for the current epoch."""
        epoch, max_epochs = self.current_epoch, int(self.trainer.max_epochs or 1)
        factor = linear_decay_factor(epoch, self.hparams.lr_decay_start, max_epochs)
        *adversarial, hashing = self.optimizers()
        for optimiser in adversarial:
            for group in optimiser.param_groups:
                group["lr"] = self.hparams.lr * factor
        step = self.hparams.hash_lr_step
        for group in hashing.param_groups:
            group["lr"] = self.hparams.hash_lr * (0.1 ** (epoch // step) if step > 0 else 1.0)

    # --- training ------------------------------------------------------------------------------------------
    def _check(self, loss: Tensor, terms: Mapping[str, Tensor], network: str, lr_name: str) -> None:
        hint = (
            f"the {network}'s loss is not finite at epoch {self.current_epoch}: lower {lr_name} "
            f"({self.hparams[lr_name]}) or check the input images"
        )
        named = {f"{network}/{name}": value.detach() for name, value in terms.items()}
        self.check_loss(loss.detach(), named, hint=hint)

    def _hash_loss(self, batch: dict[str, Tensor], migrated: Tensor) -> Tensor:
        """The hash loss of a batch, its rows of B as targets; records H's outputs for the next B-step."""
        inputs = torch.cat([self.hash_input(batch["photo"]), self.hash_input(migrated, generated=True)])
        h_image, h_migrated = self.hash_net(inputs).split(migrated.shape[0])
        rows = self.rows(batch["sketch_index"])
        assert self._codes is not None
        loss = hash_loss(h_image, h_migrated, self._codes["b_image"][rows], self._codes["b_sketch"][rows])
        self._codes["h_image"][rows] = h_image.detach().float()
        self._codes["h_sketch"][rows] = h_migrated.detach().float()
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """One Adam step of each network on the batch (module docstring; ``joint_hash_loss`` merges the
        generator and hashing steps into one)."""
        opt_generators, opt_image_d, opt_sketch_d, opt_hash = self.optimizers()
        sketch, image = self.generator_input(batch["sketch"]), self.generator_input(batch["photo"])
        joint = self.hparams.joint_hash_loss

        # (1) generators: LSGAN + cycle consistency, both directions (+ the hash loss through G_I: joint)
        fake_image, fake_sketch = self.sketch_to_image(sketch), self.image_to_sketch(image)
        weight = self.hparams.cycle_weight
        with running_stats_frozen(self.image_to_sketch), running_stats_frozen(self.sketch_to_image):
            reconstructed_sketch = self.image_to_sketch(fake_image)
            reconstructed_image = self.sketch_to_image(fake_sketch)
        g_terms = {
            "gan_image": lsgan_generator_loss(self.image_discriminator(fake_image)),
            "cycle_sketch": cycle_loss(reconstructed_sketch, sketch, weight),
            "gan_sketch": lsgan_generator_loss(self.sketch_discriminator(fake_sketch)),
            "cycle_image": cycle_loss(reconstructed_image, image, weight),
        }
        g_loss = sum(g_terms.values())
        self._check(g_loss, g_terms, "generator", "lr")
        opt_generators.zero_grad()
        if joint:
            h_loss = self._hash_loss(batch, fake_image)
            self._check(h_loss, {"hash": h_loss}, "hashing network", "hash_lr")
            opt_hash.zero_grad()
            self.manual_backward(g_loss + h_loss)
            opt_hash.step()
        else:
            self.manual_backward(g_loss)
        opt_generators.step()

        # (2) discriminators: real vs generated (from the history pools)
        d_losses = {}
        for name, discriminator, real, fake, optimiser in (
            ("image", self.image_discriminator, image, fake_image, opt_image_d),
            ("sketch", self.sketch_discriminator, sketch, fake_sketch, opt_sketch_d),
        ):
            pooled = self._pools[name].query(fake.detach())
            d_loss = lsgan_discriminator_loss(discriminator(real), discriminator(pooled))
            self._check(d_loss, {name: d_loss}, "discriminator", "lr")
            optimiser.zero_grad()
            self.manual_backward(d_loss)
            optimiser.step()
            d_losses[f"discriminator_{name}"] = d_loss

        # (3) the released code's hashing step: G_I(S) recomputed after the generator step, held fixed
        if not joint:
            with torch.no_grad():
                migrated = self.sketch_to_image(sketch)
            h_loss = self._hash_loss(batch, migrated)
            self._check(h_loss, {"hash": h_loss}, "hashing network", "hash_lr")
            opt_hash.zero_grad()
            self.manual_backward(h_loss)
            opt_hash.step()

        self.log_training(h_loss, {**g_terms, "generator": g_loss, **d_losses}, sketch.shape[0])

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[generators (G_I and G_S), D_I, D_S, H], all Adam with ``betas`` (PyTorch's fused kernel on CPU and
        CUDA: the same update, ≈5× faster than the per-tensor loop for H on a CPU)."""
        generators = [*self.sketch_to_image.parameters(), *self.image_to_sketch.parameters()]
        adam = dict(betas=self.hparams.betas, fused=self.device.type in ("cpu", "cuda"))
        return [
            torch.optim.Adam(generators, lr=self.hparams.lr, **adam),
            torch.optim.Adam(self.image_discriminator.parameters(), lr=self.hparams.lr, **adam),
            torch.optim.Adam(self.sketch_discriminator.parameters(), lr=self.hparams.lr, **adam),
            torch.optim.Adam(self.hash_net.parameters(), lr=self.hparams.hash_lr, **adam),
        ]

    # --- checkpoints: the training state beside the weights ------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._codes is not None:
            state = {k: v.detach().cpu() for k, v in self._codes.items()}
            for name, pool in self._pools.items():
                state[f"pool_{name}"] = torch.stack(pool.images).cpu() if pool.images else torch.empty(0)
            checkpoint[STATE_KEY] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored = checkpoint.get(STATE_KEY)
        self._codes = None

    # --- retrieval -----------------------------------------------------------------------------------------
    def migrate(self, sketches: Tensor) -> Tensor:
        """G_I(sketch) in [−1, 1], at ``image_size``, from ImageNet-normalised sketches."""
        return self.sketch_to_image(self.generator_input(sketches))

    def embed_query(self, x: Tensor) -> Tensor:
        """``sign(H(G_I(sketch)))``: ±1 codes ``[B, bits]``."""
        return sign_codes(self.hash_net(self.hash_input(self.migrate(x), generated=True)))

    def embed_gallery(self, x: Tensor) -> Tensor:
        """``sign(H(image))``: ±1 codes ``[B, bits]``."""
        return sign_codes(self.hash_net(self.hash_input(x)))

    # --- artefacts -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def summary_images(self, datamodule: Any) -> dict[str, tuple[Image.Image, str]]:
        """Up to 8 test sketches (evenly spaced over the query list) above their G_I(sketch), 64-px tiles."""
        dataset = datamodule.test_dataloader()[QUERIES].dataset
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(SUMMARY_SKETCHES, len(dataset))).astype(int))
        sketches = torch.stack([dataset[int(i)]["input"] for i in picks]).to(self.device)
        was_training = self.training
        self.eval()
        migrated = self.migrate(sketches)
        self.train(was_training)
        rows = [imagenet_to_unit(sketches), migrated]
        tiles = [F.interpolate(r, size=(SUMMARY_TILE, SUMMARY_TILE), mode="bilinear") for r in rows]
        grid = make_grid((torch.cat(tiles) + 1) / 2, nrow=len(picks), padding=2, pad_value=1.0).clamp(0, 1)
        pixels = (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy()
        caption = (
            f"GDH: {len(picks)} test sketches (top) and their migration G_I(sketch) to the image domain "
            f"(bottom), the sketches' query codes are sign(H(G_I(sketch)))"
        )
        return {"migrated_sketches": (Image.fromarray(pixels), caption)}


@register_method("gdh_fg")
class GDHFineGrained(GDH):
    """GDH's fine-grained mode (module docstring): triplet batches, the GAN and cycle terms on (sketch, its
    photo), and the triplet hash loss (margin ``triplet_margin`` on squared distances) on
    ``H(G_I(sketch))``, ``H(p⁺)``, ``H(p⁻)``; no class codes, no D/B-steps."""

    train_sampling: ClassVar[str] = "annotated_triplets"
    mode_of_class: ClassVar[str] = "fine_grained"

    def on_fit_start(self) -> None:  # no rows of B: instance-level data has no class codes
        pass

    def on_train_epoch_start(self) -> None:
        self._set_learning_rates()

    def _hash_loss(self, batch: dict[str, Tensor], migrated: Tensor) -> Tensor:
        """``mean max(0, m + ‖H(G_I(s)) − H(p⁺)‖² − ‖H(G_I(s)) − H(p⁻)‖²)`` in one call of H."""
        inputs = torch.cat(
            [
                self.hash_input(migrated, generated=True),
                self.hash_input(batch["positive"]),
                self.hash_input(batch["negative"]),
            ]
        )
        anchor, positive, negative = self.hash_net(inputs).split(migrated.shape[0])
        return squared_triplet_loss(anchor, positive, negative, margin=self.hparams.triplet_margin)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """GDH's training step with the sketch's own photo (the triplet's positive) as its pair."""
        missing = [key for key in ("sketch", "positive", "negative") if key not in batch]
        if missing:
            raise KeyError(
                f"gdh_fg trains on triplet batches (sketch, positive, negative); this one lacks {missing}"
            )
        super().training_step({**batch, "photo": batch["positive"]}, batch_idx)


__all__ = ["GDH", "GDHFineGrained"]
