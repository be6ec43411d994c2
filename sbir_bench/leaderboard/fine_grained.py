"""The fine-grained leaderboard: instance-level retrieval (QMUL Shoe / Chair, synthetic_fg) in its own table.

Fine-grained records (setting ``fine_grained``) are tabled by :mod:`~sbir_bench.leaderboard.track_table`
as ``fine_grained.csv`` / ``fine_grained.md`` beside ``leaderboard.csv``: acc@1,
acc@10 and triplet_acc as mean ± standard error over seeds with n, acc@5 and map@200 (the mean reciprocal
rank within 200) as means, the chance and ceiling rows of each dataset, and the papers' numbers in their
own columns (``paper_results_fine_grained.csv``): ``paper_*`` from Song et al. (BMVC'16, DMAR) Tables 1/2,
``updated_*`` from Yu et al.'s released triplet model (the authors' README, cleaned sketches). Papers
print percentages; the table holds fractions, as the suite's metrics are.
"""

from __future__ import annotations

from sbir_bench.leaderboard.select import FINE_GRAINED
from sbir_bench.leaderboard.track_table import TrackTable

_HEADER = """# sbir_bench fine-grained leaderboard

Generated from the run records in `leaderboard/results/` by `sbir-bench leaderboard`; do not edit by hand.
Instance-level retrieval: a query sketch's one relevant item is the photo of the same instance.

- Cells: mean ± standard error of the mean over seeds (number of seeds); `–`: no result.
- **acc@K**: fraction of query sketches whose own photo is ranked within the top K (ties: ascending gallery
  index). **%corr.** (`triplet_acc`): fraction of the dataset's annotated test triplets (sketch, p+, p−)
  with d(sketch, p+) < d(sketch, p−); a tie counts as wrong. **MRR@200** (`map@200`): with one relevant
  item, mAP@200 is the mean of 1/rank within the top 200.
- **(chance)** / **(ceiling)**: a uniformly random ranking / the best the gallery allows.
- **paper** columns: Song et al. (BMVC'16, DMAR), Tables 1/2 (their triplet row is Yu et al.'s CVPR'16
  model); **updated** columns: the numbers of Yu et al.'s released model with cleaned sketches (the
  authors' README). Papers print percentages; these are fractions. They are quoted beside, never mixed
  with, the suite's numbers.
"""

FINE_GRAINED_TABLE = TrackTable(
    name="fine-grained",
    csv_name="fine_grained.csv",
    markdown_name="fine_grained.md",
    settings=(FINE_GRAINED,),
    belongs=lambda record: record.setting == FINE_GRAINED,
    headline=("acc@1", "acc@10", "triplet_acc"),
    others=("acc@5", "map@200"),
    paper_kinds=("paper", "updated"),  # Song et al. BMVC'16 Tables 1/2; Yu et al.'s README (updated model)
    paper_file="paper_results_fine_grained.csv",
    titles={
        "acc@1": "acc@1",
        "acc@10": "acc@10",
        "triplet_acc": "%corr.",
        "acc@5": "acc@5",
        "map@200": "MRR@200",
    },
    header=_HEADER,
    sort_by="acc@1",
)
