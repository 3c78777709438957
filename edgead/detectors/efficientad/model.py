"""EfficientAD (Batzner et al., "EfficientAD: Accurate Visual Anomaly Detection at
Millisecond-Level Latencies", WACV 2024) and PUAD (Sugawara & Imamura, "PUAD: Frustratingly
Simple Method for Robust Anomaly Detection", ICIP 2024).

Networks as in the paper and its public reproductions (same layer order, so the published
``teacher_small.pth`` / ``teacher_medium.pth`` load): a patch description network (PDN)
teacher, a student with twice the teacher's output channels, and an autoencoder. The teacher
comes from a weights file, or is distilled here from a pretrained backbone on the images the
user gives (ImageNet is not available offline; see README for what that costs).

Training: hard-feature loss (q = 0.999) of the student against the channel-normalized teacher,
optional penalty images, autoencoder and student-autoencoder losses, Adam (1e-4, weight decay
1e-5) with the learning rate divided by 10 at 95% of the steps. Maps are normalized with the
0.9 / 0.995 quantiles of the validation maps. PUAD adds a Gaussian (Ledoit-Wolf shrinkage) on
the spatially pooled student (or teacher) output; its Mahalanobis distance and the EfficientAD
score are z-scored with validation statistics and summed (``puad_weight`` on the former).

Training checkpoints (``config.checkpoint``) are written atomically every
``checkpoint_every`` steps with optimizer, scheduler and random-number states; a run started
again with the same settings resumes from the last one and ends where an uninterrupted run
would.
"""

from edgead.detectors.efficientad.config import MAP_PAD, EfficientAdConfig, PuadConfig, input_spec
from edgead.detectors.efficientad.networks import (
    AutoEncoder,
    EfficientAdGraph,
    EfficientAdModel,
    infer,
    load_teacher,
    map_size,
    output_names,
    pdn,
    rebuild,
)
from edgead.detectors.efficientad.train import fit, fit_puad, split_validation

__all__ = [
    "MAP_PAD",
    "AutoEncoder",
    "EfficientAdConfig",
    "EfficientAdGraph",
    "EfficientAdModel",
    "PuadConfig",
    "fit",
    "fit_puad",
    "infer",
    "input_spec",
    "load_teacher",
    "map_size",
    "output_names",
    "pdn",
    "rebuild",
    "split_validation",
]
