"""RetrievalDataModule: batch contents, pairing, evaluation indices, seeding and errors, on a tiny catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sbir_bench.data.images import IMAGENET_MEAN, IMAGENET_STD
from sbir_bench.data.modules import RetrievalDataModule
from sbir_bench.data.records import DatasetError
from sbir_bench.registry import DATASETS

from .test_features import NUM_CLASSES, SIZE, build_fake_catalog

FAKE = "fake-for-datamodule-tests"


def _fake_dataset(cache_dir: str, val: str = "both", pairing: str = "instance"):
    catalog = build_fake_catalog(Path(cache_dir) / "fake-data", name=f"fake-{val}", val=val)
    catalog.pairing = pairing
    return catalog


if FAKE not in DATASETS:
    DATASETS.register(FAKE)(_fake_dataset)


def make(
    tmp_path,
    split="traditional",
    *,
    inputs="features",
    train_sampling="pairs",
    val="both",
    pairing="instance",
    **options,
):
    options = {"batch_size": 4, "eval_batch_size": 5, "seed": 0, **options}
    module = RetrievalDataModule(
        FAKE,
        split,
        dataset_kwargs={"val": val, "pairing": pairing},
        cache_dir=str(tmp_path / "cache"),
        backbone={"name": "resnet10t", "image_size": SIZE},
        **options,
    )
    module.configure_for(inputs, train_sampling)
    module.prepare_data()
    module.setup("fit")
    return module


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory) -> Path:
    """One cache for the module's feature-based DataModules (features are extracted once)."""
    return tmp_path_factory.mktemp("datamodule")


def test_pairs_hold_each_training_sketch_with_its_own_photo(module_dir):
    module = make(module_dir)
    records, train = module.catalog.records, module.split_.train
    batches = list(module.train_dataloader())
    assert {*batches[0]} == {"sketch", "photo", "label", "sketch_index", "photo_index"}
    first = batches[0]
    assert (
        first["sketch"].shape == first["photo"].shape == (4, 512) and first["sketch"].dtype == torch.float32
    )
    for key in ("label", "sketch_index", "photo_index"):
        assert first[key].dtype == torch.int64 and first[key].shape == (4,)
    sketches = torch.cat([b["sketch_index"] for b in batches]).numpy()
    photos = torch.cat([b["photo_index"] for b in batches]).numpy()
    labels = torch.cat([b["label"] for b in batches]).numpy()
    train_sketches = train[records["domain"].to_numpy()[train] == "sketch"]
    assert sorted(sketches) == sorted(train_sketches), "every training sketch exactly once per epoch"
    assert (records["domain"][photos] == "photo").all() and np.isin(photos, train).all()
    np.testing.assert_array_equal(records["instance"][sketches], records["instance"][photos])
    np.testing.assert_array_equal(records["label"][sketches], labels)
    features = np.asarray(module._features)
    np.testing.assert_array_equal(first["sketch"].numpy(), features[first["sketch_index"].numpy()])
    np.testing.assert_array_equal(first["photo"].numpy(), features[first["photo_index"].numpy()])


TRIPLET_KEYS = {"sketch", "positive", "negative", "label", "positive_label", "negative_label"}


def _triplets_of(module, epochs=3):
    """Every served triplet as catalog rows ``(sketch, positive, negative)``, checking the batch layout."""
    records, train = module.catalog.records, module.split_.train
    features = np.asarray(module._features)
    row_of = {features[i].tobytes(): i for i in range(len(features))}
    served = []
    for _ in range(epochs):  # negatives (and class-level positives) are redrawn, the rules hold in each
        for batch in module.train_dataloader():
            assert {*batch} == TRIPLET_KEYS
            assert batch["negative"].shape[1:] == (512,) and batch["label"].dtype == torch.int64
            for sketch, positive, negative, label, positive_label, negative_label in zip(
                *(
                    batch[k].numpy()
                    for k in ("sketch", "positive", "negative", "label", "positive_label", "negative_label")
                ),
                strict=True,
            ):
                s, p, n = row_of[sketch.tobytes()], row_of[positive.tobytes()], row_of[negative.tobytes()]
                assert records["domain"][s] == "sketch" and records["label"][s] == label
                assert records["domain"][p] == records["domain"][n] == "photo" and {p, n} <= {*train}
                assert (records["label"][p], records["label"][n]) == (positive_label, negative_label)
                served.append((s, p, n))
    return records, served


def test_triplets_take_the_own_photo_and_a_photo_of_another_class(module_dir):
    records, served = _triplets_of(make(module_dir, "zeroshot", train_sampling="triplets"))
    for s, p, n in served:
        assert records["instance"][s] == records["instance"][p]
        assert records["label"][s] == records["label"][p] != records["label"][n]


