"""Readers of the official on-disk layouts: each module registers its datasets (``DATASETS``) and their
checkers (``DATASET_CHECKERS``) when imported. Shared helpers live in :mod:`.common`."""

from __future__ import annotations

import importlib

READER_MODULES: tuple[str, ...] = ("qmul", "sketchy", "tuberlin", "shrec")  # one module per reader

for _module in READER_MODULES:
    importlib.import_module(f"{__name__}.{_module}")
