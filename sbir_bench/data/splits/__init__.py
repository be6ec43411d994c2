"""The split definitions shipped with the package: class lists, unseen-class lists, expected counts.

Files (package data, one folder per dataset)::

    <dataset>/classes.txt                every class folder name of the archive, sorted (label i = line i)
    <dataset>/<split>_unseen.txt         the unseen (test) classes of a zero-shot split
    <dataset>/expected_counts.json       the counts the literature gives, compared by the checkers
    CHECKSUMS.sha256                     ``sha256sum`` of every file above

Text files hold one name per line; lines starting with ``#`` are provenance comments. Every read
verifies the file against ``CHECKSUMS.sha256``, so an accidental edit fails loudly instead of silently
changing a protocol. After a deliberate edit, bump :data:`SPLITS_VERSION` (it is part of every reader's
fingerprint) and regenerate the checksums::

    cd sbir_bench/data/splits && sha256sum */*.txt */*.json > CHECKSUMS.sha256

The header comments of each list say which public list it equals (names and order), e.g. the Yelamarthi
list equals SEM-PCYC's ``test_classes_eccv_2018.txt``; :func:`provenance` returns them.

Hold-outs the literature does not ship as file lists (validation items, the traditional split's
queries, the seen-class gallery of a generalised zero-shot split) are drawn with :func:`stable_order`, a
rule that depends only on file names: never on the machine, the file system's listing order or a random
generator's version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from sbir_bench.data.records import DatasetError

SPLITS_DIR = Path(__file__).parent
CHECKSUMS_FILE = "CHECKSUMS.sha256"
SPLITS_VERSION = 2  # bump whenever a shipped list or a hold-out rule changes


def shipped_checksums() -> dict[str, str]:
    """``relative path -> sha256`` as listed in ``CHECKSUMS.sha256``."""
    listing = SPLITS_DIR / CHECKSUMS_FILE
    checksums = {}
    for line in listing.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            checksums[name.lstrip("*")] = digest
    return checksums


def _verified_text(relative: str) -> str:
    path = SPLITS_DIR / relative
    expected = shipped_checksums().get(relative)
    if expected is None:
        raise DatasetError(f"{path} is not listed in {SPLITS_DIR / CHECKSUMS_FILE}: not a shipped split file")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DatasetError(
            f"{path} was modified: its sha256 is {actual}, {CHECKSUMS_FILE} expects {expected}. Restore it, "
            "or after a deliberate change bump SPLITS_VERSION and regenerate the checksums"
        )
    return data.decode("utf-8")


def read_names(dataset: str, name: str) -> list[str]:
    """The names listed in ``<dataset>/<name>.txt`` (comments and blank lines dropped), verified."""
    text = _verified_text(f"{dataset}/{name}.txt")
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetError(f"{SPLITS_DIR / dataset / name}.txt lists {repeated} more than once")
    return names


def provenance(dataset: str, name: str) -> list[str]:
    """The header comment lines of ``<dataset>/<name>.txt`` (``#`` and one space removed), verified: where
    the list comes from and which public list it equals."""
    text = _verified_text(f"{dataset}/{name}.txt")
    return [line[1:].strip() for line in text.splitlines() if line.startswith("#")]


def class_list(dataset: str) -> list[str]:
    """Every class folder name of ``dataset``, in label order."""
    return read_names(dataset, "classes")


def unseen_classes(dataset: str, split: str) -> list[str]:
    """The unseen classes of zero-shot ``split``; each must be a class of :func:`class_list`."""
    names = read_names(dataset, f"{split}_unseen")
    unknown = sorted(set(names) - set(class_list(dataset)))
    if unknown:
        raise DatasetError(f"{SPLITS_DIR / dataset / split}_unseen.txt names unknown classes {unknown}")
    return names


def expected_counts(dataset: str) -> dict[str, Any]:
    """``{"dataset": {count name: n}, "splits": {split: {count name: n}}}`` from the literature."""
    return json.loads(_verified_text(f"{dataset}/expected_counts.json"))


def expected_source(dataset: str, split: str) -> str:
    """Where the expected counts of ``split`` come from (its ``_source`` in ``expected_counts.json``)."""
    return str(expected_counts(dataset)["splits"].get(split, {}).get("_source", ""))


def stable_order(names: Iterable[str], salt: str) -> list[str]:
    """``names`` sorted by the SHA-256 of ``"<salt>/<name>"``: a fixed pseudo-random order that depends
    only on the names, so the first ``k`` form a hold-out that every machine draws identically."""
    return sorted(names, key=lambda name: (hashlib.sha256(f"{salt}/{name}".encode()).hexdigest(), name))


def statistics_table(observed: Mapping[str, int], expected: Mapping[str, int]) -> pd.DataFrame:
    """One row per statistic: ``count`` seen in the tree, ``expected`` from the literature (``<NA>`` where
    it gives none) and ``difference``; print it with ``print(table.to_string())``."""
    table = pd.DataFrame(
        {
            "statistic": list(observed),
            "count": [int(v) for v in observed.values()],
            "expected": pd.array([expected.get(k) for k in observed], dtype="Int64"),
        }
    )
    table["difference"] = table["count"] - table["expected"]
    return table.set_index("statistic")


def seen_gallery_draw(
    pools: Mapping[str, Mapping[str, int]], unseen_gallery: int, fraction: float, salt: str
) -> list[int]:
    """The seen-class gallery items of a generalised zero-shot (GZS-SBIR) split, sorted.

    ``pools`` maps each seen class to its images that the split does not train on (file name -> record).
    ``int(fraction * unseen_gallery)`` of them are drawn, as evenly over the classes as their pools allow:
    each pool in :func:`stable_order` (salted ``"<salt>/<class>"``), then the first of every class, the
    second of every class, ... (classes in the stable order salted ``salt``). The proportion is SEM-PCYC's
    (Dutta & Akata, CVPR 2019, released ``train.py``: ``perc = 0.2`` times the test gallery's size of
    seen-class images, drawn at random from the training images); here drawn by file name, spread over
    every seen class, and never from images the split trains on.
    """
    count = int(fraction * unseen_gallery)
    available = sum(len(pool) for pool in pools.values())
    if count < 1 or count > available:
        raise DatasetError(
            f"a generalised zero-shot gallery takes int({fraction} x {unseen_gallery} unseen-class images) = "
            f"{count} seen-class images, and {available} seen-class images are held out of training to draw "
            "them from: it needs at least 1 and at most that many (change gzs_seen_gallery_fraction)"
        )
    class_rank = {name: rank for rank, name in enumerate(stable_order(pools, salt))}
    ranked = sorted(
        (rank, class_rank[name], pool[item])
        for name, pool in pools.items()
        for rank, item in enumerate(stable_order(pool, f"{salt}/{name}"))
    )
    return sorted(record for _, _, record in ranked[:count])