def test_class_triplets_take_any_photo_of_the_class_and_a_photo_of_another_class(module_dir):
    """Coarse-grained triplets (Sangkloy et al. 2016): the positive is a photo of the sketch's class, not
    necessarily its own, drawn afresh every epoch."""
    records, served = _triplets_of(make(module_dir, "zeroshot", train_sampling="class_triplets"))
    for s, p, n in served:
        assert records["label"][s] == records["label"][p] != records["label"][n]
    other_instance = np.mean([records["instance"][s] != records["instance"][p] for s, p, _ in served])
    assert 0.2 < other_instance < 0.8  # 2 training photos per class: about half the draws


def test_fine_triplets_take_the_own_photo_and_any_other_photo(module_dir):
    """Fine-grained triplets: the positive is the sketch's own photo; the negative any other training photo,
    of the sketch's class or not."""
    records, served = _triplets_of(make(module_dir, "zeroshot", train_sampling="fine_triplets"))
    for s, p, n in served:
        assert records["instance"][s] == records["instance"][p] and n != p
    same_class = np.mean([records["label"][n] == records["label"][s] for s, _, n in served])
    assert 0 < same_class < 0.5  # one other photo of the class among the 5 others of 3 seen classes


def test_class_pairing_draws_a_same_class_training_photo_afresh_every_epoch(module_dir):
    """TU-Berlin and SHREC have no sketch-photo pairs: each epoch, every training sketch meets a training
    photo (shape) of its class drawn uniformly, from the seeded training generator."""
    module = make(module_dir, pairing="class")
    records, train = module.catalog.records, module.split_.train
    features = np.asarray(module._features)
    epochs = []
    for _ in range(3):
        batches = list(module.train_dataloader())
        sketches = torch.cat([b["sketch_index"] for b in batches]).numpy()
        photos = torch.cat([b["photo_index"] for b in batches]).numpy()
        assert sorted(sketches) == sorted(train[records["domain"].to_numpy()[train] == "sketch"])
        assert (records["domain"][photos] == "photo").all() and np.isin(photos, train).all()
        np.testing.assert_array_equal(records["label"][sketches], records["label"][photos])
        first = batches[0]
        np.testing.assert_array_equal(first["photo"].numpy(), features[first["photo_index"].numpy()])
        epochs.append(dict(zip(sketches.tolist(), photos.tolist(), strict=True)))
    assert epochs[0] != epochs[1] != epochs[2], "partners are redrawn every epoch"
    # 2 training photos per class: over three epochs a sketch meets a photo of another instance
    other_instance = [
        records["instance"][s] != records["instance"][p] for epoch in epochs for s, p in epoch.items()
    ]
    assert 0.3 < np.mean(other_instance) < 0.7
    again = make(module_dir, pairing="class")
    assert _epoch(again, "photo_index") == _epoch(make(module_dir, pairing="class"), "photo_index")


def test_class_pairing_triplets_draw_the_positive_from_the_class_and_the_negative_from_the_others(
    module_dir,
):
    module = make(module_dir, "zeroshot", train_sampling="triplets", pairing="class")
    records = module.catalog.records
    features = np.asarray(module._features)
    row_of = {features[i].tobytes(): i for i in range(len(features))}
    positives_elsewhere = 0
    for batch in module.train_dataloader():
        for sketch, positive, negative, label in zip(
            *(batch[k].numpy() for k in ("sketch", "positive", "negative", "label")), strict=True
        ):
            s, p, n = row_of[sketch.tobytes()], row_of[positive.tobytes()], row_of[negative.tobytes()]
            assert records["label"][s] == records["label"][p] == label != records["label"][n]
            assert records["domain"][p] == records["domain"][n] == "photo"
            positives_elsewhere += records["instance"][s] != records["instance"][p]
    assert positives_elsewhere > 0


def test_class_pairing_names_a_class_without_training_photos(module_dir):
    import dataclasses

    module = make(module_dir, pairing="class")
    records = module.catalog.records
    train = module.split_.train
    keep = (records["domain"].to_numpy()[train] == "sketch") | (records["label"].to_numpy()[train] != 1)
    module._split = dataclasses.replace(module.split_, train=train[keep])
    with pytest.raises(DatasetError, match="1 classes have .* no training photo, e.g. 'class1'"):
        module.train_dataloader()


