"""Backbones, stand-in pre-training and the verified feature cache, on a tiny catalog of 32-px PNGs."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

from sbir_bench import files
from sbir_bench.data import backbones, feature_cache
from sbir_bench.data.backbones import BackboneSpec, create_backbone, feature_dim, weights_identity
from sbir_bench.data.cache_entries import StaleCacheWarning
from sbir_bench.data.feature_cache import extract_features, feature_cache_dir
from sbir_bench.data.images import RandomEdgeMap
from sbir_bench.data.pretraining import pretrain_backbone, pretraining_indices
from sbir_bench.data.records import Catalog, DatasetError, Split
from sbir_bench.data.synthetic import design_classes
from sbir_bench.data.synthetic.render import Pose, render_photo
from sbir_bench.data.synthetic.shapes import build_parts, sample_instance
from sbir_bench.files import atomic_save_npy

NUM_CLASSES, PHOTOS_PER_CLASS, SKETCHES_PER_PHOTO, SIZE = 4, 4, 2, 32
SPEC = BackboneSpec(name="resnet10t", image_size=SIZE)


def astuple_of(split: Split) -> tuple:
    return tuple(getattr(split, f.name) for f in dataclasses.fields(split))


def build_fake_catalog(root: str | Path, *, name: str = "fake", val: str = "both") -> Catalog:
    """4 classes x 4 photos x 2 sketches (grayscale PNGs), with a traditional, a zero-shot and a gzs split.

    traditional: photos 0-1 (+ their sketches) train, photo 2 validates, photo 3 tests; all classes seen.
    zeroshot: class 3 unseen (all its items test); seen classes train on photos 0-2, validate on photo 3.
    gzs: zeroshot against a gallery of every class (class 3's photos and the seen classes' photo 3).
    ``val``: "both" parts filled, "none" (both empty) or "gallery" (val_query empty).
    """
    folder = Path(root) / name
    rows = []
    for label in range(NUM_CLASSES):
        for p in range(PHOTOS_PER_CLASS):
            instance = f"c{label}-p{p}"
            rows.append(("photo", label, instance, folder / "photo" / f"{instance}.png", p))
            rows += [
                ("sketch", label, instance, folder / "sketch" / f"{instance}-{s}.png", p)
                for s in range(SKETCHES_PER_PHOTO)
            ]
    for i, (domain, label, _, path, _) in enumerate(rows):
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(i).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            pixels[..., label % 3] = 40 * label
            image = Image.fromarray(pixels)
            (image.convert("L") if domain == "sketch" else image).save(path)
    records = pd.DataFrame(rows, columns=["domain", "label", "instance", "path", "photo_number"])
    records["path"] = records["path"].astype(str)
    records["views"] = [()] * len(records)

    def pick(domain: str, classes: range | list[int], photos: range | list[int]) -> np.ndarray:
        chosen = records["label"].isin(classes) & records["photo_number"].isin(photos)
        return np.flatnonzero(chosen & (records["domain"] == domain) if domain else chosen)

    every, seen = range(NUM_CLASSES), list(range(NUM_CLASSES - 1))
    empty = np.array([], dtype=np.int64)
    val_query = {"both": pick("sketch", every, [2]), "none": empty, "gallery": empty}[val]
    val_gallery = empty if val == "none" else pick("photo", every, [2])
    traditional = Split(
        "traditional",
        "traditional",
        tuple(every),
        (),
        pick("", every, [0, 1]),
        val_query,
        val_gallery,
        pick("sketch", every, [3]),
        pick("photo", every, [3]),
    )
    zeroshot = Split(
        "zeroshot",
        "zeroshot",
        tuple(seen),
        (3,),
        pick("", seen, [0, 1, 2]),
        pick("sketch", seen, [3]),
        pick("photo", seen, [3]),
        pick("sketch", [3], range(4)),
        pick("photo", [3], range(4)),
    )
    gzs = Split(
        "gzs",
        "gzs",
        *astuple_of(zeroshot)[2:-1],
        np.sort(np.concatenate([pick("photo", [3], range(4)), pick("photo", seen, [3])])),
    )
    catalog = Catalog(
        name,
        records.drop(columns="photo_number"),
        [f"class{c}" for c in every],
        {"traditional": traditional, "zeroshot": zeroshot, "gzs": gzs},
        class_semantics=np.eye(NUM_CLASSES, dtype=np.float32),
        fingerprint=f"{name}-{val}-v1",
    )
    catalog.validate()
    return catalog


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    return build_fake_catalog(tmp_path / "data")


def test_features_are_cached_once_and_reused(catalog, tmp_path, forward_calls):
    first = extract_features(catalog, SPEC, tmp_path / "cache", batch_size=16, progress=False)
    assert first.shape == (len(catalog.records), 512) and first.dtype == np.float32
    assert isinstance(first, np.memmap) and np.isfinite(first).all()
    assert sum(forward_calls) == len(catalog.records)
    forward_calls.clear()
    again = extract_features(catalog, SPEC, tmp_path / "cache", batch_size=16, progress=False)
    assert forward_calls == [], "a valid cache is loaded, not recomputed"
    np.testing.assert_array_equal(first, again)
    meta = json.loads((Path(again.filename).parent / "meta.json").read_text())
    assert meta["shape"] == [len(catalog.records), 512] and meta["key"][
        "weights"
    ] == "random-init-seed0-timm" + (timm.__version__)


def test_features_do_not_depend_on_the_extraction_batch_size(catalog, tmp_path, forward_calls):
    """Why the batch size is not part of the cache key (and can be tuned per machine freely)."""
    small = extract_features(catalog, SPEC, tmp_path / "small", batch_size=3, progress=False)
    assert max(forward_calls) == 3
    large = extract_features(catalog, SPEC, tmp_path / "large", batch_size=64, progress=False)
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-6)


def test_features_match_the_backbone_on_rgb_images(catalog, tmp_path):
    cached = extract_features(catalog, SPEC, tmp_path / "cache", progress=False)
    sketch = int(np.flatnonzero(catalog.records["domain"] == "sketch")[0])
    image = Image.open(catalog.records["path"][sketch]).convert("RGB")
    tensor = feature_cache.image_transform(SIZE, train=False)(image)[None]
    with torch.inference_mode():
        expected = create_backbone(SPEC)(tensor)[0].numpy()
    np.testing.assert_allclose(cached[sketch], expected, rtol=1e-4, atol=1e-5)


def _truncate(data: Path) -> None:
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def _flip_a_byte(data: Path) -> None:
    raw = bytearray(data.read_bytes())
    raw[-7] ^= 0xFF
    data.write_bytes(bytes(raw))


def _edit_meta(data: Path) -> None:
    meta_file = data.parent / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["key"]["backbone"] = "something-else"
    meta_file.write_text(json.dumps(meta))


def _drop_meta(data: Path) -> None:
    (data.parent / "meta.json").unlink()


def _garble_meta(data: Path) -> None:
    (data.parent / "meta.json").write_text("{not json")


def _wrong_shape_with_matching_checksum(data: Path) -> None:
    atomic_save_npy(data, np.zeros((3, 512), dtype=np.float32))
    meta_file = data.parent / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["sha256"] = feature_cache.sha256_file(data)
    meta_file.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, "checksum"),
        (_flip_a_byte, "checksum"),
        (_edit_meta, "does not match"),
        (_drop_meta, "meta.json is missing"),
        (_garble_meta, "unreadable"),
        (_wrong_shape_with_matching_checksum, r"expected float32"),
    ],
)
def test_a_damaged_feature_cache_is_reported_and_rebuilt(catalog, tmp_path, forward_calls, damage, reason):
    original = np.array(extract_features(catalog, SPEC, tmp_path / "cache", progress=False))
    entry = feature_cache_dir(catalog, SPEC, tmp_path / "cache", weights_identity(SPEC))
    damage(entry / "features.npy")
    forward_calls.clear()
    with pytest.warns(StaleCacheWarning, match=f"{entry.name}.*{reason}"):
        rebuilt = extract_features(catalog, SPEC, tmp_path / "cache", progress=False)
    assert sum(forward_calls) == len(catalog.records), "the damaged entry was recomputed"
    np.testing.assert_allclose(rebuilt, original, rtol=1e-5, atol=1e-6)
    forward_calls.clear()
    extract_features(catalog, SPEC, tmp_path / "cache", progress=False)
    assert forward_calls == [], "the rebuilt entry is valid"


def test_cache_key_follows_backbone_size_weights_and_catalog(catalog, tmp_path):
    torch.save(create_backbone(BackboneSpec(seed=3)).state_dict(), tmp_path / "w.pt")
    specs = {
        "base": SPEC,
        "other backbone": BackboneSpec(name="resnet14t", image_size=SIZE),
        "other size": BackboneSpec(image_size=48),
        "other seed": BackboneSpec(image_size=SIZE, seed=1),
        "weights file": BackboneSpec(image_size=SIZE, weights_path=str(tmp_path / "w.pt")),
    }
    folders = {k: feature_cache_dir(catalog, s, tmp_path, weights_identity(s)) for k, s in specs.items()}
    assert len(set(folders.values())) == len(specs)
    catalog.fingerprint = "changed-records"
    assert feature_cache_dir(catalog, SPEC, tmp_path, weights_identity(SPEC)) != folders["base"]
    assert weights_identity(specs["weights file"]) == f"sha256:{backbones.sha256_file(tmp_path / 'w.pt')}"


def test_cpu_accelerator_extracts_on_the_cpu_and_devices_are_cached_apart(catalog, tmp_path, monkeypatch):
    """trainer=cpu never touches a GPU, even where CUDA is available; CPU and GPU caches never mix."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert backbones.compute_device("auto").type == "cuda" and backbones.compute_device("gpu").type == "cuda"
    features = extract_features(catalog, SPEC, tmp_path, batch_size=16, progress=False, accelerator="cpu")
    cpu_entry = feature_cache_dir(catalog, SPEC, tmp_path, weights_identity(SPEC), "cpu")
    assert Path(features.filename).parent == cpu_entry
    assert json.loads((cpu_entry / "meta.json").read_text())["key"]["device"] == "cpu"
    assert feature_cache_dir(catalog, SPEC, tmp_path, weights_identity(SPEC), "auto") != cpu_entry
    with pytest.raises(ValueError, match="unknown accelerator 'tpu'"):
        backbones.compute_device("tpu")


