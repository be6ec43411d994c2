"""The embedded default dataset: procedural shape classes as cluttered photos and free-hand sketches.

Importing this package registers the ``synthetic`` dataset (:func:`build_synthetic`) and its
fine-grained companion ``synthetic_fg`` (:func:`build_synthetic_fg`: instance-level shoes and chairs).
"""

from __future__ import annotations

from sbir_bench.data.synthetic.dataset import (
    GENERATOR_VERSION,
    SyntheticConfig,
    build_synthetic,
    synthetic_root,
)
from sbir_bench.data.synthetic.fg_dataset import FineGrainedConfig, build_synthetic_fg, synthetic_fg_root
from sbir_bench.data.synthetic.shapes import ATTRIBUTE_NAMES, ShapeClass, design_classes

__all__ = [
    "ATTRIBUTE_NAMES",
    "GENERATOR_VERSION",
    "FineGrainedConfig",
    "ShapeClass",
    "SyntheticConfig",
    "build_synthetic",
    "build_synthetic_fg",
    "design_classes",
    "synthetic_fg_root",
    "synthetic_root",
]
