"""PatchCore's export choices (no torch: the options and the export share them)."""

INDEXES = ("auto", "flat", "gemm", "hnsw", "ivfpq")