@pytest.mark.parametrize("sampling", ["pairs", "triplets"])
def test_image_inputs_are_rgb_tensors(tmp_path, sampling):
    module = make(tmp_path, inputs="images", train_sampling=sampling)
    batch = next(iter(module.train_dataloader()))
    for key in ("sketch", "photo") if sampling == "pairs" else ("sketch", "positive", "negative"):
        assert batch[key].shape == (4, 3, SIZE, SIZE) and batch[key].dtype == torch.float32
    queries, gallery = module.test_dataloader()
    assert next(iter(queries))["input"].shape == (5, 3, SIZE, SIZE)
    info = module.info()
    assert info.feature_dim is None and info.image_size == SIZE
    assert not list((tmp_path / "cache").rglob("features.npy")), "image inputs need no feature cache"


def test_images_with_contours_serve_photos_with_their_contour_drawing(tmp_path):
    module = make(tmp_path, inputs="images_with_contours")
    batch = next(iter(module.train_dataloader()))
    assert batch["sketch"].shape == (4, 3, SIZE, SIZE) and batch["photo"].shape == (4, 6, SIZE, SIZE)
    queries, gallery = module.test_dataloader()
    assert next(iter(queries))["input"].shape == (5, 3, SIZE, SIZE), "sketches stay three channels"
    photos = next(iter(gallery))["input"]
    assert photos.shape[1:] == (6, SIZE, SIZE)
    plain = make(tmp_path / "plain", inputs="images").test_dataloader()[1]
    assert torch.equal(photos[:, :3], next(iter(plain))["input"]), "the photo channels are the plain image"
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    drawing = photos[:, 3:] * std + mean
    assert torch.allclose(drawing, drawing[:, :1].expand_as(drawing), atol=1e-6), "black ink on white paper"
    assert len(list((tmp_path / "cache" / "contours").rglob("contours.npy"))) == 1


@pytest.mark.parametrize(
    ("split", "stage"),
    [("traditional", "val"), ("traditional", "test"), ("zeroshot", "test"), ("gzs", "test")],
)
def test_eval_loaders_cover_every_position_once_in_order(module_dir, split, stage):
    module = make(module_dir, split)
    loaders = module.val_dataloader() if stage == "val" else module.test_dataloader()
    assert len(loaders) == 2
    for loader, side, domain in zip(loaders, ("query", "gallery"), ("sketch", "photo"), strict=True):
        batches = list(loader)
        assert {*batches[0]} == {"input", "label", "index"}
        index = torch.cat([b["index"] for b in batches]).numpy()
        labels = torch.cat([b["label"] for b in batches]).numpy()
        part = module.split_.part(f"{stage}_{side}")
        np.testing.assert_array_equal(index, np.arange(len(part)))
        rows = module.query_records(stage) if side == "query" else module.gallery_records(stage)
        assert len(rows) == len(part) and (rows["domain"] == domain).all()
        np.testing.assert_array_equal(rows["label"].to_numpy(), labels)
        inputs = torch.cat([b["input"] for b in batches]).numpy()
        np.testing.assert_array_equal(inputs, np.asarray(module._features)[part])
    if split in ("zeroshot", "gzs"):  # unseen-class queries; relevance by class, as in zeroshot
        assert set(module.query_records("test")["label"]) == {NUM_CLASSES - 1}
    if split == "gzs":  # against a gallery of every class
        assert set(module.gallery_records("test")["label"]) == set(range(NUM_CLASSES))


def test_info_describes_the_split(module_dir):
    info = make(module_dir, "zeroshot").info()
    assert info.num_classes == NUM_CLASSES and info.seen_classes == (0, 1, 2)
    assert info.feature_dim == 512 and info.class_semantics.shape == (NUM_CLASSES, NUM_CLASSES)


def _epoch(module, key="sketch_index"):
    return [batch[key].tolist() for batch in module.train_dataloader()]


def test_the_same_seed_gives_the_same_batches(module_dir):
    first, again, other = make(module_dir), make(module_dir), make(module_dir, seed=1)
    epoch1 = _epoch(first)
    assert epoch1 == _epoch(again)
    assert epoch1 != _epoch(other)
    assert _epoch(first) != epoch1, "each epoch is a fresh permutation"
    triplets = [make(module_dir, "zeroshot", train_sampling="triplets") for _ in range(2)]
    negatives = _epoch(triplets[0], "negative")
    assert negatives == _epoch(triplets[1], "negative")
    assert _epoch(triplets[0], "negative") != negatives, "negatives are redrawn every epoch"


def test_a_tail_batch_of_one_is_dropped(module_dir):
    module = make(module_dir, batch_size=5)  # 16 training sketches: 3 batches of 5 and a lone one
    assert [len(b) for b in _epoch(module)] == [5, 5, 5]
    assert [len(b) for b in _epoch(make(module_dir, batch_size=6))] == [6, 6, 4]


