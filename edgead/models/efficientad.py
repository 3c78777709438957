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

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from edgead.bundle.io import write_file_atomic
from edgead.bundle.manifest import InputSpec
from edgead.data.images import iter_images, list_images
from edgead.errors import EdgeadError
from edgead.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    backbone_info,
    create_feature_backbone,
    layers_at,
)
from edgead.models.common import adaptive_pool_matrix
from edgead.models.config import ConfigMixin
from edgead.runtime.preprocess import INTERPOLATIONS

log = logging.getLogger(__name__)

MAP_PAD = 4  # the PDN's output is the input's /4 grid less 4 cells each side (no padding)


@dataclass
class EfficientAdConfig(ConfigMixin):
    model_size: str = "small"  # small | medium
    image_size: tuple[int, int] = (256, 256)
    steps: int = 70_000
    teacher: str | None = None  # teacher weights file; None: distill one from ``backbone``
    backbone: str = "efficientnet_lite0"
    weights: str | None = None
    layers: tuple[str, ...] | None = None
    teacher_steps: int = 10_000
    teacher_data: str | None = None  # images to distill on (default: the training images)
    penalty_data: str | None = None  # the paper's ImageNet penalty: any folder of images
    out_channels: int = 384
    lr: float = 1e-4
    weight_decay: float = 1e-5
    hard_quantile: float = 0.999
    validation_fraction: float = 0.1
    checkpoint: str | None = None
    checkpoint_every: int = 1000
    puad: bool = False
    puad_feature: str = "student"  # student | teacher
    puad_weight: float = 1.0
    blur_sigma: float = 0.0
    seed: int = 0
    batch_size: int = 8  # for the passes that are not training (statistics, evaluation)


@dataclass
class PuadConfig(EfficientAdConfig):
    puad: bool = True


def input_spec(config: EfficientAdConfig) -> InputSpec:
    """256x256 with ImageNet normalization: what the published teachers were trained on."""
    h, w = config.image_size
    return InputSpec(h, w, mean=IMAGENET_MEAN, std=IMAGENET_STD)


# -- networks ------------------------------------------------------------------------------------
def pdn(size: str, out_channels: int) -> nn.Sequential:
    """Patch description network, padding-free (the published teachers' layout)."""
    if size == "small":
        return nn.Sequential(
            nn.Conv2d(3, 128, 4),
            nn.ReLU(),
            nn.AvgPool2d(2, 2),
            nn.Conv2d(128, 256, 4),
            nn.ReLU(),
            nn.AvgPool2d(2, 2),
            nn.Conv2d(256, 256, 3),
            nn.ReLU(),
            nn.Conv2d(256, out_channels, 4),
        )
    if size == "medium":
        return nn.Sequential(
            nn.Conv2d(3, 256, 4),
            nn.ReLU(),
            nn.AvgPool2d(2, 2),
            nn.Conv2d(256, 512, 4),
            nn.ReLU(),
            nn.AvgPool2d(2, 2),
            nn.Conv2d(512, 512, 1),
            nn.ReLU(),
            nn.Conv2d(512, 512, 3),
            nn.ReLU(),
            nn.Conv2d(512, out_channels, 4),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 1),
        )
    raise EdgeadError(f"--model-size {size!r}: small or medium")


def map_size(image_size: tuple[int, int]) -> tuple[int, int]:
    with torch.no_grad():
        out = pdn("small", 1)(torch.zeros(1, 3, *image_size))
    return int(out.shape[2]), int(out.shape[3])


