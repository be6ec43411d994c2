"""Backbones (timm): which network and weights compute the features, and the images they read.

Feature-based methods (CVAE, CAAE, the zero-shot baselines, DSH's fixed-feature variant) read fixed
backbone features of sketches and photos, as the papers do with VGG-16 fc7 (4096-d, ImageNet weights).
Offline, ImageNet weights are available only when the user has them locally (``weights_path``, or timm's
own cache); otherwise :mod:`sbir_bench.data.pretraining` stands in for ImageNet pre-training.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import timm
import torch
from torch import nn
from torch.utils.data import Dataset

from sbir_bench.data.images import load_image
from sbir_bench.files import sha256_file

__all__ = [
    "BackboneSpec",
    "ImageFiles",
    "compute_device",
    "create_backbone",
    "feature_dim",
    "pyramid_width",
    "weights_identity",
]


@dataclass(frozen=True)
class BackboneSpec:
    """Which backbone computes the features, from which weights, at which input size.

    ``pretrained`` takes timm's ImageNet weights from the local timm / Hugging Face cache (nothing is
    downloaded); ``weights_path`` names a local state_dict or timm checkpoint instead. With neither, the
    backbone starts from a random initialisation drawn with ``seed``. ``pretrain_epochs > 0`` then trains
    it further as a classifier (the stand-in for ImageNet pre-training,
    :func:`~sbir_bench.data.pretraining.pretrain_backbone`). ``pyramid_levels`` (e.g. ``(1, 2, 4)``, the
    pooling pyramid of Zhu et al.'s PCDNN, AAAI'16) replaces the pooled feature with the last feature map
    average-pooled to each ``L x L`` grid, cells concatenated (:class:`PyramidPooling`).
    """

    name: str = "resnet10t"
    pretrained: bool = False
    weights_path: str | None = None
    image_size: int = 64
    pretrain_epochs: int = 0
    pretrain_lr: float = 1e-3
    pretrain_batch_size: int = 64
    pretrain_edge_prob: float = 0.0  # share of pre-training photos swapped for their edge map
    pretrain_grayscale_prob: float = 0.0
    seed: int = 0
    pyramid_levels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        levels = tuple(self.pyramid_levels or ())
        if not all(isinstance(level, int) and not isinstance(level, bool) and level >= 1 for level in levels):
            raise ValueError(f"backbone pyramid_levels must be positive ints, got {self.pyramid_levels!r}")
        object.__setattr__(self, "pyramid_levels", levels)  # a config's list becomes a tuple

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> BackboneSpec:
        """Build from a config mapping; unknown keys fail with the list of known ones."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown backbone settings {unknown}; known: {sorted(known)}")
        return cls(**values)


