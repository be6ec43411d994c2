"""Training batches of the fine-grained methods (sbir_bench/data/modules.py): ``annotated_triplets`` (Yu et
al., CVPR'16: annotated pairs, easy negatives with probability 0.25) and ``attribute_triplets`` (DMAR: hard
negatives among the photos sharing the most attributes), and the attribute vectors in triplet batches, on a
small hand-built catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sbir_bench.data import modules
from sbir_bench.data.modules import RetrievalDataModule, _annotated_candidates, _attribute_candidates
from sbir_bench.data.records import Catalog, Split
from sbir_bench.registry import DATASETS

FAKE = "fake-fine-grained-for-sampling-tests"
SIZE, PER_CLASS, TRAIN_PER_CLASS = 16, 5, 4
# instance attributes: class 0 = a0..a4, class 1 = b0..b4; each vector is unique, so a batch's attribute
# rows name the instances served. Mismatches of a0 against its class: a1 1, a2 1, a3 3 (Hamming distance)
ATTRIBUTES = {
    "a0": [1, 0, 0, 0, 0],
    "a1": [1, 1, 0, 0, 0],
    "a2": [1, 0, 1, 0, 0],
    "a3": [0, 1, 1, 0, 0],
    "a4": [0, 0, 0, 1, 1],
    "b0": [0, 0, 0, 0, 1],
    "b1": [0, 0, 0, 1, 0],
    "b2": [1, 1, 1, 1, 1],
    "b3": [1, 1, 1, 0, 1],
    "b4": [0, 1, 0, 1, 1],
}


def build_catalog(cache_dir: str, triplets: bool = True, attributes: bool = True) -> Catalog:
    """2 classes x 5 instances, one photo (record 2k) and one sketch (record 2k + 1) each; instances 0-3 of
    each class train, instance 4 tests. Annotated training triplets: sketch a0 -> (a0, a1), (a0, a2);
    sketch b0 -> (b0, b1); no other sketch has any."""
    folder = Path(cache_dir) / FAKE
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, prefix in enumerate("ab"):
        for i in range(PER_CLASS):
            for domain in ("photo", "sketch"):
                path = folder / f"{prefix}{i}-{domain}.png"
                if not path.exists():
                    Image.fromarray(np.full((SIZE, SIZE, 3), 20 * i + 100 * label, dtype=np.uint8)).save(path)
                rows.append((domain, label, f"{prefix}{i}", str(path), ()))
    records = pd.DataFrame(rows, columns=["domain", "label", "instance", "path", "views"])
    record = {(r.instance, r.domain): i for i, r in enumerate(records.itertuples())}
    train = np.flatnonzero(records["instance"].str[1].astype(int) < TRAIN_PER_CLASS)
    test = np.flatnonzero(records["instance"].str[1].astype(int) >= TRAIN_PER_CLASS)
    empty = np.array([], dtype=np.int64)
    split = Split(
        "fine_grained",
        "fine_grained",
        (0, 1),
        (),
        train,
        empty,
        empty,
        test[records["domain"][test] == "sketch"],
        test[records["domain"][test] == "photo"],
    )
    listed = [("a0", "a0", "a1"), ("a0", "a0", "a2"), ("b0", "b0", "b1")]
    return Catalog(
        name=FAKE,
        records=records,
        class_names=["a", "b"],
        splits={"fine_grained": split},
        instance_attributes={k: np.asarray(v, dtype=np.float32) for k, v in ATTRIBUTES.items()}
        if attributes
        else {},
        triplets={
            "fine_grained": np.array(
                [[record[s, "sketch"], record[p, "photo"], record[n, "photo"]] for s, p, n in listed]
            )
        }
        if triplets
        else {},
        fingerprint="fake-fine-grained",
    )


if FAKE not in DATASETS:
    DATASETS.register(FAKE)(lambda cache_dir, **kwargs: build_catalog(cache_dir, **kwargs))


def make(tmp_path, sampling: str, **dataset_kwargs) -> RetrievalDataModule:
    module = RetrievalDataModule(
        FAKE,
        "fine_grained",
        dataset_kwargs=dataset_kwargs,
        cache_dir=str(tmp_path),
        backbone={"name": "resnet10t", "image_size": SIZE},
        batch_size=4,
        seed=0,
    )
    module.configure_for("images", sampling)
    module.prepare_data()
    module.setup("fit")
    return module


def served(module: RetrievalDataModule, epochs: int) -> list[tuple[str, str, str]]:
    """(sketch, positive, negative) instance names of every item the sampler draws in ``epochs`` epochs."""
    instances = module.catalog.records["instance"].to_numpy()
    loader = module.train_dataloader()
    sketches = loader.dataset.sketches
    return [
        (instances[sketches[position]], instances[positive], instances[negative])
        for _ in range(epochs)
        for position, positive, negative in loader.sampler
    ]


def test_annotated_triplets_draw_annotated_pairs_and_a_quarter_of_easy_negatives(tmp_path):
    draws = served(make(tmp_path, "annotated_triplets"), epochs=250)
    assert len(draws) == 250 * 8  # every training sketch once per epoch
    by_sketch = {s: [(p, n) for s2, p, n in draws if s2 == s] for s in {d[0] for d in draws}}
    for sketch, pairs in by_sketch.items():
        assert all(p == sketch != n for p, n in pairs), "the positive is the annotated (own) photo"
        assert all(n[0] in "ab" and int(n[1]) < TRAIN_PER_CLASS for _, n in pairs), "training photos only"
    # a0: annotated negatives a1, a2 (75 %, half each); easy (25 %): the 5 training photos outside
    # {a0, a1, a2}
    negatives = pd.Series([n for _, n in by_sketch["a0"]]).value_counts(normalize=True)
    annotated = negatives.get("a1", 0) + negatives.get("a2", 0)
    assert 0.68 < annotated < 0.82 and abs(negatives["a1"] - negatives["a2"]) < 0.1
    assert set(negatives.index) == {"a1", "a2", "a3", "b0", "b1", "b2", "b3"}
    # b0: annotated b1 (75 %), easy among the 6 others (25 %, about 4 % each)
    negatives = pd.Series([n for _, n in by_sketch["b0"]]).value_counts(normalize=True)
    assert 0.68 < negatives["b1"] < 0.82 and set(negatives.index) == {
        "a0",
        "a1",
        "a2",
        "a3",
        "b1",
        "b2",
        "b3",
    }
    # a sketch without annotated triplets: own photo, any other training photo (uniform over 7)
    negatives = pd.Series([n for _, n in by_sketch["a3"]]).value_counts(normalize=True)
    assert "a3" not in negatives.index and len(negatives) == 7 and negatives.max() < 0.25


def test_candidate_lists_by_hand():
    """Records: photos 10, 11, 12, 13; sketches 20, 21 (own photos 10, 11)."""
    triplets = np.array([[20, 10, 11], [20, 10, 12], [21, 11, 10], [21, 11, 99], [77, 10, 11]])
    candidates, pools = _annotated_candidates(
        np.array([20, 21]), np.array([10, 11]), np.array([10, 11, 12, 13]), triplets
    )
    # rows with a photo outside the training photos (99) or an unknown anchor (77) are skipped
    assert candidates[0].tolist() == [[10, 11], [10, 12]] and candidates[1].tolist() == [[11, 10]]
    assert pools[0].tolist() == [13] and pools[1].tolist() == [12, 13]
    # attributes: sketch 20 = [1, 0, 0], sketch 21 = [0, 1, 1]; photos 10..13 = [1,0,0], [0,1,1], [1,1,0],
    # [1,0,1]; classes: sketch 20 and photos 10, 12, 13 class 0; sketch 21 and photo 11 class 1
    photo_attributes = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [1, 0, 1]])
    candidates, pools = _attribute_candidates(
        np.array([[1, 0, 0], [0, 1, 1]]),
        np.array([0, 1]),
        np.array([10, 11]),
        np.array([10, 11, 12, 13]),
        photo_attributes,
        np.array([0, 1, 0, 0]),
        neighbours=1,
    )
    # sketch 20: same-class photos but its own: 12 (1 mismatch), 13 (1 mismatch) -> tie, lower record first
    assert candidates[0].tolist() == [[10, 12]] and pools[0].tolist() == [11, 12, 13]
    # sketch 21: no other photo of class 1 -> no hard pairs, random negatives only
    assert candidates[1].shape == (0, 2) and pools[1].tolist() == [10, 12, 13]


def test_attribute_triplets_prefer_photos_sharing_attributes(tmp_path):
    module = make(tmp_path, "attribute_triplets")
    draws = served(module, epochs=250)
    assert all(p == s != n for s, p, n in draws)
    # a0's hard pool (10 nearest of its class): a1, a2 (1 mismatch), a3 (3); half the draws from it, half
    # uniform over the 7 other photos: P(a1) = 0.5 / 3 + 0.5 / 7 = 0.238; P(b*) = 0.5 / 7 = 0.071 each
    negatives = pd.Series([n for s, _, n in draws if s == "a0"]).value_counts(normalize=True)
    assert 0.18 < negatives["a1"] < 0.30 and 0.03 < negatives["b2"] < 0.12
    same_class = np.mean([s[0] == n[0] for s, _, n in draws])
    assert 0.6 < same_class < 0.8  # 0.5 + 0.5 * 3 / 7 = 0.714


@pytest.mark.parametrize("sampling", ["annotated_triplets", "attribute_triplets"])
def test_triplet_batches_carry_the_instances_attribute_vectors(tmp_path, sampling):
    module = make(tmp_path, sampling)
    assert module.info().attribute_dim == 5
    vectors = {tuple(v): k for k, v in ATTRIBUTES.items()}
    for batch in module.train_dataloader():
        for key in ("sketch", "positive", "negative"):
            attributes = batch[f"{key}_attributes"]
            assert attributes.dtype == torch.float32 and attributes.shape == (len(batch["sketch"]), 5)
        names = [
            [vectors[tuple(int(x) for x in batch[f"{k}_attributes"][i])] for i in range(4)]
            for k in ("sketch", "positive")
        ]
        assert names[0] == names[1], "the positive is the sketch's own instance"


@pytest.mark.parametrize(
    ("sampling", "missing", "message"),
    [
        ("annotated_triplets", "triplets", "no annotated training triplets"),
        ("attribute_triplets", "attributes", "no instance attributes"),
    ],
)
def test_missing_annotations_fall_back_to_fine_triplets_with_a_warning(tmp_path, sampling, missing, message):
    module = make(tmp_path, sampling, **{missing: False})
    with pytest.warns(UserWarning, match=message):
        loader = module.train_dataloader()
    assert isinstance(loader.sampler, modules._EpochDraws) and loader.sampler.negative == "other"


def test_config_lists_reach_the_checkpoint_as_plain_lists(tmp_path):
    """A data config's lists (synthetic_fg's ``categories``) arrive as ListConfig; checkpoints loaded with
    ``weights_only=True`` refuse those, so the DataModule keeps plain containers."""
    from omegaconf import OmegaConf

    kwargs = OmegaConf.create({"triplets": True, "nested": {"names": ["shoe", "chair"]}})
    module = RetrievalDataModule(FAKE, "fine_grained", dataset_kwargs=kwargs, cache_dir=str(tmp_path))
    saved = module.hparams["dataset_kwargs"]
    assert type(saved) is dict and type(saved["nested"]["names"]) is list
    torch.save(dict(module.hparams), tmp_path / "hparams.pt")
    torch.load(tmp_path / "hparams.pt", weights_only=True)
