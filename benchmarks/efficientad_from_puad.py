"""EfficientAD's own numbers from a fitted PUAD model (PUAD = EfficientAD + a Gaussian on the
pooled student feature, so one training run gives both).

Re-evaluates the saved PUAD model with the Gaussian switched off, saves that as an EfficientAD
model, and prints both rows of metrics:

    python benchmarks/efficientad_from_puad.py PUAD_MODEL DATA --out EFFICIENTAD_MODEL
"""

from __future__ import annotations

import argparse
import copy
import json

from edgead.components import saved as saved_models
from edgead.components.evaluate import evaluate
from edgead.data.datasets import open_dataset
from edgead.detectors.registry import get_detector
from edgead.workflows import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", help="a model saved by `edgead fit puad`")
    ap.add_argument("data", help="its MVTec-layout category")
    ap.add_argument("--out", required=True, help="where to save the EfficientAD model")
    args = ap.parse_args()

    puad = load_model(args.model)
    if puad.detector != "puad":
        raise SystemExit(f"{args.model}: a {puad.detector} model, not puad")
    model = copy.deepcopy(puad.model)
    model.config.puad = False
    entry = get_detector("efficientad")
    config = entry.config_cls.from_dict({**puad.config, "puad": False})
    model.config = config
    evaluation = evaluate(lambda b: entry.infer(model, b), open_dataset(args.data), puad.input)
    ead = saved_models.SavedModel(
        "efficientad",
        config.to_dict(),
        puad.input,
        puad.backbone,
        puad.fit_report,
        model,
        evaluation,
        puad.golden_inputs,
    )
    saved_models.save(args.out, ead, overwrite=True)
    rows = {}
    for name, saved in (("efficientad", ead), ("puad", puad)):
        m = saved.evaluation.metrics
        rows[name] = {
            "image_rocauc": m.image_rocauc,
            "pixel_rocauc": m.pixel_rocauc,
            "aupro": m.aupro,
            "torch_ms_per_image": m.torch_ms_per_image,
        }
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
