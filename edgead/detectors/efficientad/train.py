"""EfficientAD and PUAD training loops: losses, schedule, map normalization, PUAD's Gaussian."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from edgead.bundle.manifest import InputSpec
from edgead.data.images import list_images
from edgead.detectors.efficientad.checkpoints import (
    Checkpoints,
    _rng_state,
    _set_rng_state,
    fingerprint,
)
from edgead.detectors.efficientad.config import EfficientAdConfig, input_spec
from edgead.detectors.efficientad.data import color_jitter, load_images, normalize, split_validation
from edgead.detectors.efficientad.distill import distill_teacher
from edgead.detectors.efficientad.networks import EfficientAdModel, load_teacher
from edgead.errors import EdgeadError

log = logging.getLogger(__name__)


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
