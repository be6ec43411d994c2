"""Shared fixtures: a tiny synthetic configuration that trains and evaluates in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach W&B servers or pop up prompts.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")

TINY_DATA = [
    "data.dataset_kwargs.num_classes=12",
    "data.dataset_kwargs.photos_per_class=12",
    "data.dataset_kwargs.sketches_per_photo=1",
    "data.dataset_kwargs.image_size=32",
    "data.dataset_kwargs.num_unseen=2",
    "data.dataset_kwargs.extended_per_class=12",
    "data.backbone.image_size=32",
    "data.backbone.pretrain_epochs=1",
]
# the sketch -> 3D default, tiny: 20 classes x 3 models (4 unseen), 3 + 1 sketches per class, 32 px
TINY_3D_DATA = [
    "data=synthetic_3d",
    "data.dataset_kwargs.num_classes=20",
    "data.dataset_kwargs.models_per_class=3",
    "data.dataset_kwargs.sketches_per_class=3",
    "data.dataset_kwargs.test_sketches_per_class=1",
    "data.dataset_kwargs.sketch_size=32",
    "data.dataset_kwargs.image_size=32",
    "data.dataset_kwargs.num_views=4",
    "data.dataset_kwargs.num_unseen=4",
    "data.backbone.image_size=32",
    "data.backbone.pretrain_epochs=1",
]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``long`` first: under pytest-xdist (``make test``) one worker starts the long one while
    the others share the rest, so the suite takes about as long as that test."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: order otherwise kept


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One data/feature cache for the whole session (generated data is deterministic, so sharing is safe)."""
    return os.environ.get("SBIR_TEST_CACHE") or str(tmp_path_factory.mktemp("sbir_cache"))


def quiet_run_in(tmp_path, cache_dir) -> list[str]:
    """Overrides sending a bench run's cache, records, leaderboard and outputs under tmp_path, no logger."""
    return [
        f"paths.cache_dir={cache_dir}",
        f"paths.results_dir={tmp_path / 'results'}",
        f"paths.leaderboard_dir={tmp_path / 'leaderboard'}",
        f"paths.output_dir={tmp_path / 'outputs'}",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]


@pytest.fixture
def tiny_overrides(tmp_path, shared_cache):
    """Overrides that point every output of a bench run into tmp_path, on tiny synthetic data."""
    return [*quiet_run_in(tmp_path, shared_cache), *TINY_DATA]


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """The files fully hashed by :func:`sbir_bench.files.sha256_file`, in order (the memo forgotten first)."""
    from sbir_bench import files

    seen: list[str] = []
    original = files._full_sha256

    def counting(path):  # noqa: ANN001, ANN202
        seen.append(Path(path).name)
        return original(path)

    monkeypatch.setattr(files, "_full_sha256", counting)
    monkeypatch.setattr(files, "_digests", {})
    return seen