def test_a_run_hashes_each_cached_file_once(catalog, tmp_path, monkeypatch, hashes):
    """A run calls the feature cache four times (prepare_data from the runner, fit and test; setup once):
    each cached file is read in full once, not on every call (it was 4 times features.npy, 8 weights.pt)."""
    hashed = hashes
    monkeypatch.setattr(files, "SETTLED_SECONDS", 0.0)  # files written in this test count as settled
    spec = BackboneSpec(image_size=SIZE, pretrain_epochs=1, pretrain_batch_size=4)
    for _ in range(4):
        extract_features(catalog, spec, tmp_path, batch_size=16, progress=False)
    assert sorted(hashed) == ["features.npy", "records-000000000-000000048.npy", "weights.pt"]
    monkeypatch.setattr(files, "_digests", {})  # a new process: the cache is verified again
    hashed.clear()
    for _ in range(4):
        extract_features(catalog, spec, tmp_path, batch_size=16, progress=False)
    assert sorted(hashed) == ["features.npy", "weights.pt"]


def test_a_group_shared_cache_is_group_writable(catalog, tmp_path):
    """Under umask 002 every file and folder of a feature cache entry (pre-trained weights included) is
    group-readable and -writable, so a lab's colleagues can use and rebuild it (mkstemp made them 0600)."""
    old = os.umask(0o002)
    try:
        spec = BackboneSpec(image_size=SIZE, pretrain_epochs=1, pretrain_batch_size=4)
        extract_features(catalog, spec, tmp_path / "cache", batch_size=16, progress=False)
    finally:
        os.umask(old)
    created = list((tmp_path / "cache").rglob("*"))
    assert {"weights.pt", "features.npy", "meta.json", ".lock"} <= {p.name for p in created}
    modes = {str(p): stat.S_IMODE(p.stat().st_mode) for p in created}
    assert modes == {str(p): 0o775 if p.is_dir() else 0o664 for p in created}


