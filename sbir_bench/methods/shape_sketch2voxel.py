"""Sketch → 3D reconstruction by retrieval and shape-code pooling (Wang, Qian, Wang & Fang, "Unsupervised
Learning of 3D Model Reconstruction from Hand-Drawn Sketches", ACM MM 2018).

Three parts, trained side by side (each with its own optimiser; their losses share no parameter):

1. **Adaptation network**: an autoencoder per domain (sketch, rendered view) whose encoders E_s, E_v map
   into one latent space and whose decoders reconstruct the input (mean squared error); a latent
   discriminator tells sketch codes from view codes and E_s learns to fool it (non-saturating GAN loss),
   so that sketches land among the views.
2. **Voxel autoencoder**: 32³ occupancy grids (the dataset's meshes voxelised once and cached,
   :mod:`sbir_bench.data.voxels`) → 200-d shape codes → grids, trained with a binary cross-entropy.
3. **3D discriminator**, BEGAN-style (Berthelot et al., 2017): an L1 autoencoder on grids;
   L_D = L(x) − k_t·L(G(z)), the decoder adds L(G(z)), and k_t follows eq. 4 (γ = 0.5, λ_k = 0.001). The
   generated grids G(z) are decodes of *pooled* codes (each training shape's code mixed with those of the
   other shapes of its class in the batch, weights 0.5, 0.4, ...), the kind of code the decoder meets at
   test time.

At test time a sketch's K = 5 nearest rendered views (Euclidean distance in the latent space) give their
models, whose shape codes are pooled with weights 0.5, 0.4, 0.3, 0.2, 0.1 (normalised to sum to 1) and
decoded: the reconstruction (occupied where the decoder's probability exceeds 0.5). Retrieval ranks a model
by its nearest view (``distance = "custom"``, the minimum over views). The record holds, besides the
retrieval metrics, ``voxel_iou`` (reconstructions), ``voxel_iou_nn`` (the nearest-neighbour-shape baseline
under this method's own ranking: the top retrieved model as the reconstruction) and
``voxel_iou_backbone_nn`` (the same under the untrained backbone features, the ``baseline`` method's
ranking), all as the mean best IoU within the query's class (:mod:`sbir_bench.evaluation.reconstruction`);
a grid of sketches, reconstructions and nearest models is logged.

Where this implementation departs from the paper (``README``, method table):

- inputs: the suite's cached backbone features of sketches and views (``inputs = "view_features"``); the
  adaptation autoencoders are MLPs on them, where the paper encodes and decodes the images;
- a class term is ours, so that the nearest views of a sketch are of its class on small data: the latent
  codes lie on the unit sphere and both domains' codes are classified by a softmax over cos(z, w_c)/T
  against learned class prototypes w_c (T = 0.1, as open cross-domain search), weight ``class_weight``;
  ``class_weight: 0`` is the paper's unsupervised adaptation;
- the three parts train jointly from the first epoch with Adam; the voxel nets are narrowed (channels
  8-16-32, the 3D-GAN layout of Wu et al.), and the decoder's BCE weighs occupied voxels by
  ``occupied_weight``;
- which codes the 3D discriminator sees as generated (pooled same-class codes) is our reading: the paper
  names the BEGAN losses, not the batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torchvision.utils import make_grid

from sbir_bench.data.records import DataInfo
from sbir_bench.data.voxels import voxel_image
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.evaluation.reconstruction import best_class_iou, nearest_model_iou
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.adversarial import discriminator_loss, generator_loss
from sbir_bench.methods.components.branch import embedding_branch
from sbir_bench.methods.components.mlp import leaky_discriminator
from sbir_bench.methods.components.prototype_search import prototype_loss
from sbir_bench.methods.components.shape_batches import check_class_batch, view_stack
from sbir_bench.methods.components.shape_siamese import min_view_distance
from sbir_bench.methods.components.sketch_reconstruction import (
    BEGAN_GAMMA,
    BEGAN_LAMBDA_K,
    NEIGHBOUR_WEIGHTS,
    VOXEL_RESOLUTION,
    VoxelDecoder,
    began_autoencoder_loss,
    began_convergence,
    began_discriminator_loss,
    began_k_update,
    feature_reconstruction_loss,
    nearest_view_models,
    neighbour_weights,
    pooled_codes,
    voxel_encoder,
    voxel_reconstruction_loss,
)
from sbir_bench.registry import register_method

GRID_QUERIES = 8  # sketches in the logged reconstruction grid
GRID_TILE = 96  # pixels per tile
_DECODE_BATCH = 64


@register_method("sketch2voxel")
class Sketch2Voxel(RetrievalMethod):
    """Wang et al.'s adaptation network, voxel autoencoder and BEGAN 3D discriminator (module docstring)."""

    inputs: ClassVar[str] = "view_features"
    train_sampling: ClassVar[str] = "class_batches"
    class_batch: ClassVar[tuple[int, int, int]] = (8, 4, 2)
    distance = "custom"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        hidden: Sequence[int] = (256,),
        latent_dim: int = 64,
        code_dim: int = 200,
        voxel_channels: Sequence[int] = (8, 16, 32),
        discriminator_channels: Sequence[int] = (4, 8, 16),
        discriminator_code: int = 32,
        neighbours: int = 5,
        class_weight: float = 1.0,
        temperature: float = 0.1,
        latent_adversarial_weight: float = 0.1,
        voxel_adversarial_weight: float = 0.1,
        occupied_weight: float = 3.0,
        gamma: float = BEGAN_GAMMA,
        lambda_k: float = BEGAN_LAMBDA_K,
        lr: float = 1e-3,
        voxel_lr: float = 3e-3,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        # plain values, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        hidden, eval_metrics = tuple(int(w) for w in hidden), tuple(str(m) for m in eval_metrics)
        voxel_channels = tuple(int(c) for c in voxel_channels)
        discriminator_channels = tuple(int(c) for c in discriminator_channels)
        weights = {
            "class_weight": float(class_weight),
            "latent_adversarial_weight": float(latent_adversarial_weight),
            "voxel_adversarial_weight": float(voxel_adversarial_weight),
        }
        occupied_weight, gamma, lambda_k, lr = (
            float(occupied_weight),
            float(gamma),
            float(lambda_k),
            float(lr),
        )
        temperature, voxel_lr = float(temperature), float(voxel_lr)
        super().__init__(data, eval_metrics=eval_metrics)
        self.save_hyperparameters(ignore=["data"])
        if min(weights.values()) < 0 or not all(math.isfinite(w) for w in weights.values()):
            raise ValueError(f"sketch2voxel: the loss weights must be finite and >= 0, got {weights}")
        positive = {
            "occupied_weight": occupied_weight,
            "lr": lr,
            "voxel_lr": voxel_lr,
            "gamma": gamma,
            "temperature": temperature,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"sketch2voxel: {name} must be a finite positive number, got {value}")
        if not 0 <= lambda_k <= 1:
            raise ValueError(f"sketch2voxel: lambda_k must lie in [0, 1], got {lambda_k}")
        neighbour_weights(int(neighbours))  # 1 <= K <= 5, else a clear error
        for name, channels in (
            ("voxel_channels", voxel_channels),
            ("discriminator_channels", discriminator_channels),
        ):
            if not 1 <= len(channels) <= 5 or min(channels) < 1:
                raise ValueError(f"sketch2voxel: {name} needs 1 to 5 positive widths, got {channels}")
        if self.data_info.feature_dim is None:
            raise ValueError("sketch2voxel works on backbone view features, but DataInfo.feature_dim is None")
        dim, latent = int(self.data_info.feature_dim), int(latent_dim)
        self.sketch_encoder = embedding_branch(dim, hidden, latent)
        self.view_encoder = embedding_branch(dim, hidden, latent)
        self.sketch_decoder = embedding_branch(latent, hidden[::-1], dim)
        self.view_decoder = embedding_branch(latent, hidden[::-1], dim)
        self.classifier = nn.Linear(latent, self.data_info.num_classes, bias=False)  # rows: class prototypes
        self.latent_discriminator = leaky_discriminator(latent, hidden)
        self.voxel_encoder = voxel_encoder(int(code_dim), voxel_channels)
        self.voxel_decoder = VoxelDecoder(int(code_dim), voxel_channels[::-1])
        self.shape_discriminator = nn.Sequential(
            voxel_encoder(int(discriminator_code), discriminator_channels),
            VoxelDecoder(int(discriminator_code), discriminator_channels[::-1]),
            nn.Sigmoid(),
        )
        self.register_buffer("began_k", torch.zeros(()))  # k_t, saved with the checkpoint (resumes exactly)
        self.automatic_optimization = False
        self._train_voxels: Tensor | None = None  # [N, R, R, R] bool, the training models (on_fit_start)
        self._voxel_row: Tensor | None = None  # record index -> row of _train_voxels (-1: none)
        self._grid: dict[str, Any] = {}

    # --- data ----------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Voxelise (or read from the cache) every training model once."""
        datamodule = self.trainer.datamodule
        if not hasattr(datamodule, "shape_voxels"):
            raise RuntimeError("sketch2voxel needs a DataModule with shape_voxels (meshes to voxelise)")
        records = datamodule._training_sets()[3].index.to_numpy()
        self.set_training_voxels(records, datamodule.shape_voxels(records, VOXEL_RESOLUTION))

    def set_training_voxels(self, records: np.ndarray, voxels: np.ndarray) -> None:
        """The training models' occupancy grids, by catalog record index (kept out of the checkpoint)."""
        lookup = torch.full((int(records.max()) + 1,), -1, dtype=torch.long)
        lookup[torch.as_tensor(records, dtype=torch.long)] = torch.arange(len(records))
        self._voxel_row, self._train_voxels = lookup, torch.as_tensor(np.asarray(voxels, dtype=bool))

    def batch_voxels(self, shape_records: Tensor) -> Tensor:
        """``[M]`` record indices of a batch's shapes → ``[M, 1, R, R, R]`` float occupancy."""
        if self._train_voxels is None or self._voxel_row is None:
            raise RuntimeError(
                "sketch2voxel: no training voxels; on_fit_start (or set_training_voxels) sets them"
            )
        records = shape_records.cpu().long()
        known = records < len(self._voxel_row)
        rows = torch.where(known, self._voxel_row[records.clamp(max=len(self._voxel_row) - 1)], -1)
        if (rows < 0).any():
            raise KeyError(
                f"sketch2voxel: record {int(records[rows < 0][0])} is not a voxelised training model"
            )
        return self._train_voxels[rows].unsqueeze(1).to(self.device, torch.float32)

    # --- training ------------------------------------------------------------------------------------
    def adaptation_terms(self, batch: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """The adaptation network's terms (reconstruction per domain, class) and the latent codes of the
        batch's sketches and views; the sketch encoder's GAN term follows the latent critic's step."""
        sketch = batch["sketch"]
        views = view_stack(batch["shape"], self.method_name)
        view_features = views.flatten(0, 1)
        view_labels = batch["shape_label"].long().repeat_interleave(views.shape[1])
        sketch_codes = self.encode(self.sketch_encoder, sketch)
        view_codes = self.encode(self.view_encoder, view_features)
        terms = {
            "sketch_reconstruction": feature_reconstruction_loss(sketch, self.sketch_decoder(sketch_codes)),
            "view_reconstruction": feature_reconstruction_loss(view_features, self.view_decoder(view_codes)),
            "class": self.class_term(sketch_codes, batch["sketch_label"].long())
            + self.class_term(view_codes, view_labels),
        }
        return terms, sketch_codes, view_codes

    @staticmethod
    def encode(encoder: nn.Module, x: Tensor) -> Tensor:
        """Latent codes on the unit sphere (so the class term's cosines and the Euclidean ranking agree)."""
        return F.normalize(encoder(x), dim=-1)

    def class_term(self, codes: Tensor, labels: Tensor) -> Tensor:
        """Softmax cross-entropy of cos(z, w_c)/T over the learned class prototypes w_c (ours, see above)."""
        return prototype_loss(codes, labels, self.classifier.weight, temperature=self.hparams.temperature)

    def adaptation_loss(self, terms: Mapping[str, Tensor]) -> Tensor:
        hp = self.hparams
        return (
            terms["sketch_reconstruction"]
            + terms["view_reconstruction"]
            + hp.class_weight * terms["class"]
            + hp.latent_adversarial_weight * terms["latent_generator"]
        )

    def mixed_codes(self, codes: Tensor, labels: Tensor) -> Tensor:
        """Per shape, its code pooled with the batch's other shapes of its class (itself first, the others
        in batch order, at most K), weights 0.5, 0.4, ... normalised: the decoder's "generated" inputs."""
        limit = self.hparams.neighbours
        mixed = []
        for position in range(len(codes)):
            peers = torch.nonzero(labels == labels[position]).flatten()
            order = torch.cat([peers[peers == position], peers[peers != position]])[:limit]
            mixed.append(pooled_codes(codes, order.unsqueeze(0), neighbour_weights(len(order))))
        return torch.cat(mixed)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        check_class_batch(batch, self.method_name)
        adaptation, latent_critic, voxels, critic = self.optimizers()
        size = len(batch["sketch_label"])
        terms, sketch_codes, view_codes = self.adaptation_terms(batch)
        latent_d = discriminator_loss(
            self.latent_discriminator(view_codes.detach()), self.latent_discriminator(sketch_codes.detach())
        )
        self.check_loss(
            latent_d,
            {"latent_discriminator": latent_d},
            hint="the latent discriminator's GAN loss (adaptation network): lower lr or check the features",
        )
        self._step(latent_critic, latent_d)
        terms["latent_generator"] = generator_loss(self.latent_discriminator(sketch_codes))
        loss = self.adaptation_loss(terms)
        self.check_loss(loss, terms, hint="the adaptation network's loss: lower lr or check the features")
        self._step(adaptation, loss)  # also leaves gradients on the latent critic: zeroed before its step

        grids = self.batch_voxels(batch["shape_index"])
        codes = self.voxel_encoder(grids)
        generated = torch.sigmoid(self.voxel_decoder(self.mixed_codes(codes, batch["shape_label"])))
        voxel_terms = {
            "voxel_reconstruction": voxel_reconstruction_loss(
                self.voxel_decoder(codes), grids, self.hparams.occupied_weight
            ),
            "voxel_generator": began_autoencoder_loss(generated, self.shape_discriminator(generated)),
        }
        voxel_loss = (
            voxel_terms["voxel_reconstruction"]
            + self.hparams.voxel_adversarial_weight * voxel_terms["voxel_generator"]
        )
        self.check_loss(voxel_loss, voxel_terms, hint="the voxel autoencoder's loss: lower lr")
        self._step(voxels, voxel_loss)

        fake = generated.detach()
        real_l = began_autoencoder_loss(grids, self.shape_discriminator(grids))
        fake_l = began_autoencoder_loss(fake, self.shape_discriminator(fake))
        critic_loss = began_discriminator_loss(real_l, fake_l, self.began_k)
        self.check_loss(
            critic_loss, {"real": real_l, "fake": fake_l}, hint="the 3D discriminator's BEGAN loss: lower lr"
        )
        self._step(critic, critic_loss)
        hp = self.hparams
        self.began_k.copy_(began_k_update(self.began_k, real_l, fake_l, hp.gamma, hp.lambda_k))
        logged = {
            **{name: value.detach() for name, value in {**terms, **voxel_terms}.items()},
            "latent_discriminator": latent_d.detach(),
            "shape_discriminator": critic_loss.detach(),
            "began_k": self.began_k.clone(),
            "began_convergence": began_convergence(real_l, fake_l, hp.gamma),
        }
        self.log_training(loss.detach() + voxel_loss.detach(), logged, batch_size=size)

    def _step(self, optimiser: Any, loss: Tensor) -> None:
        optimiser.zero_grad()
        self.manual_backward(loss)
        optimiser.step()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[adaptation network, latent discriminator, voxel autoencoder, 3D discriminator]: Adam at ``lr`` for
        the first two, ``voxel_lr`` for the voxel nets (at 1e-3 the autoencoder can sit for hundreds of steps
        on a plateau where no voxel decodes as occupied; measured on synthetic_3d)."""
        lr, voxel_lr = self.hparams.lr, self.hparams.voxel_lr
        adaptation = [
            *self.sketch_encoder.parameters(),
            *self.view_encoder.parameters(),
            *self.sketch_decoder.parameters(),
            *self.view_decoder.parameters(),
            *self.classifier.parameters(),
        ]
        voxel = [*self.voxel_encoder.parameters(), *self.voxel_decoder.parameters()]
        return [
            torch.optim.Adam(adaptation, lr=lr),
            torch.optim.Adam(self.latent_discriminator.parameters(), lr=lr, betas=(0.5, 0.999)),
            torch.optim.Adam(voxel, lr=voxel_lr),
            torch.optim.Adam(self.shape_discriminator.parameters(), lr=voxel_lr, betas=(0.5, 0.999)),
        ]

    # --- retrieval -----------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_query(self, x: Tensor) -> Tensor:
        return self.encode(self.sketch_encoder, x)

    @torch.no_grad()
    def embed_gallery(self, x: Tensor) -> Tensor:
        """The latent codes of a shape's V views, flattened: ``[B, V, d] → [B, V·k]``."""
        return self.encode(self.view_encoder, view_stack(x, self.method_name)).flatten(1)

    def _views(self, gallery: Tensor) -> Tensor:
        k = self.hparams.latent_dim
        if gallery.shape[1] % k:
            raise ValueError(
                f"sketch2voxel: gallery embeddings of width {gallery.shape[1]} are not V views of {k}-d codes"
            )
        return gallery.reshape(len(gallery), -1, k)

    def pairwise_distance(self, queries: Tensor, gallery: Tensor) -> Tensor:
        """Euclidean distance from each query to each shape's nearest view: ``[Q, k], [G, V·k] → [Q, G]``."""
        return min_view_distance(queries, self._views(gallery))

    # --- reconstruction ------------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, queries: Tensor, gallery: Tensor, gallery_voxels: Tensor) -> tuple[Tensor, Tensor]:
        """Reconstructions ``[Q, R, R, R]`` (bool) of query codes from the K nearest views' models' pooled
        shape codes, and those models' gallery positions ``[Q, K]``, nearest first."""
        views = self._views(gallery)
        distances = torch.cdist(queries.double(), views.flatten(0, 1).double()).reshape(
            len(queries), *views.shape[:2]
        )
        neighbours = nearest_view_models(distances, self.hparams.neighbours)
        was_training = self.training
        self.eval()
        grids = gallery_voxels.unsqueeze(1).to(self.device, torch.float32)
        codes = torch.cat([self.voxel_encoder(chunk) for chunk in grids.split(_DECODE_BATCH)])
        pooled = pooled_codes(codes.cpu(), neighbours, neighbour_weights(neighbours.shape[1]))
        decoded = torch.cat(
            [self.voxel_decoder(chunk.to(self.device)) for chunk in pooled.split(_DECODE_BATCH)]
        )
        self.train(was_training)
        return (decoded[:, 0] > 0).cpu(), neighbours  # sigmoid > 0.5

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "shape_voxels"):
            return  # embeddings scored without a dataset of meshes: retrieval metrics only
        (queries, query_labels), (gallery, gallery_labels) = (
            self.last_embeddings["query"],
            self.last_embeddings["gallery"],
        )
        voxels = datamodule.shape_voxels(
            datamodule.gallery_records("test").index.to_numpy(), VOXEL_RESOLUTION
        )
        reconstructions, neighbours = self.reconstruct(queries.cpu(), gallery.cpu(), torch.from_numpy(voxels))
        labels, gallery_labels = query_labels.cpu().numpy(), gallery_labels.cpu().numpy()
        scores = {
            "voxel_iou": best_class_iou(reconstructions.numpy(), labels, voxels, gallery_labels),
            "voxel_iou_nn": nearest_model_iou(neighbours[:, 0].numpy(), labels, voxels, gallery_labels),
            "voxel_iou_backbone_nn": nearest_model_iou(
                self._backbone_nearest(datamodule), labels, voxels, gallery_labels
            ),
        }
        means = {name: float(values.mean()) for name, values in scores.items()}
        self.last_metrics.update(means)
        self.log_dict({f"test/{name}": value for name, value in means.items()}, sync_dist=False)
        picks = np.unique(np.linspace(0, len(labels) - 1, min(GRID_QUERIES, len(labels))).astype(int))
        self._grid = {
            "queries": picks,
            "reconstructions": reconstructions.numpy()[picks],
            "nearest": voxels[neighbours[picks, 0].numpy()],
        }

    @staticmethod
    def _backbone_nearest(datamodule: Any) -> np.ndarray:
        """The nearest gallery model of each test sketch under the untrained backbone features (the
        ``baseline`` method's ranking: cosine similarity to the mean of the model's view features)."""
        inputs = datamodule._inputs(train=False)
        sketches = torch.stack([inputs(int(r)) for r in datamodule.query_records("test").index])
        shapes = torch.stack(
            [
                view_stack(inputs(int(r))[None], "sketch2voxel")[0].mean(0)
                for r in datamodule.gallery_records("test").index
            ]
        )
        similarity = F.normalize(sketches.double(), dim=1) @ F.normalize(shapes.double(), dim=1).T
        return torch.argmax(similarity, dim=1).numpy()

    def summary_images(self, datamodule: Any) -> dict[str, tuple[Image.Image, str]]:
        """Test sketches (top), their reconstructions (middle) and nearest retrieved models (bottom)."""
        if not self._grid:
            return {}
        records = datamodule.query_records("test")
        sketches = [
            np.asarray(Image.open(records["path"].iloc[int(q)]).convert("L").resize((GRID_TILE, GRID_TILE)))
            for q in self._grid["queries"]
        ]
        rows = [sketches, [voxel_image(g, size=GRID_TILE) for g in self._grid["reconstructions"]]]
        rows.append([voxel_image(g, size=GRID_TILE) for g in self._grid["nearest"]])
        tiles = [torch.from_numpy(np.asarray(t, dtype=np.float32) / 255.0) for row in rows for t in row]
        tiles = [t.permute(2, 0, 1) if t.ndim == 3 else t.unsqueeze(0).expand(3, -1, -1) for t in tiles]
        grid = make_grid(torch.stack(tiles), nrow=len(sketches), padding=2, pad_value=1.0)
        pixels = (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        caption = (
            f"sketch2voxel: {len(sketches)} test sketches (top), their reconstructions from the pooled codes "
            f"of the {self.hparams.neighbours} nearest views' models (middle) and the nearest model (bottom)"
        )
        return {"reconstructions": (Image.fromarray(pixels), caption)}


__all__ = ["NEIGHBOUR_WEIGHTS", "Sketch2Voxel"]
