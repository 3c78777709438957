"""The last INT8 level: the layers to keep in FP32 chosen by NNCF's accuracy control.

When the fixed levels of ``edgead.export.quantize.fp32_levels`` fail the gate on every backend,
NNCF's ``quantize_with_accuracy_control`` ranks the quantized layers by what each costs and
reverts them to FP32, the costliest first, until the INT8 graph stays within ``max_drop`` of
the FP32 graph's metric. The search and the reverting are NNCF's; what is edgead's is the
metric, measured on **held-out good images** (the images the threshold was calibrated on, never
a test image, so the gate that follows is still an independent check):

    fidelity = 1 - max(mean relative error of the image scores,
                       mean relative error of the anomaly maps)

with the bundle's own scorer on both graphs' outputs, run by onnxruntime. The FP32 graph
scores 1 by definition; ``max_drop`` 0.03 asks for image scores and maps within 3% of FP32 on
average. For scale, measured on tire (AVX-512 VNNI EPYC): PatchCore's graph with the tail in
FP32 has fidelity 0.961 and passes the gate; PaDiM's has 0.933 and misses AUPRO by 0.02
points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgead.bundle import roles
from edgead.bundle.io import Bundle
from edgead.data.datasets import open_dataset
from edgead.data.images import file_digest, read_image
from edgead.runtime.preprocess import preprocess

# the fidelity the INT8 graph may lose against FP32, one level per drop. Measured on tire
# (AVX-512 VNNI EPYC): at 0.03 PaDiM's graph passed the gate with 5 of 38 layers reverted and
# became the default (OpenVINO INT8 0.70-0.78x of onnxruntime FP32); at 0.01 PaDiM needed 26 of 38
# and SPADE 52 of 57 reverted, both passed but were no faster than FP32, and SPADE's search
# took 28 minutes. So one level, at 0.03
FIDELITY_DROPS = (0.03,)
# layers reverted at most: NNCF re-ranks every remaining layer after a revert that made things
# worse (about a minute each for SPADE), and a graph with more layers in FP32 has no speed left
MAX_REVERTED = 8
RANKING_IMAGES = 16  # held-out images each layer is ranked on
VALIDATION_IMAGES = 32  # held-out good images the fidelity is measured on, at most
LEVEL = "the layers NNCF's accuracy control reverted"
# the layers whose weights INT8 pays off on; a node from which none of them can be reached is
# the features' post-processing (pooling, resizing, concatenation, map arithmetic)
WEIGHTED = {"Conv", "ConvTranspose", "MatMul", "Gemm"}


def held_out_good(bundle: Bundle, data: Path, n: int = VALIDATION_IMAGES) -> list[Path]:
    """Good images the model was not fitted on: validation/good, then train/good images that
    are not in the bundle's list of fitted images. Empty when there are none."""
    dataset = open_dataset(data)
    paths = list(dataset.validation_paths())
    if bundle.has(roles.FIT_IMAGES):
        fitted = set(bundle.path(roles.FIT_IMAGES).read_text().split())
        paths += [p for p in dataset.train_paths() if file_digest(p) not in fitted]
    return paths[:n]


class Fidelity:
    """NNCF's ``validation_fn``: the fidelity of a graph's scores and maps to the FP32 graph's
    on the held-out images, and each image's own (NNCF ranks the layers by them)."""

    def __init__(self, bundle: Bundle, reference, batches: list[np.ndarray], threads: int):
        from edgead.runtime.scorers.base import load_scorer

        self.input = bundle.manifest.graph.input_name
        self.scorer = load_scorer(bundle, "faiss")
        self.threads = threads
        self._session: tuple[Any, Any] | None = None  # (model, session): NNCF asks per image
        self.reference = [self._score(reference, x) for x in batches]

    def _score(self, model, batch: np.ndarray) -> tuple[float, np.ndarray]:
        import onnxruntime as ort

        if self._session is None or self._session[0] is not model:
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            session = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
            self._session = (model, session)
        session = self._session[1]
        names = [o.name for o in session.get_outputs()]
        out = self.scorer.run(dict(zip(names, session.run(None, {self.input: batch}), strict=True)))
        return float(out.image_scores[0]), out.patch_scores[0]

    def __call__(self, model, items) -> tuple[float, list[float]]:
        per_image = []
        for i, batch in items:
            score, patches = self._score(model, batch)
            ref_score, ref_patches = self.reference[i]
            score_err = abs(score - ref_score) / max(abs(ref_score), 1e-12)
            map_err = np.linalg.norm(patches - ref_patches) / max(
                float(np.linalg.norm(ref_patches)), 1e-12
            )
            per_image.append(1.0 - max(score_err, float(map_err)))
        return float(np.mean(per_image)), per_image


def quantize_controlled(
    bundle: Bundle,
    model,
    calibration: list[np.ndarray],
    held_out: list[Path],
    tail: list[str],
    threads: int,
    max_drop: float,
):
    """An NNCF INT8 graph of the folded FP32 ``model`` with the layers that cost most fidelity
    reverted to FP32 (``tail`` always kept); returns (graph, its fidelity, the weighted layers
    left in FP32)."""
    import copy

    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    spec = bundle.manifest.input
    batches = [preprocess(read_image(p), spec)[None] for p in held_out]
    fidelity = Fidelity(bundle, model, batches, threads)
    name = bundle.manifest.graph.input_name
    quantized = nncf.quantize_with_accuracy_control(
        copy.deepcopy(model),
        nncf.Dataset(calibration, lambda x: {name: x}),
        nncf.Dataset(list(enumerate(batches)), lambda item: {name: item[1]}),
        fidelity,
        max_drop=max_drop,
        subset_size=len(calibration),
        fast_bias_correction=False,  # as quantize_graph: the fast one lost 31 pixel ROCAUC points
        ignored_scope=nncf.IgnoredScope(names=tail, validate=False) if tail else None,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=MAX_REVERTED,
            ranking_subset_size=min(RANKING_IMAGES, len(batches)),
        ),
    )
    score, _ = fidelity(quantized, enumerate(batches))
    return quantized, score, fp32_weighted(quantized)


def fp32_weighted(model) -> list[str]:
    """Convolutions and matrix products of a QDQ graph whose weights are not quantized."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [
        n.name
        for n in model.graph.node
        if n.op_type in WEIGHTED and len(n.input) > 1 and n.input[1] not in dequantized
    ]
