"""The embedded default dataset: procedural shape classes as cluttered photos and free-hand sketches.

Importing this package registers the ``synthetic`` dataset (:func:`build_synthetic`) and its
fine-grained companion ``synthetic_fg`` (:func:`build_synthetic_fg`: instance-level shoes and chairs) and
the sketch → 3D default ``synthetic_3d`` (:func:`build_synthetic_3d`: procedural meshes in the SHREC'13
layout).
"""

from __future__ import annotations

from sbir_bench.data.synthetic.dataset import (
    GENERATOR_VERSION,
    SyntheticConfig,
    build_synthetic,
    synthetic_root,
)
from sbir_bench.data.synthetic.fg_dataset import FineGrainedConfig, build_synthetic_fg, synthetic_fg_root
from sbir_bench.data.synthetic.shape_dataset import ShapeConfig, build_synthetic_3d, synthetic_3d_root
from sbir_bench.data.synthetic.shapes import ATTRIBUTE_NAMES, ShapeClass, design_classes

__all__ = [
    "ATTRIBUTE_NAMES",
    "GENERATOR_VERSION",
    "FineGrainedConfig",
    "ShapeClass",
    "ShapeConfig",
    "SyntheticConfig",
    "build_synthetic_3d",
    "build_synthetic",
    "build_synthetic_fg",
    "design_classes",
    "synthetic_3d_root",
    "synthetic_fg_root",
    "synthetic_root",
]