def test_weights_path_loads_strictly_and_a_misfit_file_is_named(tmp_path):
    trained = create_backbone(BackboneSpec(seed=7))
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "checkpoint.pth")  # timm checkpoint layout
    loaded = create_backbone(BackboneSpec(seed=0, weights_path=str(tmp_path / "checkpoint.pth")))
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)
    assert not loaded.training
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), tmp_path / "resnet18.pt")
    with pytest.raises(ValueError, match="resnet18.pt.*does not fit backbone 'resnet10t'"):
        create_backbone(BackboneSpec(weights_path=str(tmp_path / "resnet18.pt")))
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        create_backbone(BackboneSpec(weights_path=str(tmp_path / "nowhere.pt")))


def test_pretrained_uses_only_locally_cached_timm_weights(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from safetensors.torch import save_file

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError, match="weights_path"):
        create_backbone(BackboneSpec(pretrained=True))
    # a Hugging Face cache entry as `timm.create_model(name, pretrained=True)` leaves it
    repo = tmp_path / "hf" / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    imagenet = timm.create_model("resnet10t", num_classes=1000)  # with its classifier, as published
    save_file(imagenet.state_dict(), str(repo / "snapshots" / "abc123" / "model.safetensors"))
    loaded = create_backbone(BackboneSpec(pretrained=True))
    torch.testing.assert_close(loaded.conv1[0].weight, imagenet.conv1[0].weight)
    with pytest.raises(ValueError, match="not both"):
        create_backbone(BackboneSpec(pretrained=True, weights_path=str(tmp_path / "x.pt")))