class AutoEncoder(nn.Module):
    """The paper's autoencoder; its sizes scale with the input (the paper's at 256x256)."""

    def __init__(self, out_channels: int, image_size: tuple[int, int], out_size: tuple[int, int]):
        super().__init__()
        h, w = image_size
        if h % 32 or w % 32 or min(h, w) < 64:
            raise EdgeadError(
                f"EfficientAD image size {h}x{w}: sides must be multiples of 32, >= 64"
            )
        enc: list[nn.Module] = []
        channels = (3, 32, 32, 64, 64, 64)
        for cin, cout in itertools.pairwise(channels):
            enc += [nn.Conv2d(cin, cout, 4, 2, 1), nn.ReLU()]
        enc.append(nn.Conv2d(64, 64, (h // 32, w // 32)))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = []
        for s in (3, 8, 15, 32, 63, 127):
            size = (max(1, round(s * h / 256)), max(1, round(s * w / 256)))
            dec += [
                nn.Upsample(size=size, mode="bilinear"),
                nn.Conv2d(64, 64, 4, 1, 2),
                nn.ReLU(),
                nn.Dropout(0.2),
            ]
        dec += [
            nn.Upsample(size=out_size, mode="bilinear"),
            nn.Conv2d(64, 64, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(64, out_channels, 3, 1, 1),
        ]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


# the conv layers of the PDNs by their names in anomalib's checkpoints
_ANOMALIB_CONVS = {"small": (0, 3, 6, 8), "medium": (0, 3, 6, 8, 10, 12)}


def load_teacher(teacher: nn.Sequential, path: str | Path, size: str) -> None:
    """Load published teacher weights: nn.Sequential keys (``0.weight``) or anomalib's
    (``conv1.weight``), optionally under a ``teacher.`` / ``model.teacher.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise EdgeadError(f"--teacher {path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise EdgeadError(f"{path}: not a PyTorch state dict ({exc.__class__.__name__})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EdgeadError(f"{path}: expected a state dict of tensors")
    renamed = {}
    for key, value in state.items():
        for prefix in ("model.teacher.", "teacher."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if key.startswith("conv"):
            layer, _, param = key.partition(".")
            index = int(layer[4:]) - 1
            convs = _ANOMALIB_CONVS[size]
            if not 0 <= index < len(convs):
                raise EdgeadError(f"{path}: unexpected layer {key!r} for a {size} teacher")
            key = f"{convs[index]}.{param}"
        renamed[key] = value
    expected = teacher.state_dict()
    shapes = {k: tuple(v.shape) for k, v in renamed.items()}
    wrong = [
        f"{k}: {shapes.get(k)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if shapes.get(k) != tuple(v.shape)
    ]
    if wrong or set(renamed) - set(expected):
        extra = sorted(set(renamed) - set(expected))
        raise EdgeadError(
            f"{path}: does not fit a {size} teacher with {teacher[-1].out_channels} output "
            f"channels: {'; '.join(wrong[:4])}{' extra keys ' + str(extra[:4]) if extra else ''}"
        )
    teacher.load_state_dict(renamed)


# -- the model -----------------------------------------------------------------------------------
class EfficientAdModel(nn.Module):
    def __init__(self, config: EfficientAdConfig):
        super().__init__()
        self.config = config
        c = config.out_channels
        size = tuple(config.image_size)
        self.map_size = map_size(size)
        self.teacher = pdn(config.model_size, c)
        self.student = pdn(config.model_size, 2 * c)
        self.autoencoder = AutoEncoder(c, size, self.map_size)
        self.register_buffer("teacher_mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("teacher_std", torch.ones(1, c, 1, 1))
        # q_st_start, q_st_end, q_ae_start, q_ae_end
        self.register_buffer("quantiles", torch.tensor([0.0, 1.0, 0.0, 1.0]))
        dim = self.pooled_dim
        self.register_buffer("puad_mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("puad_whitening", torch.eye(dim, dtype=torch.float64))
        # EfficientAD score mean, std; Mahalanobis mean, std (validation images)
        self.register_buffer("puad_stats", torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64))

    @property
    def pooled_dim(self) -> int:
        c = self.config.out_channels
        return 2 * c if self.config.puad_feature == "student" else c

    def raw_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(map_st, map_ae) before normalization, (B, 1, h, w), and the pooled feature."""
        c = self.config.out_channels
        t = (self.teacher(x) - self.teacher_mean) / self.teacher_std
        s = self.student(x)
        ae = self.autoencoder(x)
        map_st = ((t - s[:, :c]) ** 2).mean(1, keepdim=True)
        map_ae = ((ae - s[:, c:]) ** 2).mean(1, keepdim=True)
        pooled = (s if self.config.puad_feature == "student" else t).mean((2, 3))
        return map_st, map_ae, pooled

    def combine(self, map_st: torch.Tensor, map_ae: torch.Tensor, size) -> torch.Tensor:
        q = self.quantiles
        map_st = 0.1 * (map_st - q[0]) / (q[1] - q[0])
        map_ae = 0.1 * (map_ae - q[2]) / (q[3] - q[2])
        combined = F.pad(0.5 * map_st + 0.5 * map_ae, (MAP_PAD,) * 4)
        return F.interpolate(combined, size=size, mode="bilinear", align_corners=False)[:, 0]

    def mahalanobis(self, pooled: torch.Tensor) -> torch.Tensor:
        delta = pooled.double() - self.puad_mean
        return torch.linalg.vector_norm(delta @ self.puad_whitening.T, dim=1)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        map_st, map_ae, pooled = self.raw_maps(x)
        amap = self.combine(map_st, map_ae, x.shape[-2:])
        ead = amap.amax(dim=(1, 2))
        out = {"ead_score": ead, "anomaly_map": amap, "pooled": pooled}
        if self.config.puad:
            s = self.puad_stats
            maha = self.mahalanobis(pooled)
            score = (ead.double() - s[0]) / s[1] + self.config.puad_weight * (maha - s[2]) / s[3]
            out["image_score"] = score.float()
        else:
            out["image_score"] = ead
        return out


class EfficientAdGraph(nn.Module):
    """What is exported: image -> (EfficientAD score, anomaly map[, pooled feature]).

    ``half``: the three networks run in FP16; the squared differences, the means over
    channels and the quantile normalization stay in FP32, where they do not cancel badly.
    """

    def __init__(self, model: EfficientAdModel, half: bool = False):
        super().__init__()
        self.model = copy.deepcopy(model).eval() if half else model
        self.half = half
        if half:
            for net in (self.model.teacher, self.model.student, self.model.autoencoder):
                net.half()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        c = m.config.out_channels
        xin = x.half() if self.half else x
        t = (m.teacher(xin).float() - m.teacher_mean) / m.teacher_std
        s = m.student(xin).float()
        ae = m.autoencoder(xin).float()
        map_st = ((t - s[:, :c]) ** 2).mean(1, keepdim=True)
        map_ae = ((ae - s[:, c:]) ** 2).mean(1, keepdim=True)
        amap = m.combine(map_st, map_ae, x.shape[-2:])
        outputs = (amap.amax(dim=(1, 2)), amap)
        if m.config.puad:
            pooled = (s if m.config.puad_feature == "student" else t).mean((2, 3))
            outputs += (pooled,)
        return outputs


def output_names(config: EfficientAdConfig) -> list[str]:
    return ["ead_score", "anomaly_map", *(["pooled"] if config.puad else [])]


# -- data ----------------------------------------------------------------------------------------
def load_images(paths: list[Path], spec: InputSpec, quiet: bool, desc: str):
    """Decode and resize once, kept as uint8 (N, 3, H, W); unreadable files are reported."""
    import cv2

    arrays, kept, skipped = [], [], []
    for path, image, error in tqdm(
        iter_images(paths), total=len(paths), desc=desc, disable=quiet or None, leave=False
    ):
        if error is not None:
            log.warning("skipping %s", error)
            skipped.append(str(error))
            continue
        image = cv2.resize(
            image, (spec.width, spec.height), interpolation=INTERPOLATIONS[spec.interpolation]
        )
        arrays.append(image.transpose(2, 0, 1))
        kept.append(path)
    if not arrays:
        return torch.empty(0, 3, spec.height, spec.width, dtype=torch.uint8), kept, skipped
    return torch.from_numpy(np.stack(arrays)), kept, skipped


def normalize(images_u8: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> the network input, exactly as the runtime's preprocess does."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (images_u8.float() * np.float32(1.0 / 255.0) - mean) / std


def color_jitter(x01: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The paper's autoencoder augmentation: one of brightness, contrast, saturation (0.2)."""
    from torchvision.transforms.v2 import functional as TF

    which = int(torch.randint(3, (1,), generator=generator))
    factor = float(0.8 + 0.4 * torch.rand(1, generator=generator))
    fn = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)[which]
    return fn(x01, factor).clamp(0, 1)


def split_validation(
    train: list[Path], validation: list[Path] | None, fraction: float, seed: int
) -> tuple[list[Path], list[Path], str]:
    if validation:
        return train, validation, f"{len(validation)} images of validation/good"
    n_val = max(1, round(len(train) * fraction))
    if len(train) - n_val < 2:
        raise EdgeadError(f"EfficientAD needs at least {n_val + 2} training images")
    order = np.random.default_rng(seed).permutation(len(train))
    val = sorted(train[i] for i in order[:n_val])
    rest = sorted(train[i] for i in order[n_val:])
    return rest, val, f"{n_val} training images held out ({fraction:.0%}, seed {seed})"


# -- checkpoints ---------------------------------------------------------------------------------
def fingerprint(config: EfficientAdConfig, train: list[Path]) -> str:
    """What a checkpoint must agree on to be resumed: the settings and the training files."""
    settings = {
        k: v
        for k, v in config.to_dict().items()
        if k not in ("checkpoint", "checkpoint_every", "batch_size")
    }
    text = json.dumps([settings, [str(p) for p in train]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpoints:
    def __init__(self, path: str | None, every: int, print_id: str):
        self.path = Path(path) if path else None
        self.every = max(1, every)
        self.id = print_id

    def load(self) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a torn file cannot happen (atomic), a foreign one can
            raise EdgeadError(f"{self.path}: unreadable checkpoint ({exc}); delete it") from exc
        if state.get("fingerprint") != self.id:
            raise EdgeadError(
                f"{self.path}: checkpoint of a run with other settings or training images; "
                "delete it, or give another --checkpoint"
            )
        return state

    def due(self, step: int, total: int) -> bool:
        return self.path is not None and (step % self.every == 0 or step == total)

    def save(self, state: dict) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save({**state, "fingerprint": self.id}, buffer)
        write_file_atomic(self.path, buffer.getvalue())


def _rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "generator": generator.get_state()}


def _set_rng_state(generator: torch.Generator, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])


# -- teacher distillation -----------------------------------------------------------------------
class DistillationTarget(nn.Module):
    """Backbone features at the PDN's output grid, pooled to ``out_channels``.

    The image is fed to the backbone at twice the model's size (its stride-8 grid then matches
    the PDN's), the feature maps are resized to the PDN grid, concatenated, averaged over 3x3
    neighbourhoods and pooled over channels, as PatchCore's features are.
    """

    def __init__(self, config: EfficientAdConfig, spec: InputSpec, out_size: tuple[int, int]):
        super().__init__()
        info = backbone_info(config.backbone)
        layers = config.layers or layers_at(config.backbone, (8, 16))
        backbone, layers, channels, source = create_feature_backbone(
            config.backbone, layers, config.weights
        )
        if sum(channels) < config.out_channels and not config.layers:
            layers = layers_at(config.backbone, (4, 8, 16, 32))
            backbone, layers, channels, source = create_feature_backbone(
                config.backbone, layers, config.weights
            )
        if sum(channels) < config.out_channels:
            raise EdgeadError(
                f"--layers {','.join(layers)}: {sum(channels)} channels, fewer than the "
                f"teacher's {config.out_channels}"
            )
        self.backbone = backbone.eval()
        self.meta = {
            "name": config.backbone,
            "layers": list(layers),
            "channels": channels,
            "weights": source,
        }
        self.out_size = out_size
        self.register_buffer("pool", adaptive_pool_matrix(sum(channels), config.out_channels))
        scale = torch.tensor(spec.std) / torch.tensor(info.std)
        shift = (torch.tensor(spec.mean) - torch.tensor(info.mean)) / torch.tensor(info.std)
        self.register_buffer("scale", scale.view(1, 3, 1, 1))
        self.register_buffer("shift", shift.view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale + self.shift  # the model's normalization -> the backbone's
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        feats = [
            F.interpolate(f, size=self.out_size, mode="bilinear", align_corners=False)
            for f in self.backbone(x)
        ]
        emb = F.avg_pool2d(torch.cat(feats, 1), 3, 1, 1)
        return torch.einsum("oc,bchw->bohw", self.pool, emb)


def distill_teacher(
    teacher: nn.Module,
    config: EfficientAdConfig,
    images: torch.Tensor,
    spec: InputSpec,
    device: str,
    quiet: bool,
    checkpoints: Checkpoints,
    resume: dict | None,
) -> dict:
    target = DistillationTarget(config, spec, map_size(tuple(config.image_size))).to(device)
    # per-channel statistics of the targets, so that every channel matters equally
    with torch.no_grad():
        feats = torch.cat(
            [
                target(normalize(images[i : i + config.batch_size], spec).to(device)).cpu()
                for i in range(0, len(images), config.batch_size)
            ]
        )
    t_mean = feats.mean((0, 2, 3), keepdim=True).to(device)
    t_std = feats.std((0, 2, 3), keepdim=True).clamp_min(1e-6).to(device)
    del feats
    teacher.to(device).train()
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-4, weight_decay=1e-5)
    generator = torch.Generator().manual_seed(config.seed + 1)
    start = 0
    if resume is not None and resume.get("phase") == "teacher":
        teacher.load_state_dict(resume["teacher"])
        optimizer.load_state_dict(resume["optimizer"])
        _set_rng_state(generator, resume["rng"])
        start = resume["step"]
        log.info("resuming teacher distillation at step %d", start)
    bar = tqdm(
        range(start, config.teacher_steps),
        initial=start,
        total=config.teacher_steps,
        desc="distill teacher",
        disable=quiet or None,
        leave=False,
    )
    loss = torch.zeros(())
    for step in bar:
        idx = torch.randint(len(images), (min(8, len(images)),), generator=generator)
        x = normalize(images[idx], spec).to(device)
        with torch.no_grad():
            y = (target(x) - t_mean) / t_std
        loss = F.mse_loss(teacher(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if checkpoints.due(step + 1, config.teacher_steps):
            checkpoints.save(
                {
                    "phase": "teacher",
                    "step": step + 1,
                    "teacher": teacher.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": _rng_state(generator),
                }
            )
    teacher.eval()
    meta = dict(target.meta)
    meta["teacher"] = (
        f"distilled from {config.backbone} ({meta['weights']}) on {len(images)} images for "
        f"{config.teacher_steps} steps (final loss {float(loss.detach()):.4f})"
    )
    return meta


# -- training ------------------------------------------------------------------------------------
@torch.no_grad()
def _batched(fn, images: torch.Tensor, spec: InputSpec, device: str, batch: int) -> list:
    return [
        fn(normalize(images[i : i + batch], spec).to(device)) for i in range(0, len(images), batch)
    ]


def fit(
    config: EfficientAdConfig,
    train_paths: list[Path],
    device: str = "cpu",
    quiet: bool = False,
    validation: list[Path] | None = None,
) -> tuple[EfficientAdModel, dict]:
    t0 = time.perf_counter()
    if config.puad_feature not in ("student", "teacher"):
        raise EdgeadError(f"--puad-feature {config.puad_feature!r}: student or teacher")
    spec = input_spec(config)
    train_paths, val_paths, val_source = split_validation(
        list(train_paths), validation, config.validation_fraction, config.seed
    )
    checkpoints = Checkpoints(
        config.checkpoint, config.checkpoint_every, fingerprint(config, train_paths)
    )
    resume = checkpoints.load()
    torch.manual_seed(config.seed)
    images, _, skipped = load_images(train_paths, spec, quiet, "load train")
    if len(images) < 2:
        raise EdgeadError("EfficientAD needs at least 2 readable training images")
    val_images, _, val_skipped = load_images(val_paths, spec, quiet, "load validation")
    skipped += val_skipped
    penalty = None
    if config.penalty_data:
        folder = Path(config.penalty_data)
        if not folder.is_dir():
            raise EdgeadError(f"--penalty-data {folder}: not a folder")
        penalty, _, _ = load_images(list_images(folder), spec, quiet, "load penalty")
        if not len(penalty):
            raise EdgeadError(f"--penalty-data {folder}: no readable images")

    model = EfficientAdModel(config)
    size = config.model_size
    if config.teacher:
        load_teacher(model.teacher, config.teacher, size)
        backbone_meta = {"name": f"pdn_{size}", "teacher": f"weights file {config.teacher}"}
    elif resume is not None and resume.get("phase") == "student":
        model.teacher.load_state_dict(resume["teacher"])
        backbone_meta = resume["backbone_meta"]
    else:
        distill_images = images
        if config.teacher_data:
            folder = Path(config.teacher_data)
            if not folder.is_dir():
                raise EdgeadError(f"--teacher-data {folder}: not a folder")
            distill_images, _, _ = load_images(list_images(folder), spec, quiet, "load distill")
            if not len(distill_images):
                raise EdgeadError(f"--teacher-data {folder}: no readable images")
        backbone_meta = distill_teacher(
            model.teacher, config, distill_images, spec, device, quiet, checkpoints, resume
        )
    model.to(device)
    teacher = model.teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    # channel normalization of the teacher over the training images
    outs = torch.cat([o.cpu() for o in _batched(teacher, images, spec, device, config.batch_size)])
    model.teacher_mean.copy_(outs.mean((0, 2, 3), keepdim=True))
    model.teacher_std.copy_(outs.std((0, 2, 3), keepdim=True).clamp_min(1e-6))
    del outs

    student, ae = model.student.train(), model.autoencoder.train()
    optimizer = torch.optim.Adam(
        list(student.parameters()) + list(ae.parameters()),
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=max(1, int(0.95 * config.steps)), gamma=0.1
    )
    generator = torch.Generator().manual_seed(config.seed)
    start = 0
    if resume is not None and resume.get("phase") == "student":
        student.load_state_dict(resume["student"])
        ae.load_state_dict(resume["autoencoder"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        _set_rng_state(generator, resume["rng"])
        start = resume["step"]
        log.info("resuming EfficientAD training at step %d of %d", start, config.steps)
    c = config.out_channels
    mean, std = model.teacher_mean, model.teacher_std
    bar = tqdm(
        range(start, config.steps),
        initial=start,
        total=config.steps,
        desc="train student+AE",
        disable=quiet or None,
        leave=False,
    )
    losses: dict[str, float] = {}
    history: list[float] = []  # total loss per step of this run
    for step in bar:
        i = int(torch.randint(len(images), (1,), generator=generator))
        x01 = images[i : i + 1].float() / 255.0
        x_st = normalize(images[i : i + 1], spec).to(device)
        x_ae = normalize((color_jitter(x01, generator) * 255.0).round().to(torch.uint8), spec)
        x_ae = x_ae.to(device)
        with torch.no_grad():
            t_st = (teacher(x_st) - mean) / std
            t_ae = (teacher(x_ae) - mean) / std
        dist_st = (t_st - student(x_st)[:, :c]) ** 2
        d_hard = torch.quantile(dist_st.flatten(), config.hard_quantile)
        loss_st = dist_st[dist_st >= d_hard].mean()
        if penalty is not None:
            j = int(torch.randint(len(penalty), (1,), generator=generator))
            out_p = student(normalize(penalty[j : j + 1], spec).to(device))[:, :c]
            loss_st = loss_st + (out_p**2).mean()
        ae_out = ae(x_ae)
        s_ae = student(x_ae)[:, c:]
        loss_ae = ((t_ae - ae_out) ** 2).mean()
        loss_stae = ((ae_out - s_ae) ** 2).mean()
        loss = loss_st + loss_ae + loss_stae
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses = {
            "st": float(loss_st.detach()),
            "ae": float(loss_ae.detach()),
            "stae": float(loss_stae.detach()),
        }
        history.append(float(loss.detach()))
        if checkpoints.due(step + 1, config.steps):
            checkpoints.save(
                {
                    "phase": "student",
                    "step": step + 1,
                    "teacher": teacher.state_dict(),
                    "backbone_meta": backbone_meta,
                    "student": student.state_dict(),
                    "autoencoder": ae.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(generator),
                }
            )
    model.eval()

    # map normalization: 0.9 and 0.995 quantiles of the validation maps
    with torch.no_grad():
        raw = _batched(model.raw_maps, val_images, spec, device, config.batch_size)
        st = torch.cat([r[0].flatten() for r in raw]).cpu()
        aem = torch.cat([r[1].flatten() for r in raw]).cpu()
        q = torch.stack(
            [
                torch.quantile(st, 0.9),
                torch.quantile(st, 0.995),
                torch.quantile(aem, 0.9),
                torch.quantile(aem, 0.995),
            ]
        )
        if float(q[1] - q[0]) <= 0 or float(q[3] - q[2]) <= 0:
            raise EdgeadError("validation maps are constant: train longer or check the images")
        model.quantiles.copy_(q)

    report = {
        "backbone": backbone_meta,
        "n_train_images": len(images),
        "n_validation_images": len(val_images),
        "validation": val_source,
        "skipped": skipped,
        "steps": config.steps,
        "resumed_from_step": start,
        "final_losses": losses,
        # mean total loss over the first and the last 10 steps of this run
        "loss_first_10": float(np.mean(history[:10])) if history else None,
        "loss_last_10": float(np.mean(history[-10:])) if history else None,
        "model_size": f"EfficientAD-{'S' if size == 'small' else 'M'}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters",
    }
    if config.puad:
        report["puad"] = fit_puad(model, images, val_images, spec, device, config.batch_size)
    report["fit_seconds"] = round(time.perf_counter() - t0, 2)
    return model.cpu(), report


@torch.no_grad()
def fit_puad(
    model: EfficientAdModel,
    images: torch.Tensor,
    val_images: torch.Tensor,
    spec: InputSpec,
    device: str,
    batch: int,
) -> dict:
    """Ledoit-Wolf Gaussian on the pooled features; z-score statistics on validation."""
    from sklearn.covariance import LedoitWolf

    feats = torch.cat([o["pooled"] for o in _batched(model, images, spec, device, batch)])
    feats = feats.double().cpu().numpy()
    lw = LedoitWolf().fit(feats)
    cov = lw.covariance_
    chol = np.linalg.cholesky(cov)
    whitening = np.linalg.solve(chol, np.eye(len(cov)))  # W = L^-1: ||W d||^2 = d^T cov^-1 d
    model.puad_mean.copy_(torch.from_numpy(lw.location_))
    model.puad_whitening.copy_(torch.from_numpy(whitening))
    outs = _batched(model, val_images, spec, device, batch)
    ead = torch.cat([o["ead_score"] for o in outs]).double().cpu()
    maha = torch.cat([model.mahalanobis(o["pooled"]).cpu() for o in outs])
    stats = torch.stack(
        [ead.mean(), ead.std(unbiased=False), maha.mean(), maha.std(unbiased=False)]
    )
    stats[1] = stats[1].clamp_min(1e-12)
    stats[3] = stats[3].clamp_min(1e-12)
    model.puad_stats.copy_(stats)
    return {
        "feature": model.config.puad_feature,
        "dim": int(feats.shape[1]),
        "shrinkage": float(lw.shrinkage_),
        "z_stats": [float(v) for v in stats],
    }


def rebuild(config: EfficientAdConfig, state: dict[str, torch.Tensor]) -> EfficientAdModel:
    model = EfficientAdModel(config)
    model.load_state_dict(state, strict=True)
    return model.eval()


def infer(model: EfficientAdModel, batch: torch.Tensor):
    out = model(batch)
    return out["image_score"].numpy(), out["anomaly_map"].numpy()