def create_backbone(spec: BackboneSpec) -> nn.Module:
    """The timm model without its classifier (``num_classes=0``), in eval mode, on the CPU.

    Its forward gives pooled pre-logit features: the global-pooled last stage for ResNets, the
    post-ReLU fc7 (4096-d) for VGG-16, the 1024-d head for MobileNetV3. ``pretrain_epochs`` is ignored
    here (see :func:`~sbir_bench.data.pretraining.pretrain_backbone`); with ``pyramid_levels`` the model
    is wrapped in :class:`PyramidPooling`.
    """
    weights = _weights_file(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = timm.create_model(spec.name, pretrained=False, num_classes=0)
    if weights is not None:
        _load_weights(model, spec.name, weights)
    if spec.pyramid_levels:
        model = PyramidPooling(model, spec.pyramid_levels)
    return model.eval()


class PyramidPooling(nn.Module):
    """Spatial pyramid pooling of a timm backbone's last feature map (``forward_features``).

    The map ``[B, C, H, W]`` is average-pooled to each ``L x L`` grid of ``levels`` (adaptive pooling)
    and the cells concatenated level-major, then cell (row-major), then channel: float
    ``[B, C * sum(L * L)]`` (the 1x1, 2x2, 4x4 poolings of PCDNN, Zhu et al., AAAI'16). For networks
    whose pooled feature is the global average of that map (ResNets), the 1x1 level equals it.
    """

    def __init__(self, model: nn.Module, levels: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.levels = model, tuple(levels)
        self.num_features = int(model.num_features) * pyramid_width(self.levels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feature_map = self.model.forward_features(images)
        cells = [
            nn.functional.adaptive_avg_pool2d(feature_map, level).permute(0, 2, 3, 1).flatten(1)
            for level in self.levels
        ]
        return torch.cat(cells, dim=1)


def pyramid_width(levels: tuple[int, ...]) -> int:
    """How many cells a pyramid of ``levels`` has: ``sum(L * L)`` (1 + 4 + 16 = 21 for (1, 2, 4))."""
    return sum(level * level for level in levels)


def feature_dim(model: nn.Module) -> int:
    """Width of the backbone's output: timm's ``head_hidden_size`` where a pre-logits head exists
    (VGG fc7: 4096, whereas ``num_features`` is 512), ``num_features`` otherwise (the pyramid's total
    width for :class:`PyramidPooling`)."""
    if isinstance(model, PyramidPooling):
        return model.num_features
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def weights_identity(spec: BackboneSpec) -> str:
    """What the initial weights are: ``sha256:<hex>`` of the weights file, or the random-init seed."""
    weights = _weights_file(spec)
    if weights is not None:
        return f"sha256:{sha256_file(weights)}"
    return f"random-init-seed{spec.seed}-timm{timm.__version__}"


def _weights_file(spec: BackboneSpec) -> Path | None:
    if spec.pretrained and spec.weights_path:
        raise ValueError("backbone: set either pretrained=true or weights_path, not both")
    if spec.weights_path:
        path = Path(spec.weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights_path {str(path)!r} does not exist")
        return path
    if spec.pretrained:
        return _cached_timm_weights(spec.name)
    return None


def _cached_timm_weights(name: str) -> Path:
    """timm's ImageNet weights for ``name`` from the local Hugging Face or torch hub cache (no download)."""
    import huggingface_hub

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"timm has no pretrained weights for {name!r}; set backbone.weights_path")
    if cfg.file and Path(cfg.file).is_file():
        return Path(cfg.file)
    if cfg.hf_hub_id:
        for filename in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin"):
            found = filename and huggingface_hub.try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    if cfg.url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"backbone {name!r}: pretrained=true needs timm's ImageNet weights in the local cache "
        f"(hub id {cfg.hf_hub_id or cfg.url!r}), and nothing is downloaded here. Fetch them once where there "
        "is internet (timm.create_model(name, pretrained=True)), or set backbone.weights_path to a local "
        "state_dict / checkpoint file, or use pretrained=false with pretrain_epochs > 0 (stand-in "
        "pre-training)."
    )


def _load_weights(model: nn.Module, name: str, path: Path) -> None:
    """Load a state_dict or timm checkpoint strictly; the classifier weights it may carry are dropped.

    Files in timm's key layout load directly; others (e.g. torchvision's VGG-16) go through timm's own
    per-model key conversion, which then loads strictly with the classifier attached.
    """
    state = timm.models.load_state_dict(str(path))
    classifier = model.pretrained_cfg.get("classifier") or ()
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    dropped = {f"{head}.{kind}" for head in heads for kind in ("weight", "bias")}
    try:
        result = model.load_state_dict({k: v for k, v in state.items() if k not in dropped}, strict=False)
        problem = (
            f"missing keys {result.missing_keys[:5]}, unexpected keys {result.unexpected_keys[:5]}"
            if result.missing_keys or result.unexpected_keys
            else ""
        )
    except RuntimeError as error:  # shape mismatches raise even when not strict
        problem = " ".join(str(error).split("\n")[:3])
    if not problem:
        return
    try:
        converted = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    except (RuntimeError, KeyError, ValueError) as error:
        raise ValueError(f"weights file {str(path)!r} does not fit backbone {name!r}: {problem}") from error
    converted.reset_classifier(0)
    model.load_state_dict(converted.state_dict())


class ImageFiles(Dataset):
    """Images (RGB, sketches included) through a transform, with an optional target per image."""

    def __init__(self, paths: Sequence[str], transform: Any, targets: np.ndarray | None = None) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.targets = targets

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        image = self.transform(load_image(self.paths[i], mode="RGB"))
        return image if self.targets is None else (image, int(self.targets[i]))


def compute_device(accelerator: str = "auto") -> torch.device:
    """The device that extracts features and pre-trains for a run on Lightning's ``accelerator``.

    ``cpu`` stays on the CPU even where a GPU exists (a ``trainer=cpu`` run never touches the GPU);
    ``gpu`` / ``cuda`` need CUDA, ``mps`` is Apple's GPU; ``auto`` takes the first CUDA device when
    there is one, else the CPU.
    Features and weights are cached per device type (CPU and GPU arithmetic differ in their last bits:
    other convolution algorithms, TF32 on recent GPUs), so a run reads the caches of its own device.
    """
    name = str(accelerator).lower()
    if name == "cpu":
        return torch.device("cpu")
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"accelerator {accelerator!r} needs CUDA, and torch finds no CUDA device")
        return torch.device("cuda")
    if name == "mps":
        return torch.device("mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raise ValueError(
        f"unknown accelerator {accelerator!r} for feature extraction; expected cpu, gpu, cuda, mps or auto"
    )
