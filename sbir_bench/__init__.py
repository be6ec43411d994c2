"""sbir_bench: one benchmark path for sketch-based image and 3D shape retrieval.

data (readers, synthetic) -> DataModule -> method (LightningModule) -> embeddings
-> evaluation engine -> run record (JSON) -> leaderboard (CSV / Markdown).
"""

__version__ = "0.1.0"
