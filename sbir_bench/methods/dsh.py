"""Deep Sketch Hashing (Liu, Shen, Shen, Liu & Shao, "Deep Sketch Hashing: Fast Free-hand Sketch-Based Image
Retrieval", CVPR'17): binary codes for sketches and natural images, ranked by Hamming distance.

Networks, as the released deploy networks define them:

- C2-Net F2 (free-hand sketches): ``conv c1 (kernel k, stride s) → BN → ReLU → maxpool 3/2 → [conv c2 3×3 →
  BN → ReLU] ×2 → maxpool 3/2 → [conv c3 3×3 → BN → ReLU] ×2 → maxpool 3/2 → fc h1 → fc h2 → fc K``
  (:class:`SketchConvTower`, ReLU after the hidden fc layers); published: 200 px, c = 64/128/256, k = 14,
  s = 3, fc 4096/1024.
- C1-Net F1 (natural image + its sketch-token map): an AlexNet-like image tower (:class:`ImageConvTower`)
  and a sketch-token tower that *is* C2-Net's conv tower (the same module: shared weights), fused late with
  cross weights: both towers' last pooled maps are flattened and concatenated; each tower's fc layer (h1,
  then h2) takes the concatenation of both towers' previous outputs; a final fc maps the concatenation of
  the two h2 outputs to K (:class:`FusionNet`).
- Codes: query codes ``sign(F2(sketch))``, database codes ``sign(F1(image, tokens))``, sign(0) = +1.

Objective and alternating optimisation (:mod:`~sbir_bench.methods.components.discrete_hashing`, codes as
K×N columns): ``‖B_Iᵀ B_S − mW‖² + λ(‖Φ_I − D B_I‖² + ‖Φ_S − D B_S‖²) + γ(‖F_I − B_I‖² + ‖F_S − B_S‖²)``
over the training photos (B_I, one column per photo) and sketches (B_S, one per sketch), W_ij = +1 for a
same-class (photo, sketch) pair and ``dissimilar`` otherwise, Φ each sample's class vector, m = K. One epoch
is one outer iteration:

1. network step: every training batch regresses F2(sketch) and F1(photo, tokens) onto the samples' current
   codes (the quantisation term; mean squared error per batch, the two views summed), and the outputs are
   kept: F_S and F_I are the epoch's outputs, computed in training mode on augmented inputs (a photo seen
   several times in an epoch, once per sketch of it, gets the mean of its outputs; one never seen keeps its
   last value);
2. at the epoch's end, the D-step ``D = Φ Bᵀ (B Bᵀ + εI)⁻¹`` on both views side by side, then the B-steps
   (discrete cyclic coordinate descent, every bit row an exact minimiser) for B_I given B_S, then B_S given
   B_I, ``code_sweeps`` times. The objective plus the D-step's ridge λε‖D‖² never increases over an update
   (over the sub-sampled problem when ``pairwise_columns`` caps it).

Initial codes (our choice): random signs, then ``init_sweeps`` D/B alternations with F = 0 (the quantisation
term is then a constant), i.e. codes from the labels and side information alone. With the published
γ = 1e-5 the network outputs barely move the codes anyway, so starting from the untrained network's F would
give almost the same codes at the price of a pass over the training set.

Side information Φ: ``data.class_semantics`` (``semantics: class``; the embedded data's attribute vectors,
word vectors on real data through ``data.semantics.vectors=FILE``), or one-hot labels when the user sets
``semantics: one_hot`` (the one-hot variant GDH's code uses). The pairwise term takes all N_I × N_S training
pairs; ``pairwise_columns = c > 0`` caps it for large data: each B-step then sees a fresh random subset of
c columns of the other view (its codes and the matching columns of W).

Inputs (``images_with_contours``): sketches ``[B, 3, S, S]``, photos ``[B, 6, S, S]`` (the photo and its
contour map drawn as a sketch). The contour maps are Canny edges standing in for Lim et al.'s sketch tokens
(see :mod:`sbir_bench.data.contours`). The networks resize their inputs (bilinear, antialiased) to
``sketch_size`` (sketches and tokens) and ``photo_size`` (photos).

Departures from the paper:

- the objective is the reconstruction a public reimplementation trains (the paper's exact equation was
  not reachable); its D-step applies the inverse (BBᵀ + εI)⁻¹ that the reimplementation forgot; ε is ours;
- ``dissimilar``: the reconstruction sets W_ij = −1 for different classes (``dissimilar: -1``). With many
  classes that target makes nearly every bit shared by all classes (sketch codes the
  negation of photo codes), a minimum the exact B-steps find: on the embedded data's 36 classes, 12
  distinct photo codes at 64 bits (the arithmetic is in ``discrete_hashing.pairwise_similarity``). Both
  configs (CPU default and paper) use 0, asking for orthogonal codes of different classes (Sketchy's 125
  classes would collapse as well);
- at the embedded data's scale the factorisation term (λ = 0.01, unit-norm class vectors) is tiny next to
  the pairwise term, so the codes follow the labels and D follows the codes;
- the image tower is trained from scratch (no ImageNet weights offline), with BatchNorm after every conv in
  place of AlexNet's local response normalisation; its last feature map is flattened as it comes (6×6 for
  AlexNet at 227 px), where the deploy network pools the image tower to 7×7;
- sketch tokens are Canny contour maps; one epoch is one outer iteration of the alternation;
- the CPU default (``configs/method/dsh.yaml``) uses 32 px inputs, narrow towers, Adam (the
  reimplementation: SGD with momentum 0.9, lr 1e-4) and 5 epochs; ``configs/method/dsh_paper.yaml`` keeps
  the published sizes with the same code.

The training-set codes are not needed for retrieval: they stay out of the state_dict (a checkpoint loads
alone), and travel in the checkpoint under ``dsh_codes`` so that a resumed run continues from them.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.discrete_hashing import (
    b_step,
    d_step,
    dsh_objective_terms,
    pairwise_similarity,
    sign_codes,
)
from sbir_bench.methods.components.side_information import HOW_TO_PROVIDE, class_semantics_of
from sbir_bench.registry import register_method

SEMANTICS = ("class", "one_hot")
OPTIMIZERS = ("adam", "sgd")
CODES_KEY = "dsh_codes"  # the checkpoint entry holding the training-set codes (for resuming only)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0) -> list:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SketchConvTower(nn.Sequential):
    """C2-Net's conv layers: ``conv c1 (k, s) BN ReLU, pool, [conv c2 3×3 BN ReLU]×2, pool, [conv c3 3×3 BN
    ReLU]×2, pool`` (pools 3/2, 3×3 convs padded by 1); ``[B, 3, S, S] → [B, c3, s', s']``."""

    def __init__(self, channels: Sequence[int], kernel: int, stride: int) -> None:
        c1, c2, c3 = channels
        super().__init__(
            *conv_bn_relu(3, c1, kernel, stride),
            nn.MaxPool2d(3, 2),
            *conv_bn_relu(c1, c2, 3, padding=1),
            *conv_bn_relu(c2, c2, 3, padding=1),
            nn.MaxPool2d(3, 2),
            *conv_bn_relu(c2, c3, 3, padding=1),
            *conv_bn_relu(c3, c3, 3, padding=1),
            nn.MaxPool2d(3, 2),
        )


class ImageConvTower(nn.Sequential):
    """AlexNet's conv layers (Krizhevsky et al. 2012), BatchNorm after each: ``conv c1 (k, s), pool, conv c2
    5×5, pool, conv c3, c4, c5 3×3, pool`` (pools 3/2, every conv followed by BN and ReLU); ``[B, 3, S, S] →
    [B, c5, s', s']``. conv1 is unpadded (AlexNet at 227 px: 55 → 27 → 13 → 6), conv2 padded by 2, the 3×3
    convs by 1."""

    def __init__(self, channels: Sequence[int], kernel: int, stride: int) -> None:
        c1, c2, c3, c4, c5 = channels
        super().__init__(
            *conv_bn_relu(3, c1, kernel, stride),
            nn.MaxPool2d(3, 2),
            *conv_bn_relu(c1, c2, 5, padding=2),
            nn.MaxPool2d(3, 2),
            *conv_bn_relu(c2, c3, 3, padding=1),
            *conv_bn_relu(c3, c4, 3, padding=1),
            *conv_bn_relu(c4, c5, 3, padding=1),
            nn.MaxPool2d(3, 2),
        )


def flat_size(tower: nn.Module, size: int) -> int:
    """Features of ``tower``'s flattened output for one ``3 × size × size`` input."""
    was_training = tower.training
    tower.eval()
    try:
        with torch.no_grad():
            return int(tower(torch.zeros(1, 3, size, size)).flatten(1).shape[1])
    except RuntimeError as error:  # a pooling window larger than what is left of the map
        raise ValueError(f"dsh: {size} px inputs are too small for the conv towers ({error})") from error
    finally:
        tower.train(was_training)


