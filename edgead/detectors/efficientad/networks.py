"""EfficientAD's networks: the PDN teacher and student, the autoencoder, the scoring module and
the graph that export writes; loading published teacher weights."""

from __future__ import annotations

import copy
import itertools
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgead.detectors.efficientad.config import MAP_PAD, EfficientAdConfig
from edgead.errors import EdgeadError

log = logging.getLogger(__name__)


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


def rebuild(config: EfficientAdConfig, state: dict[str, torch.Tensor]) -> EfficientAdModel:
    model = EfficientAdModel(config)
    model.load_state_dict(state, strict=True)
    return model.eval()


def infer(model: EfficientAdModel, batch: torch.Tensor):
    out = model(batch)
    return out["image_score"].numpy(), out["anomaly_map"].numpy()
