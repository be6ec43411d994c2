"""ESZSL (Romera-Paredes & Torr, ICML'15) and SAE (Kodirov et al., CVPR'17) as ZS-SBIR baselines, the two
closed-form zero-shot rows of the reference table of Yelamarthi et al. (ECCV'18).

Each learns, in closed form (float64), a linear map from a domain's features to the class side information;
query sketches and gallery photos are mapped into that semantic space and ranked by cosine distance.

Our reading (the ZS-SBIR paper gives no details of how it ran these baselines):

- one map per domain, each fitted on that domain's training features (sketches, and the training photos
  deduplicated by photo index), since one map cannot serve two feature distributions;
- the regularisers are chosen on the SEEN training classes: a seeded share (``validation_share``) of them is
  held out, maps are fitted on the rest for every grid point (10^-3 … 10^3 by default, as the ESZSL authors
  search), and the point of best retrieval mAP@200 of held-out-class sketches against held-out-class photos
  (the suite's evaluation engine) is refitted on all training data. One set of regularisers serves both
  domains. Fixing a regulariser in the kwargs skips its search. The choice is kept in buffers, exposed as
  ``chosen_regularisers`` and logged as ``fit/<name>`` (with ``fit/val_map@200``, its held-out score, kept
  in the ``validation_score`` buffer: -1 when the regularisers were fixed);
- features are L2-normalised first (``normalise_features``), as in the official SAE demos;
- ``side_information="photo_means"`` replaces the class vectors by each training class's mean (normalised)
  photo feature, L2-normalised (side information taken from the images, as later ZS-SBIR work did); it needs
  no data.semantics. Only training classes' vectors are ever used: retrieval needs no unseen-class vector.

Training is a single pass (``max_epochs: 1``): ``training_step`` only collects features (no optimiser) and
the solve runs at the epoch's last training batch, before the epoch's validation, so the solution is in the
checkpoint (as buffers). Before that the maps are zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS, evaluate
from sbir_bench.methods.base import RetrievalMethod
from sbir_bench.methods.components.closed_forms import EszslSolver, SaeSolver, one_hot_targets
from sbir_bench.methods.components.side_information import (
    class_semantics_of,
    first_of_each_index,
    held_out_classes,
)
from sbir_bench.registry import register_method

DEFAULT_GRID = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)
SIDE_INFORMATION = ("class_semantics", "photo_means")
VALIDATION_METRIC = "map@200"
NO_SEARCH = -1.0  # validation_score when no grid search ran (regularisers fixed in the kwargs)


class ClosedFormZSL(RetrievalMethod):
    """Shared machinery: side information, feature collection, regulariser search, per-domain maps.

    Subclasses name their regularisers (``regulariser_names``) and map (features [n, d], labels [n], the
    class ids [z] and their vectors [z, a]) to a solver whose ``projection(**regularisers)`` is the d×a
    float64 matrix that embeds a feature row.
    """

    inputs: ClassVar[str] = "features"
    train_sampling: ClassVar[str] = "pairs"
    distance = "cosine"
    regulariser_names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        fixed: Mapping[str, float | None],
        grid: Sequence[float],
        side_information: str,
        normalise_features: bool,
        validation_share: float,
        validation_seed: int,
        eval_metrics: Sequence[str],
    ) -> None:
        super().__init__(data, eval_metrics=tuple(str(m) for m in eval_metrics))
        if side_information not in SIDE_INFORMATION:
            raise ValueError(
                f"{self.method_name}: unknown side_information {side_information!r}; one of "
                f"{SIDE_INFORMATION}"
            )
        if self.data_info.feature_dim is None:
            raise ValueError(f"{self.method_name} works on cached backbone features, but feature_dim is None")
        if not grid or any(value <= 0 for value in grid):
            raise ValueError(f"{self.method_name}: the regulariser grid must be positive values, got {grid}")
        if not 0 < validation_share < 1:
            raise ValueError(
                f"{self.method_name}: validation_share must be in (0, 1), got {validation_share}"
            )
        self.fixed = {name: None if value is None else float(value) for name, value in fixed.items()}
        self.grid = tuple(float(value) for value in grid)
        feature_dim = int(self.data_info.feature_dim)
        if side_information == "class_semantics":
            if isinstance(data, Mapping):  # a checkpoint being loaded: the vectors come with the state_dict
                semantics_dim = data.get("semantics_dim")
                if semantics_dim is None:
                    raise ValueError(f"{self.method_name}: the checkpoint's data has no semantics_dim")
                vectors = torch.zeros(self.data_info.num_classes, int(semantics_dim))
            else:
                vectors = torch.from_numpy(class_semantics_of(self.data_info, self.method_name)).clone()
        else:  # filled from the training photos by the fit
            vectors = torch.zeros(self.data_info.num_classes, feature_dim)
        self.register_buffer("class_vectors", vectors)
        self.register_buffer("sketch_projection", torch.zeros(feature_dim, vectors.shape[1]))
        self.register_buffer("photo_projection", torch.zeros(feature_dim, vectors.shape[1]))
        self.register_buffer("regularisers", torch.zeros(len(self.regulariser_names), dtype=torch.float64))
        self.register_buffer("validation_score", torch.tensor(NO_SEARCH, dtype=torch.float64))
        self.automatic_optimization = False
        self._collected: list[dict[str, Tensor]] = []

    # --- the solve ---------------------------------------------------------------------------------------
    def solver(self, features: Tensor, labels: Tensor, classes: Tensor, vectors: Tensor) -> Any:
        raise NotImplementedError

    @property
    def chosen_regularisers(self) -> dict[str, float]:
        """The regularisers of the current maps (0 before the fit: every regulariser is > 0)."""
        return {name: float(v) for name, v in zip(self.regulariser_names, self.regularisers, strict=True)}

    def fitted_values(self) -> dict[str, float]:
        """The chosen regularisers and their held-out score (``val_map@200``; -1: fixed, not searched)."""
        return {**self.chosen_regularisers, f"val_{VALIDATION_METRIC}": float(self.validation_score)}

    def _prepare(self, features: Tensor) -> Tensor:
        features = features.to(torch.float64)
        return F.normalize(features, dim=1) if self.hparams.normalise_features else features

    def _vectors(self, photos: Tensor, photo_labels: Tensor, classes: Tensor) -> Tensor:
        """[z, a] float64 vectors of ``classes``; with ``photo_means`` also written into ``class_vectors``."""
        if self.hparams.side_information == "class_semantics":
            return self.class_vectors[classes].to(torch.float64)
        means = torch.stack([photos[photo_labels == c].mean(dim=0) for c in classes])
        means = F.normalize(means, dim=1)
        self.class_vectors.zero_()
        self.class_vectors[classes] = means.to(self.class_vectors.dtype)
        return means

    def _grid_points(self) -> list[dict[str, float]]:
        points: list[dict[str, float]] = [{}]
        for name in self.regulariser_names:
            values = (self.fixed[name],) if self.fixed[name] is not None else self.grid
            points = [{**point, name: value} for point in points for value in values]
        return points

    def _maps(self, domains, classes, vectors, points):  # type: ignore[no-untyped-def]
        """For each grid point, the (sketch, photo) projections fitted on ``domains`` (features, labels)."""
        solvers = [self.solver(x, y, classes, vectors) for x, y in domains]
        return [tuple(s.projection(**point) for s in solvers) for point in points]

    def fit_features(
        self, sketches: Tensor, sketch_labels: Tensor, photos: Tensor, photo_labels: Tensor
    ) -> dict[str, float]:
        """Choose the regularisers on held-out training classes, then fit both maps on all the data.

        Inputs are the deduplicated training features ([n, d]) and labels of each domain; returns the
        chosen regularisers (also kept in buffers and, under a Trainer, logged as ``fit/<name>``)."""
        sketches, photos = self._prepare(sketches), self._prepare(photos)
        sketch_labels, photo_labels = sketch_labels.long(), photo_labels.long()
        classes = torch.unique(torch.cat([sketch_labels, photo_labels]))
        missing = [int(c) for c in classes if not (photo_labels == c).any() or not (sketch_labels == c).any()]
        if missing:
            raise ValueError(f"{self.method_name}: training classes {missing} lack sketches or photos")
        vectors = self._vectors(photos, photo_labels, classes)
        points = self._grid_points()
        score = NO_SEARCH
        if len(points) > 1:
            held = held_out_classes(classes, self.hparams.validation_share, self.hparams.validation_seed)
            fit_classes = classes[~torch.isin(classes, held)]
            sketch_held, photo_held = torch.isin(sketch_labels, held), torch.isin(photo_labels, held)
            domains = ((sketches[~sketch_held], sketch_labels[~sketch_held]),)
            domains += ((photos[~photo_held], photo_labels[~photo_held]),)
            scores = []
            fit_vectors = vectors[torch.isin(classes, fit_classes)]
            for sketch_map, photo_map in self._maps(domains, fit_classes, fit_vectors, points):
                metrics = evaluate(
                    sketches[sketch_held] @ sketch_map,
                    sketch_labels[sketch_held],
                    photos[photo_held] @ photo_map,
                    photo_labels[photo_held],
                    distance="cosine",
                    metrics=[VALIDATION_METRIC],
                )
                scores.append(metrics[VALIDATION_METRIC])
            best = max(range(len(points)), key=lambda i: (scores[i], -i))  # ties: the first grid point
            points, score = [points[best]], scores[best]
        chosen = points[0]
        domains = ((sketches, sketch_labels), (photos, photo_labels))
        ((sketch_map, photo_map),) = self._maps(domains, classes, vectors, [chosen])
        if not (torch.isfinite(sketch_map).all() and torch.isfinite(photo_map).all()):
            raise FloatingPointError(
                f"{self.method_name}: the closed-form solution is not finite (regularisers {chosen}): check "
                f"the training features for NaN/inf or huge values"
            )
        self.sketch_projection.copy_(sketch_map)
        self.photo_projection.copy_(photo_map)
        self.regularisers.copy_(
            torch.tensor([chosen[name] for name in self.regulariser_names], dtype=torch.float64)
        )
        self.validation_score.fill_(score)
        if self._trainer is not None:
            logged = {f"fit/{name}": value for name, value in chosen.items()}
            if score != NO_SEARCH:
                logged[f"fit/val_{VALIDATION_METRIC}"] = score
            self.log_dict(logged, sync_dist=False)
        return dict(chosen)

    # --- under the Trainer: collect, then solve at the last training batch -----------------------------
    def on_train_epoch_start(self) -> None:
        self._collected = []

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        keys = ("sketch", "photo", "label", "sketch_index", "photo_index")
        self._collected.append({key: batch[key].detach() for key in keys})

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self._fit_collected()

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        if self._collected and not self.trainer.sanity_checking:  # a validation before the last batch
            self._fit_collected()

    def _gathered(self, key: str) -> Tensor:
        local = torch.cat([part[key] for part in self._collected])
        if self.trainer.world_size == 1:
            return local
        sizes = self.all_gather(torch.tensor(len(local), device=local.device)).reshape(-1)
        padded = local.new_zeros((int(sizes.max()), *local.shape[1:]))
        padded[: len(local)] = local
        parts = self.all_gather(padded)
        return torch.cat([part[: int(n)] for part, n in zip(parts, sizes, strict=True)])

    def _fit_collected(self) -> None:
        data = {key: self._gathered(key) for key in self._collected[0]}
        self._collected = []
        sketch_rows = first_of_each_index(data["sketch_index"])
        photo_rows = first_of_each_index(data["photo_index"])
        self.fit_features(
            data["sketch"][sketch_rows].cpu(),
            data["label"][sketch_rows].cpu(),
            data["photo"][photo_rows].cpu(),
            data["label"][photo_rows].cpu(),  # a training pair's photo has its sketch's class
        )

    # --- retrieval -----------------------------------------------------------------------------------
    def _embed(self, x: Tensor, projection: Tensor) -> Tensor:
        return (self._prepare(x) @ projection.to(torch.float64)).to(x.dtype)

    @torch.no_grad()
    def embed_query(self, x: Tensor) -> Tensor:
        return self._embed(x, self.sketch_projection)

    @torch.no_grad()
    def embed_gallery(self, x: Tensor) -> Tensor:
        return self._embed(x, self.photo_projection)


class _EszslMaps:
    def __init__(self, features: Tensor, labels: Tensor, classes: Tensor, vectors: Tensor) -> None:
        self.solver = EszslSolver(features.T, one_hot_targets(labels, classes), vectors)

    def projection(self, gamma: float, lam: float) -> Tensor:
        return self.solver.solve(gamma, lam)  # V (d×a): the embedding of x is Vᵀ x


class _SaeMaps:
    def __init__(self, features: Tensor, labels: Tensor, classes: Tensor, vectors: Tensor) -> None:
        per_sample = vectors[torch.searchsorted(classes, labels)]  # [n, a]: each sample's class vector
        self.solver = SaeSolver(features.T, per_sample.T)

    def projection(self, lam: float) -> Tensor:
        return self.solver.solve(lam).T  # Wᵀ (d×a): the encoder's embedding of x is W x


@register_method("eszsl")
class ESZSL(ClosedFormZSL):
    """ESZSL (Romera-Paredes & Torr, ICML'15, eq. 5) per domain; see the module docstring.

    ``gamma`` weighs the feature-side regulariser, ``lam`` the signature side; None (default) chooses it
    from ``grid`` on held-out seen classes.
    """

    regulariser_names: ClassVar[tuple[str, ...]] = ("gamma", "lam")

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        gamma: float | None = None,
        lam: float | None = None,
        grid: Sequence[float] = DEFAULT_GRID,
        side_information: str = "class_semantics",
        normalise_features: bool = True,
        validation_share: float = 0.25,
        validation_seed: int = 0,
        eval_metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
    ) -> None:
        grid, eval_metrics = tuple(float(g) for g in grid), tuple(str(m) for m in eval_metrics)
        super().__init__(
            data,
            fixed={"gamma": gamma, "lam": lam},
            grid=grid,
            side_information=side_information,
            normalise_features=normalise_features,
            validation_share=validation_share,
            validation_seed=validation_seed,
            eval_metrics=eval_metrics,
        )
        self.save_hyperparameters(ignore=["data"])

    def solver(self, features: Tensor, labels: Tensor, classes: Tensor, vectors: Tensor) -> _EszslMaps:
        return _EszslMaps(features, labels, classes, vectors)


@register_method("sae")
class SAE(ClosedFormZSL):
    """Semantic autoencoder (Kodirov et al., CVPR'17, eq. 6) per domain; see the module docstring.

    ``lam`` weighs the decoder term ``λ‖X − WᵀS‖²``; None (default) chooses it from ``grid`` on held-out
    seen classes (the official demos use 0.2, 5 and 5·10^5 depending on the dataset).
    """

    regulariser_names: ClassVar[tuple[str, ...]] = ("lam",)

    def __init__(
        self,
        data: DataInfo | Mapping[str, Any],
        *,
        lam: float | None = None,
        grid: Sequence[float] = DEFAULT_GRID,
        side_information: str = "class_semantics",
        normalise_features: bool = True,
        validation_share: float = 0.25,
        validation_seed: int = 0,
        eval_metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
    ) -> None:
        grid, eval_metrics = tuple(float(g) for g in grid), tuple(str(m) for m in eval_metrics)
        super().__init__(
            data,
            fixed={"lam": lam},
            grid=grid,
            side_information=side_information,
            normalise_features=normalise_features,
            validation_share=validation_share,
            validation_seed=validation_seed,
            eval_metrics=eval_metrics,
        )
        self.save_hyperparameters(ignore=["data"])

    def solver(self, features: Tensor, labels: Tensor, classes: Tensor, vectors: Tensor) -> _SaeMaps:
        return _SaeMaps(features, labels, classes, vectors)