def hidden_layer(in_features: int, out_features: int, dropout: float) -> nn.Sequential:
    """``fc → ReLU`` (then Dropout when ``dropout`` > 0), as AlexNet's fc6/fc7."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features), nn.ReLU(inplace=True)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class SketchNet(nn.Module):
    """C2-Net F2: the sketch conv tower, then ``fc h1 → fc h2 → fc K``; ``[B, 3, S, S] → [B, K]``."""

    def __init__(self, tower: SketchConvTower, size: int, hidden: Sequence[int], bits: int, dropout: float):
        super().__init__()
        self.tower, self.size = tower, size
        h1, h2 = hidden
        self.fc1 = hidden_layer(flat_size(tower, size), h1, dropout)
        self.fc2 = hidden_layer(h1, h2, dropout)
        self.head = nn.Linear(h2, bits)

    def forward(self, sketch: Tensor) -> Tensor:
        features = self.tower(resize(sketch, self.size)).flatten(1)
        return self.head(self.fc2(self.fc1(features)))


class FusionNet(nn.Module):
    """C1-Net F1: image tower + sketch-token tower (``token_tower``, shared with C2-Net) with cross-weight
    late fusion; ``(photo [B, 3, S, S], tokens [B, 3, S, S]) → [B, K]``.

    ``x = [pool_img; pool_tok]``; ``a_img, a_tok = fc1_img(x), fc1_tok(x)``; ``y = [a_img; a_tok]``;
    ``b_img, b_tok = fc2_img(y), fc2_tok(y)``; ``F1 = head([b_img; b_tok])``.
    """

    def __init__(
        self,
        image_tower: ImageConvTower,
        token_tower: SketchConvTower,
        photo_size: int,
        token_size: int,
        hidden: Sequence[int],
        bits: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.image_tower, self.token_tower = image_tower, token_tower
        self.photo_size, self.token_size = photo_size, token_size
        h1, h2 = hidden
        pooled = flat_size(image_tower, photo_size) + flat_size(token_tower, token_size)
        self.fc1_image, self.fc1_token = (hidden_layer(pooled, h1, dropout) for _ in range(2))
        self.fc2_image, self.fc2_token = (hidden_layer(2 * h1, h2, dropout) for _ in range(2))
        self.head = nn.Linear(2 * h2, bits)

    def forward(self, photo: Tensor, tokens: Tensor) -> Tensor:
        image = self.image_tower(resize(photo, self.photo_size)).flatten(1)
        token = self.token_tower(resize(tokens, self.token_size)).flatten(1)
        x = torch.cat([image, token], dim=1)
        y = torch.cat([self.fc1_image(x), self.fc1_token(x)], dim=1)
        return self.head(torch.cat([self.fc2_image(y), self.fc2_token(y)], dim=1))


def resize(images: Tensor, size: int) -> Tensor:
    """``images`` resized to ``size`` × ``size`` (bilinear, antialiased; unchanged when already that size),
    in channels-last memory layout (the towers' weights are too: about 20% faster convolutions on a CPU)."""
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
    return images.contiguous(memory_format=torch.channels_last)


def split_photo_input(x: Tensor) -> tuple[Tensor, Tensor]:
    """``[B, 6, S, S]`` (photo, contour map) → the photo and its sketch-token map, ``[B, 3, S, S]`` each."""
    if x.ndim != 4 or x.shape[1] != 6:
        raise ValueError(
            f"dsh: photos must arrive as [B, 6, S, S] (photo RGB + its contour map, "
            f"inputs='images_with_contours'), got {tuple(x.shape)}"
        )
    return x[:, :3], x[:, 3:]


@register_method("dsh")
class DeepSketchHashing(RetrievalMethod):
    """Deep Sketch Hashing (Liu et al., CVPR'17): C1/C2-Net, D-step, discrete B-steps; module docstring."""

    inputs: ClassVar[str] = "images_with_contours"
    train_sampling: ClassVar[str] = "pairs"
    distance = "hamming"

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        bits: int = 64,
        sketch_size: int = 32,
        photo_size: int = 32,
        sketch_channels: Sequence[int] = (16, 32, 64),
        sketch_kernel: int = 3,
        sketch_stride: int = 1,
        image_channels: Sequence[int] = (16, 32, 48, 48, 32),
        image_kernel: int = 3,
        image_stride: int = 1,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        lam: float = 0.01,
        gamma: float = 1e-5,
        eps: float = 1.0,
        dissimilar: float = -1.0,
        semantics: str = "class",
        init_sweeps: int = 3,
        code_sweeps: int = 1,
        pairwise_columns: int = 0,
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eval_metrics: Sequence[str] = DEFAULT_METRICS,
    ) -> None:
        if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or bits < 1:
            raise ValueError(f"dsh: bits (the code length) must be a positive integer, got {bits!r}")
        bits = int(bits)
        # plain tuples, not Hydra's ListConfig: checkpoints must load with torch.load(weights_only=True)
        sketch_channels, image_channels, hidden = (
            tuple(int(c) for c in widths) for widths in (sketch_channels, image_channels, hidden)
        )
        eval_metrics = tuple(str(m) for m in eval_metrics)
        super().__init__(data, eval_metrics=eval_metrics)
        self.save_hyperparameters(ignore=["data"])
        if semantics not in SEMANTICS:
            raise ValueError(f"dsh: semantics must be one of {SEMANTICS}, got {semantics!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"dsh: optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if len(sketch_channels) != 3 or len(image_channels) != 5 or len(hidden) != 2:
            raise ValueError(
                "dsh: sketch_channels takes 3 widths, image_channels 5 (AlexNet's convs), hidden 2 "
                f"(fc6, fc7): got {sketch_channels}, {image_channels}, {hidden}"
            )
        if min(lam, gamma, eps) < 0 or init_sweeps < 0 or code_sweeps < 1 or pairwise_columns < 0:
            raise ValueError(
                "dsh: need lam, gamma, eps >= 0, init_sweeps >= 0, code_sweeps >= 1, pairwise_columns >= 0"
            )
        self.sketch_tower = SketchConvTower(sketch_channels, sketch_kernel, sketch_stride)
        self.sketch_net = SketchNet(self.sketch_tower, sketch_size, hidden, bits, dropout)
        self.image_net = FusionNet(
            ImageConvTower(image_channels, image_kernel, image_stride),
            self.sketch_tower,  # the sketch-token tower shares C2-Net's conv weights
            photo_size,
            sketch_size,
            hidden,
            bits,
            dropout,
        )
        self.to(memory_format=torch.channels_last)
        # class side information: needed for training only, so not in the state_dict (a checkpoint being
        # loaded arrives with `data` as a dict, without the vectors)
        self.class_vectors: Tensor | None = None
        if not isinstance(data, Mapping):
            self.class_vectors = self._side_information(self.data_info)
        self._training_set: dict[str, Tensor] | None = None
        self._codes: dict[str, Tensor] | None = None
        self._restored_codes: dict[str, Tensor] | None = None
        self._generator: torch.Generator | None = None

    # --- networks ------------------------------------------------------------------------------------------
    def sketch_outputs(self, sketch: Tensor) -> Tensor:
        """F2(sketch): real-valued ``[B, K]``."""
        return self.sketch_net(sketch)

    def photo_outputs(self, photo_with_contour: Tensor) -> Tensor:
        """F1(image, tokens) of ``[B, 6, S, S]`` photo + contour inputs: real-valued ``[B, K]``."""
        return self.image_net(*split_photo_input(photo_with_contour))

    @torch.no_grad()
    def embed_query(self, x: Tensor) -> Tensor:
        return sign_codes(self.sketch_outputs(x))

    @torch.no_grad()
    def embed_gallery(self, x: Tensor) -> Tensor:
        return sign_codes(self.photo_outputs(x))

    # --- side information and the training set -------------------------------------------------------------
    def _side_information(self, info: DataInfo) -> Tensor:
        """Class vectors for Φ: ``data.class_semantics``, or one-hot rows (``semantics: one_hot``)."""
        if self.hparams.semantics == "one_hot":
            return torch.eye(info.num_classes, dtype=torch.float64)
        if info.class_semantics is None:
            data = f"the dataset {info.dataset!r}" if info.dataset else "the data"
            raise ValueError(
                f"dsh needs class side information for its semantic factorisation term, but {data} has none: "
                f"{HOW_TO_PROVIDE}; or factorise one-hot labels instead with method.kwargs.semantics=one_hot"
            )
        return torch.from_numpy(class_semantics_of(info, "dsh")).to(torch.float64)

    def set_training_set(
        self, sketch_records: Any, sketch_labels: Any, photo_records: Any, photo_labels: Any
    ) -> None:
        """The training sketches and photos (catalog record indices and labels) the codes B_S and B_I have a
        column for; called from the DataModule's training set at the start of training."""
        sketch_records, sketch_labels, photo_records, photo_labels = (
            torch.as_tensor(np.asarray(v), dtype=torch.long)
            for v in (sketch_records, sketch_labels, photo_records, photo_labels)
        )
        size = int(max(sketch_records.max(), photo_records.max())) + 1
        sketch_column = torch.full((size,), -1, dtype=torch.long)
        sketch_column[sketch_records] = torch.arange(len(sketch_records))
        photo_column = torch.full((size,), -1, dtype=torch.long)
        photo_column[photo_records] = torch.arange(len(photo_records))
        self._training_set = {
            "sketch_records": sketch_records,
            "sketch_labels": sketch_labels,
            "photo_records": photo_records,
            "photo_labels": photo_labels,
            "sketch_column": sketch_column,
            "photo_column": photo_column,
        }

    def _training_set_from_datamodule(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "_training_sets"):
            raise RuntimeError(
                "dsh: training needs the suite's RetrievalDataModule (its training set gives the code "
                "matrices' columns), or call set_training_set(...) before fitting"
            )
        sketches, _, labels, partners = datamodule._training_sets()
        self.set_training_set(sketches, labels, partners.index.to_numpy(), partners["label"].to_numpy())

    # --- codes ---------------------------------------------------------------------------------------------
    def init_codes(self, generator: torch.Generator | None = None) -> None:
        """Random ±1 codes, then ``init_sweeps`` D/B alternations with F = 0 (module docstring)."""
        if self._training_set is None:
            raise RuntimeError("dsh: set_training_set(...) must come before init_codes()")
        n_photos = len(self._training_set["photo_records"])
        n_sketches = len(self._training_set["sketch_records"])
        draw = torch.randn(self.hparams.bits, n_photos + n_sketches, generator=generator, dtype=torch.float64)
        self._start_codes(sign_codes(draw[:, :n_photos]), sign_codes(draw[:, n_photos:]))
        for _ in range(self.hparams.init_sweeps):
            self.update_codes(generator)

    def _start_codes(self, B_I: Tensor, B_S: Tensor) -> None:
        """Training state from codes B_I, B_S: D = 0 (the next D-step sets it), outputs F = 0."""
        if self.class_vectors is None:
            raise ValueError(
                "dsh: no class side information to train with (a checkpoint loaded for retrieval)"
            )
        self._codes = {
            "B_I": B_I.double(),
            "B_S": B_S.double(),
            "D": torch.zeros(self.class_vectors.shape[1], self.hparams.bits, dtype=torch.float64),
            "F_I": torch.zeros_like(B_I, dtype=torch.float64),
            "F_S": torch.zeros_like(B_S, dtype=torch.float64),
        }
        self._reset_output_sums()

    def _reset_output_sums(self) -> None:
        codes = self._codes
        assert codes is not None
        codes["sum_I"], codes["count_I"] = torch.zeros_like(codes["F_I"]), torch.zeros(codes["F_I"].shape[1])
        codes["sum_S"], codes["count_S"] = torch.zeros_like(codes["F_S"]), torch.zeros(codes["F_S"].shape[1])

    def _phi(self) -> tuple[Tensor, Tensor]:
        """Per-sample side information Φ_I (d×N_I) and Φ_S (d×N_S)."""
        ts = self._training_set
        assert ts is not None and self.class_vectors is not None
        return self.class_vectors[ts["photo_labels"]].T, self.class_vectors[ts["sketch_labels"]].T

    def objective_terms(self) -> dict[str, Tensor]:
        """The objective's unweighted terms at the current codes, D and outputs F (all training pairs)."""
        codes, ts, hp = self._codes, self._training_set, self.hparams
        assert codes is not None and ts is not None
        phi_I, phi_S = self._phi()
        W = pairwise_similarity(ts["photo_labels"], ts["sketch_labels"], hp.dissimilar).double()
        return dsh_objective_terms(
            codes["B_I"], codes["B_S"], W, phi_I, phi_S, codes["D"], codes["F_I"], codes["F_S"],
            self.hparams.bits,
        )  # fmt: skip

    def _columns(self, n: int, generator: torch.Generator | None) -> Tensor:
        """All ``n`` columns, or a random ``pairwise_columns`` of them (the cap for large data)."""
        cap = self.hparams.pairwise_columns
        if cap == 0 or cap >= n:
            return torch.arange(n)
        return torch.randperm(n, generator=generator)[:cap]

    def update_codes(self, generator: torch.Generator | None = None) -> dict[str, float]:
        """One outer iteration's discrete part: the D-step, then ``code_sweeps`` × (B_I given B_S, B_S given
        B_I). Returns the objective plus the ridge λε‖D‖² (the quantity every step minimises) before, after
        the D-step and after the B-steps, and the share of code bits that flipped."""
        codes, ts, hp = self._codes, self._training_set, self.hparams
        assert codes is not None and ts is not None
        phi_I, phi_S = self._phi()

        def regularised() -> float:
            terms = self.objective_terms()
            value = terms["pairwise"] + hp.lam * (terms["factorisation"] + hp.eps * codes["D"].square().sum())
            return float(value + hp.gamma * terms["quantisation"])

        before, old_I, old_S = regularised(), codes["B_I"], codes["B_S"]
        B = torch.cat([codes["B_I"], codes["B_S"]], dim=1)
        codes["D"] = d_step(B, torch.cat([phi_I, phi_S], dim=1), hp.eps)
        after_d = regularised()
        labels_I, labels_S = ts["photo_labels"], ts["sketch_labels"]
        for _ in range(hp.code_sweeps):
            cols = self._columns(len(labels_S), generator)
            W = pairwise_similarity(labels_I, labels_S[cols], hp.dissimilar).double()
            codes["B_I"] = b_step(
                codes["B_I"],
                codes["B_S"][:, cols],
                W,
                phi_I,
                codes["D"],
                codes["F_I"],
                hp.lam,
                hp.gamma,
                hp.bits,
            )
            cols = self._columns(len(labels_I), generator)
            W = pairwise_similarity(
                labels_S, labels_I[cols], hp.dissimilar
            ).double()  # Wᵀ: this view's samples as rows
            codes["B_S"] = b_step(
                codes["B_S"],
                codes["B_I"][:, cols],
                W,
                phi_S,
                codes["D"],
                codes["F_S"],
                hp.lam,
                hp.gamma,
                hp.bits,
            )
        flipped = (codes["B_I"] != old_I).sum() + (codes["B_S"] != old_S).sum()
        return {
            "before": before,
            "after_d_step": after_d,
            "after": regularised(),
            "flipped": float(flipped) / (old_I.numel() + old_S.numel()),
        }

    def accumulate_outputs(
        self, F_S: Tensor, sketch_records: Tensor, F_I: Tensor, photo_records: Tensor
    ) -> None:
        """Keep a batch's network outputs (``[B, K]`` each) for the epoch-end steps, by training record."""
        codes, ts = self._codes, self._training_set
        assert codes is not None and ts is not None
        for view, outputs, records in (("S", F_S, sketch_records), ("I", F_I, photo_records)):
            columns = ts["sketch_column" if view == "S" else "photo_column"][records.cpu()]
            codes[f"sum_{view}"].index_add_(1, columns, outputs.detach().cpu().double().T)
            codes[f"count_{view}"].index_add_(0, columns, torch.ones(len(columns)))

    def take_epoch_outputs(self) -> None:
        """F_S, F_I ← the epoch's mean outputs (summed over DDP ranks); a sample not seen keeps its F."""
        codes = self._codes
        assert codes is not None
        for view in ("S", "I"):
            sums, counts = codes[f"sum_{view}"], codes[f"count_{view}"]
            if self._trainer is not None and self.trainer.world_size > 1:
                sums = self.trainer.strategy.reduce(sums.to(self.device), reduce_op="sum").cpu()
                counts = self.trainer.strategy.reduce(counts.to(self.device), reduce_op="sum").cpu()
            seen = counts > 0
            codes[f"F_{view}"][:, seen] = sums[:, seen] / counts[seen]
        self._reset_output_sums()

    # --- training ------------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        if self._training_set is None:
            self._training_set_from_datamodule()
        if self.class_vectors is None:
            self.class_vectors = self._side_information(self.data_info)
        self._generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
        if self._codes is not None:  # set by the caller (tests)
            return
        restored, ts = self._restored_codes, self._training_set
        assert ts is not None
        if restored is not None and all(
            torch.equal(restored[f"{view}_records"], ts[f"{view}_records"]) for view in ("photo", "sketch")
        ):  # a resumed run continues from its codes
            self._start_codes(restored["B_I"], restored["B_S"])
        else:
            self.init_codes(self._generator)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        codes, ts = self._codes, self._training_set
        assert codes is not None and ts is not None
        F_S, F_I = self.sketch_outputs(batch["sketch"]), self.photo_outputs(batch["photo"])
        sketch_columns = ts["sketch_column"][batch["sketch_index"].cpu()]
        photo_columns = ts["photo_column"][batch["photo_index"].cpu()]
        target_S = codes["B_S"][:, sketch_columns].T.to(F_S)
        target_I = codes["B_I"][:, photo_columns].T.to(F_I)
        terms = {
            "sketch_quantisation": F.mse_loss(F_S, target_S),
            "photo_quantisation": F.mse_loss(F_I, target_I),
        }
        loss = terms["sketch_quantisation"] + terms["photo_quantisation"]
        self.check_loss(loss, terms)
        self.accumulate_outputs(F_S, batch["sketch_index"], F_I, batch["photo_index"])
        self.log_training(loss, terms, batch["sketch"].shape[0])
        return loss

    def on_train_epoch_end(self) -> None:
        self.take_epoch_outputs()
        values = self.update_codes(self._generator)
        hp = self.hparams
        terms = self.objective_terms()
        objective = terms["pairwise"] + hp.lam * terms["factorisation"] + hp.gamma * terms["quantisation"]
        if not torch.isfinite(objective):
            self.check_loss(objective, terms, hint="check the class side information (data.semantics)")
        logged = {f"train/{name}": float(value) for name, value in terms.items()}
        logged |= {"train/objective": float(objective), "train/code_bits_flipped": values["flipped"]}
        self.log_dict(logged, sync_dist=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.optimizer == "sgd":
            return torch.optim.SGD(
                self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            )
        return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)

    # --- checkpoints ---------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._codes is not None and self._training_set is not None:
            ts = self._training_set
            checkpoint[CODES_KEY] = {
                "photo_records": ts["photo_records"],
                "sketch_records": ts["sketch_records"],
                "B_I": self._codes["B_I"].to(torch.int8),
                "B_S": self._codes["B_S"].to(torch.int8),
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored_codes = checkpoint.get(CODES_KEY)