def test_feature_dim_is_the_pre_logits_width():
    model = create_backbone(BackboneSpec(name="mobilenetv3_small_100"))
    assert model.num_features == 576 and feature_dim(model) == 1024
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 1024)


@pytest.mark.slow
def test_vgg16_gives_post_relu_fc7():
    model = create_backbone(BackboneSpec(name="vgg16"))
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 64))
    assert feature_dim(model) == 4096 and out.shape == (2, 4096) and (out >= 0).all()


def test_nan_features_fail_naming_the_backbone(catalog, tmp_path, monkeypatch):
    class Broken(torch.nn.Module):
        head_hidden_size = 8

        def forward(self, x):
            return torch.full((len(x), 8), float("nan"))

    monkeypatch.setattr(backbones, "create_backbone", lambda spec: Broken())
    with pytest.raises(FloatingPointError, match="backbone 'resnet10t' produced NaN/inf"):
        extract_features(catalog, SPEC, tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").rglob("features.npy")), "nothing is published"


def test_pretraining_sees_only_photos_in_every_splits_training_part(catalog, tmp_path, monkeypatch):
    records = catalog.records
    expected = np.flatnonzero(
        (records["domain"] == "photo")
        & (records["label"] < 3)
        & records["instance"].str.endswith(("p0", "p1"))
    )
    np.testing.assert_array_equal(pretraining_indices(catalog), expected)

    loaded: list[str] = []
    original = backbones.load_image
    monkeypatch.setattr(
        backbones, "load_image", lambda path, mode="RGB": loaded.append(str(path)) or original(path, mode)
    )
    spec = BackboneSpec(image_size=SIZE, pretrain_epochs=2, pretrain_batch_size=3)
    weights = pretrain_backbone(catalog, spec, tmp_path / "cache", progress=False)
    assert weights is not None and weights.is_file()
    assert set(loaded) == set(records["path"].iloc[expected]) and len(loaded) == 2 * len(expected)

    loaded.clear()
    assert pretrain_backbone(catalog, spec, tmp_path / "cache", progress=False) == weights
    assert loaded == [], "cached weights are reused"
    assert pretrain_backbone(catalog, BackboneSpec(image_size=SIZE), tmp_path / "cache") is None

    trained = extract_features(catalog, spec, tmp_path / "cache", progress=False)
    untrained = extract_features(catalog, BackboneSpec(image_size=SIZE), tmp_path / "cache", progress=False)
    assert not np.allclose(trained, untrained), "features come from the pre-trained weights"


def test_pretraining_is_seeded(catalog, tmp_path):
    spec = BackboneSpec(image_size=SIZE, pretrain_epochs=1, pretrain_batch_size=4)
    first = torch.load(pretrain_backbone(catalog, spec, tmp_path / "a", progress=False))
    second = torch.load(pretrain_backbone(catalog, spec, tmp_path / "b", progress=False))
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor)


def test_catalog_without_fingerprint_is_refused(catalog, tmp_path):
    catalog.fingerprint = ""
    with pytest.raises(DatasetError, match="fingerprint"):
        extract_features(catalog, SPEC, tmp_path, progress=False)


def test_unknown_backbone_settings_are_listed():
    with pytest.raises(ValueError, match=r"unknown backbone settings \['depth'\]"):
        BackboneSpec.from_dict({"name": "resnet10t", "depth": 3})


def test_filling_the_caches_leaves_the_global_rng_alone(catalog, tmp_path):
    """A seeded run that builds the caches must train exactly like a rerun that finds them."""
    spec = BackboneSpec(name="resnet10t", image_size=SIZE, pretrain_epochs=1, pretrain_batch_size=4)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    extract_features(catalog, spec, tmp_path / "cache", batch_size=16, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_edge_maps_carry_no_ink_frame():
    """The stand-in pre-training's edge maps ink the image border about as often as the interior (PIL's
    unfiltered outer pixels once made a frame: 92% of border pixels inked against 13% inside)."""
    rng = np.random.default_rng(0)
    border = np.zeros((64, 64), dtype=bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    border_ink, interior_ink = [], []
    for shape_class in design_classes(8, 2):
        photo, _ = render_photo(build_parts(sample_instance(shape_class, rng)), Pose.sample(rng), 64, rng)
        ink = np.asarray(RandomEdgeMap(1.0)(Image.fromarray(photo)).convert("L")) < 128
        border_ink.append(ink[border].mean())
        interior_ink.append(ink[~border].mean())
    assert np.mean(border_ink) <= 1.5 * np.mean(interior_ink), (np.mean(border_ink), np.mean(interior_ink))