def test_clear_errors(module_dir):
    with pytest.raises(ValueError, match="unknown inputs 'pixels'"):
        RetrievalDataModule(FAKE, "traditional", inputs="pixels")
    module = RetrievalDataModule(FAKE, "traditional")
    with pytest.raises(ValueError, match="unknown train_sampling 'quads'.*pairs"):
        module.configure_for("features", "quads")
    with pytest.raises(RuntimeError, match="not set up"):
        module.info()
    untrained = make(module_dir, train_sampling="none")
    with pytest.raises(RuntimeError, match="not trained"):
        untrained.train_dataloader()
    with pytest.raises(DatasetError, match="no split 'nope'"):
        make(module_dir, "nope")
    with pytest.raises(ValueError, match="unknown part"):
        untrained.query_records("train")


def test_empty_validation_parts(tmp_path):
    assert make(tmp_path, val="none").val_dataloader() == []
    half = make(tmp_path, val="gallery")
    with pytest.raises(DatasetError, match="'val_query' is empty"):
        half.val_dataloader()


def test_feature_batch_size_is_the_extraction_batch(tmp_path, forward_calls):
    make(tmp_path, feature_batch_size=3)
    assert forward_calls and max(forward_calls) == 3


def test_worker_processes_serve_the_same_batches(module_dir):
    single = make(module_dir, eval_batch_size=7)
    workers = make(module_dir, eval_batch_size=7, num_workers=2)
    assert workers.train_dataloader().persistent_workers and not single.train_dataloader().persistent_workers
    assert _epoch(single) == _epoch(workers)
    for a, b in zip(single.test_dataloader()[1], workers.test_dataloader()[1], strict=True):
        torch.testing.assert_close(a["input"], b["input"])


def test_ddp_ranks_share_one_triplet_sequence(module_dir):
    """Lightning wraps the custom sampler in a DistributedSamplerWrapper (no reshuffling): two ranks with
    the same seed draw the same sequence and split it between them."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    ranks = [make(module_dir, "zeroshot", train_sampling="triplets") for _ in range(2)]
    shares = [
        list(DistributedSamplerWrapper(m.train_dataloader().sampler, num_replicas=2, rank=r, shuffle=False))
        for r, m in enumerate(ranks)
    ]
    whole = list(make(module_dir, "zeroshot", train_sampling="triplets").train_dataloader().sampler)
    assert sorted(shares[0] + shares[1]) == sorted(whole)
    assert len(shares[0]) == len(shares[1]) == len(whole) // 2


def test_semantics_option_gives_word_vectors_of_the_class_names(tmp_path):
    from sbir_bench.data.semantics import class_name_words

    names = DATASETS.create(FAKE, cache_dir=str(tmp_path / "cache"), val="both").class_names
    words = sorted({word for name in names for word in class_name_words(name)})
    rng = np.random.default_rng(0)
    table = {word: rng.standard_normal(3).round(3) for word in words}
    glove = tmp_path / "tiny_glove.txt"
    glove.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in table.items()))
    module = make(tmp_path, semantics={"vectors": str(glove), "format": "glove-text", "fallback": None})
    semantics = module.info().class_semantics
    assert semantics.shape == (len(names), 3)
    first = np.mean([table[w] for w in class_name_words(names[0])], axis=0)
    np.testing.assert_allclose(semantics[0], first, rtol=1e-5)


def test_semantics_option_gives_attribute_vectors_from_a_table(tmp_path):
    names = DATASETS.create(FAKE, cache_dir=str(tmp_path / "cache"), val="both").class_names
    table = tmp_path / "attributes.csv"
    table.write_text("class,striped,wheels\n" + "".join(f"{n},{i % 2},{i}\n" for i, n in enumerate(names)))
    module = make(tmp_path, semantics={"attributes": str(table)})
    np.testing.assert_array_equal(module.info().class_semantics, [[i % 2, i] for i in range(len(names))])
    assert module.catalog.semantics_kind == "attributes (attributes.csv)"
    with pytest.raises(ValueError, match="either attributes or word vectors"):
        make(tmp_path, semantics={"attributes": str(table), "vectors": "glove.txt"})


@pytest.mark.parametrize(("trainer", "accelerator"), [("cpu", "cpu"), ("gpu", "gpu"), ("ddp", "auto")])
def test_the_runner_hands_the_trainers_accelerator_to_the_datamodule(trainer, accelerator):
    """Extraction and pre-training follow the trainer: trainer=cpu never extracts on a GPU."""
    from sbir_bench.config import compose
    from sbir_bench.registry import METHODS
    from sbir_bench.runner import build_datamodule

    cfg = compose([f"trainer={trainer}"])
    datamodule = build_datamodule(cfg, "zeroshot", 0, METHODS.get(cfg.method.name))
    assert datamodule.accelerator == accelerator
