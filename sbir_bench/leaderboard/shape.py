"""The sketch -> 3D leaderboard: sketch-based 3D shape retrieval (SHREC'13, SHREC'14, PART-SHREC14,
synthetic_3d) in its own table.

A record belongs to it when its run was scored with the track's metrics (``evaluation.metrics`` holds
``nn``: the ``shape`` evaluation group, configs/evaluation/shape.yaml). Tabled by
:mod:`~sbir_bench.leaderboard.track_table` as ``shape.csv`` / ``shape.md`` beside ``leaderboard.csv``:
NN, FT, ST, E, DCG and mAP (SHREC conventions) as mean ± standard error over seeds with n; p@200 /
map@200 (as the image tracks report them), open-search's ``e_mean_pr`` / ``dcg_log2i1`` and the voxel IoU
of reconstructions (``sketch2voxel``) as means; the
chance and ceiling rows of each dataset; and the published SHREC numbers in ``reported_*`` columns
(``paper_results_shape.csv``: as reproduced in later papers, not checked against the authors' result
files; each row names its source). The rows also stay in the category-level table, whose P@200 / mAP@200
columns they share.
"""

from __future__ import annotations

from sbir_bench.leaderboard.record import RunRecord
from sbir_bench.leaderboard.track_table import TrackTable

_HEADER = """# sbir_bench sketch → 3D leaderboard

Generated from the run records in `leaderboard/results/` by `sbir-bench leaderboard`; do not edit by hand.
A query sketch retrieves 3D models (each seen through its rendered views); relevant = same class.

- Cells: mean ± standard error of the mean over seeds (number of seeds); `–`: no result.
- SHREC conventions (Li et al., SHREC'13/'14; C = the number of models of the query's class): **NN**
  the first result is relevant; **FT** / **ST** the share of the class within the top C / 2C; **E** the
  F1 of precision and recall at rank 32 per query, then averaged; **DCG** normalised, weights 1, 1,
  1/log2 3, ...; **mAP** non-interpolated AP over the whole ranking. **P@200** / **mAP@200** as in the
  image tracks. **E (mean P,R)** / **DCG log2(i+1)**: open-search's variants (Thong et al., CVIU'20), shown
  apart, never mixed with E and DCG.
- **IoU** columns (sketch → 3D reconstruction, `sketch2voxel`): voxel IoU at 32³, for each query the best
  IoU with a gallery model of its class, averaged over queries. **reconstruction**: the decoded grid;
  **nearest model**: the top retrieved model itself (the nearest-neighbour-shape baseline, same ranking);
  **backbone nearest model**: the top model under the untrained backbone features (`baseline`'s ranking).
- **(chance)** / **(ceiling)**: a uniformly random ranking / the best the gallery allows.
- **reported** columns: published SHREC numbers as reproduced in later papers (each row's source is in
  `sbir_bench/leaderboard/paper_results_shape.csv`), unchecked against the authors' result files; quoted
  beside, never mixed with, the suite's numbers.
"""


# sketch2voxel's reconstruction scores (sbir_bench/evaluation/reconstruction.py), empty for other methods
VOXEL_IOU = ("voxel_iou", "voxel_iou_nn", "voxel_iou_backbone_nn")


def _scored_as_shape_retrieval(record: RunRecord) -> bool:
    return "nn" in ((record.config.get("evaluation") or {}).get("metrics") or ())


SHAPE_TABLE = TrackTable(
    name="sketch -> 3D",
    csv_name="shape.csv",
    markdown_name="shape.md",
    settings=("traditional", "zeroshot"),
    belongs=_scored_as_shape_retrieval,
    headline=("nn", "ft", "st", "e", "dcg", "map@all"),
    others=("p@200", "map@200", "e_mean_pr", "dcg_log2i1", *VOXEL_IOU),
    paper_kinds=("reported",),
    paper_file="paper_results_shape.csv",
    titles={
        "nn": "NN",
        "ft": "FT",
        "st": "ST",
        "e": "E",
        "dcg": "DCG",
        "map@all": "mAP",
        "p@200": "P@200",
        "map@200": "mAP@200",
        "e_mean_pr": "E (mean P,R)",
        "dcg_log2i1": "DCG log2(i+1)",
        "voxel_iou": "IoU (reconstruction)",
        "voxel_iou_nn": "IoU (nearest model)",
        "voxel_iou_backbone_nn": "IoU (backbone nearest model)",
    },
    header=_HEADER,
    sort_by="map@all",
)
