"""The embedded default dataset: procedural shape classes as cluttered photos and free-hand sketches.

Importing this package registers the ``synthetic`` dataset (:func:`build_synthetic`).
"""

from __future__ import annotations

from sbir_bench.data.synthetic.dataset import (
    GENERATOR_VERSION,
    SyntheticConfig,
    build_synthetic,
    synthetic_root,
)
from sbir_bench.data.synthetic.shapes import ATTRIBUTE_NAMES, ShapeClass, design_classes

__all__ = [
    "ATTRIBUTE_NAMES",
    "GENERATOR_VERSION",
    "ShapeClass",
    "SyntheticConfig",
    "build_synthetic",
    "design_classes",
    "synthetic_root",
]
