"""Every registered method's checkpoint loads on its own: ``Method.load_from_checkpoint(path)``, no other
argument, gives the same hyper-parameters, weights and embeddings."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sbir_bench.data.records import DataInfo
from sbir_bench.methods.base import METHOD_KEY, RetrievalMethod
from sbir_bench.registry import METHODS

FEATURE_DIM, IMAGE_SIZE, NUM_CLASSES, NUM_VIEWS = 16, 32, 4, 3
DATA = DataInfo(
    num_classes=NUM_CLASSES,
    seen_classes=(0, 1, 3),
    feature_dim=FEATURE_DIM,
    image_size=IMAGE_SIZE,
    class_semantics=np.ones((NUM_CLASSES, 5), dtype=np.float32),
    num_views=NUM_VIEWS,
)


def inputs_for(method: RetrievalMethod, n: int, side: str = "query") -> torch.Tensor:
    """Random inputs as the DataModule serves them (photos with contours: 6 channels in the gallery; shapes
    under view inputs: one row or image per view in the gallery)."""
    generator = torch.Generator().manual_seed(0)
    channels = 6 if method.inputs == "images_with_contours" and side == "gallery" else 3
    features = method.inputs in ("features", "view_features")
    shape = (FEATURE_DIM,) if features else (channels, IMAGE_SIZE, IMAGE_SIZE)
    views = (NUM_VIEWS,) if method.inputs.startswith("view_") and side == "gallery" else ()
    return torch.rand(n, *views, *shape, generator=generator)


def evaluation_loader(inputs: torch.Tensor) -> DataLoader:
    items = [{"input": x, "label": i % NUM_CLASSES, "index": i} for i, x in enumerate(inputs)]
    return DataLoader(items, batch_size=4)


@pytest.mark.parametrize("name", METHODS.names())
def test_a_checkpoint_loads_with_no_other_argument(name, tmp_path):
    method = METHODS.create(name, data=DATA, eval_metrics=["map@all"])
    x, g = inputs_for(method, 6), inputs_for(method, 6, side="gallery")
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(method, dataloaders=[evaluation_loader(x), evaluation_loader(g)], verbose=False)
    path = tmp_path / f"{name}.ckpt"
    trainer.save_checkpoint(path)

    saved = torch.load(path, weights_only=True)  # plain data only
    assert saved[METHOD_KEY] == name
    assert saved["hyper_parameters"]["data"] == {
        "num_classes": NUM_CLASSES,
        "seen_classes": [0, 1, 3],
        "feature_dim": FEATURE_DIM,
        "image_size": IMAGE_SIZE,
        "semantics_dim": 5,
        "num_views": NUM_VIEWS,
    }
    loaded = type(method).load_from_checkpoint(path)
    assert type(loaded) is type(method)
    assert dict(loaded.hparams) == dict(method.hparams) and loaded.eval_metrics == ("map@all",)
    assert loaded.data_info.seen_classes == (0, 1, 3) and loaded.data_info.feature_dim == FEATURE_DIM
    assert loaded.data_info.num_views == NUM_VIEWS
    original, restored = method.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[key], restored[key]) for key in original)
    method.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded.embed_query(x), method.embed_query(x))
        assert torch.equal(loaded.embed_gallery(g), method.embed_gallery(g))


def test_a_method_outside_the_registry_is_not_named(tmp_path):
    class Unregistered(RetrievalMethod):
        def embed_query(self, x):
            return x

        embed_gallery = embed_query

    checkpoint: dict = {}
    Unregistered(DATA).on_save_checkpoint(checkpoint)
    assert checkpoint[METHOD_KEY] is None and checkpoint["hyper_parameters"]["data"]["num_classes"] == 4
