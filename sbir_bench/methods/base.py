"""The one interface between methods and the rest of the suite.

A method is a LightningModule that embeds query sketches (:meth:`embed_query`) and gallery items
(:meth:`embed_gallery`) and names the distance its embeddings are compared with. Validation and test
loops are shared here: they collect embeddings with their global indices, gather them across DDP ranks
(dropping DistributedSampler padding) and hand them to the evaluation engine, which knows nothing of
any method. Dataloader 0 of the val/test loaders yields queries, dataloader 1 the gallery.

Checkpoints load on their own: every method is built from a :class:`DataInfo` (``data``), which the base
class writes into the checkpoint's hyper-parameters as plain data, with the method's registered name, so
``Method.load_from_checkpoint(path)`` needs no other argument (``sbir-bench embed`` relies on it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import Tensor

from sbir_bench.data.records import DataInfo
from sbir_bench.evaluation.engine import DEFAULT_METRICS, evaluate, gather_embeddings
from sbir_bench.evaluation.metrics import parse_metric
from sbir_bench.registry import METHODS

__all__ = ["DataInfo", "RetrievalMethod", "QUERIES", "GALLERY", "METHOD_KEY", "data_hparams", "data_info"]

QUERIES, GALLERY = 0, 1
METHOD_KEY = "sbir_bench_method"  # the checkpoint entry naming the method's registered name


def data_hparams(info: DataInfo) -> dict[str, Any]:
    """``info`` as plain data for a checkpoint's hyper-parameters (loadable with ``weights_only=True``).

    The class side information is kept by its size only (``semantics_dim``): a method that uses the
    vectors keeps them in a buffer, so they come back with its state_dict.
    """
    semantics = info.class_semantics
    hparams = {
        "num_classes": int(info.num_classes),
        "seen_classes": [int(c) for c in info.seen_classes],
        "feature_dim": None if info.feature_dim is None else int(info.feature_dim),
        "image_size": None if info.image_size is None else int(info.image_size),
        "semantics_dim": None if semantics is None else int(semantics.shape[1]),
    }
    # the view count and feature pyramid only where set (checkpoints without views keep their hparams)
    if info.num_views:
        hparams["num_views"] = int(info.num_views)
    if info.feature_levels:
        hparams["feature_levels"] = [int(level) for level in info.feature_levels]
    return hparams


def data_info(data: DataInfo | Mapping[str, Any]) -> DataInfo:
    """A :class:`DataInfo`, from itself or from :func:`data_hparams` (a checkpoint being loaded)."""
    if isinstance(data, DataInfo):
        return data
    return DataInfo(
        num_classes=int(data["num_classes"]),
        seen_classes=tuple(int(c) for c in data["seen_classes"]),
        feature_dim=data.get("feature_dim"),
        image_size=data.get("image_size"),
        num_views=int(data.get("num_views", 0)),
        feature_levels=tuple(int(level) for level in data.get("feature_levels", ())),
    )


class RetrievalMethod(L.LightningModule):
    """Base class: subclasses implement ``embed_query``/``embed_gallery`` and, if trained, ``training_step``.

    Class attributes tell the DataModule what to serve:
      - ``inputs``: ``"features"`` (cached backbone features) or ``"images"`` (tensors).
      - ``train_sampling``: ``"pairs"`` (sketch with its photo), ``"triplets"`` or ``"none"`` (no training).
    """

    inputs: ClassVar[str] = "features"
    train_sampling: ClassVar[str] = "pairs"
    distance: str = "cosine"  # cosine | euclidean | hamming, or "custom": ranked by pairwise_distance

    def __init__(
        self, data: DataInfo | Mapping[str, Any], eval_metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS
    ) -> None:
        super().__init__()
        self.data_info = data_info(data)
        self.eval_metrics = tuple(eval_metrics)
        self._buffers_by_loader: dict[int, list[tuple[Tensor, Tensor, Tensor]]] = {}
        self.last_metrics: dict[str, float] = {}
        self.last_embeddings: dict[str, tuple[Tensor, Tensor]] = {}

    @property
    def needs_training(self) -> bool:
        return self.train_sampling != "none"

    # --- the interface -------------------------------------------------------------------------
    def embed_query(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def embed_gallery(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def pairwise_distance(self, queries: Tensor, gallery: Tensor) -> Tensor:
        """A method's own test-time score when ``distance = "custom"`` (e.g. DMAR's R(s, p)): [Q, D] query
        and [G, D] gallery embeddings (CPU tensors, as embed_query / embed_gallery return them) -> [Q, G],
        smaller = closer. The engine ranks by it with the suite's tie rule, knowing nothing else of it."""
        raise NotImplementedError(
            f"{type(self).__name__} sets distance='custom' but has no pairwise_distance"
        )

    @property
    def ranking_distance(self) -> str | Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """What the engine ranks by: the distance's name, or :meth:`pairwise_distance` as a score function."""
        if self.distance != "custom":
            return self.distance

        def score(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                values = self.pairwise_distance(torch.from_numpy(queries), torch.from_numpy(gallery))
            return values.detach().double().cpu().numpy()

        return score

    # --- shared evaluation loop --------------------------------------------------------------------
    def _collect(self, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        embed = self.embed_query if dataloader_idx == QUERIES else self.embed_gallery
        embeddings = embed(batch["input"])
        if not torch.isfinite(embeddings.float()).all():
            side = "query" if dataloader_idx == QUERIES else "gallery"
            raise FloatingPointError(f"{type(self).__name__} produced NaN/inf {side} embeddings")
        self._buffers_by_loader.setdefault(dataloader_idx, []).append(
            (embeddings.detach(), batch["label"].detach(), batch["index"].detach())
        )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch, dataloader_idx)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._collect(batch, dataloader_idx)

    def on_validation_epoch_start(self) -> None:
        self._buffers_by_loader = {}

    on_test_epoch_start = on_validation_epoch_start

    def _dataset_sizes(self, stage: str) -> list[int | None]:
        """Items in each val/test dataloader's dataset, so a gather missing trailing items fails loudly."""
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        batches = self.trainer.num_val_batches if stage == "val" else self.trainer.num_test_batches
        sizes: list[int | None] = []
        for loader, n_batches in zip(loaders, batches, strict=False):
            limited = hasattr(loader, "__len__") and n_batches < len(loader)  # debug runs: limit_*_batches
            sizes.append(len(loader.dataset) if hasattr(loader, "dataset") and not limited else None)
        return sizes

    def _score(self, stage: str) -> dict[str, float]:
        gathered = {}
        sizes = self._dataset_sizes(stage)
        for loader, name in ((QUERIES, "query"), (GALLERY, "gallery")):
            parts = self._buffers_by_loader.get(loader)
            if not parts:
                raise RuntimeError(f"{stage}: the {name} dataloader produced no batches")
            emb, lab, idx = (torch.cat(p) for p in zip(*parts, strict=True))
            n_expected = sizes[loader] if loader < len(sizes) else None
            gathered[name] = gather_embeddings(emb, lab, idx, n_expected=n_expected)
        self._buffers_by_loader = {}
        (q, ql), (g, gl) = gathered["query"], gathered["gallery"]
        self.last_embeddings = {"query": (q, ql), "gallery": (g, gl)}
        triplets = self._test_triplets() if stage == "test" else None
        names = [m for m in self.eval_metrics if triplets is not None or not parse_metric(m).on_triplets]
        metrics = evaluate(  # test results carry chance/<m> and ceiling/<m> beside each metric
            q,
            ql,
            g,
            gl,
            distance=self.ranking_distance,
            metrics=names,
            references=stage == "test",
            triplets=triplets,
        )
        self.last_metrics = metrics
        # every rank holds the same gathered data and so the same numbers: no sync needed. Counts
        # (n_queries, ...) are sizes, not a history: the record and the logger's run summary hold them
        scores = {f"{stage}/{k}": float(v) for k, v in metrics.items() if not k.startswith("n_")}
        self.log_dict(scores, sync_dist=False)
        return metrics

    def _test_triplets(self) -> np.ndarray | None:
        """The test part's annotated triplets as (query, positive, negative) positions (fine-grained data
        such as QMUL's), or None: then ``triplet_acc`` is left out of the record."""
        trainer = getattr(self, "_trainer", None)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        triplets = getattr(datamodule, "test_triplets", None)
        return triplets() if callable(triplets) else None

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._buffers_by_loader = {}
            return
        self._score("val")

    def on_test_epoch_end(self) -> None:
        self._score("test")

    def fitted_values(self) -> dict[str, float]:
        """Values the method chose while training (e.g. regularisers picked on validation data); the run's
        record keeps them under ``extra["fitted"]``. None by default."""
        return {}

    def summary_images(self, datamodule: Any) -> dict[str, tuple[Any, str]]:
        """Pictures of what the method learned (e.g. a generator's outputs), ``name -> (PIL image, caption)``:
        the runner calls this once after testing (rank 0, ``datamodule`` set up), writes each image as
        ``<run folder>/<name>.png`` and sends it to the logger. None by default."""
        return {}

    # --- training guards ---------------------------------------------------------------------------------
    @property
    def registered_name(self) -> str | None:
        """The name this method's class is registered under, if any."""
        names = [name for name in METHODS.names() if METHODS.get(name) is type(self)]
        return names[0] if names else None

    @property
    def method_name(self) -> str:
        """The registered name of this method (its class name when it is not registered)."""
        return self.registered_name or type(self).__name__

    def check_loss(self, loss: Tensor, terms: Mapping[str, Tensor], hint: str | None = None) -> None:
        """Stop on a NaN/inf training loss, naming the method, epoch, step and every term's value (the run
        then fails: its record says so and no metric is written). ``hint`` tells the user what to try; by
        default: a lower learning rate (``hparams.lr`` when the method has one), or the input features."""
        if torch.isfinite(loss).all():
            return
        if hint is None:
            lr = self.hparams.get("lr")
            hint = (
                f"lower the learning rate{f' (lr={lr})' if lr is not None else ''} or check the input "
                "features for NaN/inf or huge values"
            )
        values = ", ".join(f"{name}={float(value):.4g}" for name, value in terms.items())
        bad = [name for name, value in terms.items() if not torch.isfinite(value).all()]
        raise FloatingPointError(
            f"{self.method_name}: the training loss is {float(loss)} at epoch {self.current_epoch}, step "
            f"{self.global_step} (non-finite terms: {', '.join(bad) or 'none, their sum overflowed'}; "
            f"{values}){': ' + hint if hint else ''}"
        )

    def log_training(self, loss: Tensor, terms: Mapping[str, Tensor], batch_size: int) -> None:
        """Log ``train/loss`` (progress bar) and each term as ``train/<name>``."""
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        logged = {f"train/{name}": value.detach() for name, value in terms.items()}
        self.log_dict(logged, batch_size=batch_size)

    def configure_optimizers(self) -> Any:  # untrained methods have nothing to optimise
        return None

    # --- checkpoints ---------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make the checkpoint self-sufficient: ``data`` among the hyper-parameters (subclasses save theirs
        with ``save_hyperparameters(ignore=["data"])``) and the registered name of the method.
        Subclasses overriding this hook call ``super().on_save_checkpoint(checkpoint)``."""
        checkpoint.setdefault(self.CHECKPOINT_HYPER_PARAMS_KEY, {})["data"] = data_hparams(self.data_info)
        checkpoint[METHOD_KEY] = self.registered_name
