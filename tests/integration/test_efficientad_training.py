"""EfficientAD training: it learns, it takes a published teacher file, and a run killed
mid-training resumes from its checkpoint and ends where an uninterrupted run ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edgead.detectors.efficientad.model import EfficientAdConfig, pdn  # noqa: E402
from edgead.workflows import fit_detector, load_model  # noqa: E402

pytestmark = pytest.mark.timeout(600)

TINY = ["--image-size", "64", "--batch-size", "8"]


def fit_cli(data: Path, out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "edgead.cli", "fit", "efficientad", "--data", str(data)]
    return [*cmd, "--out", str(out), *TINY, *extra]


def test_training_lowers_the_losses(fitted):
    report = fitted.model("efficientad").fit_report
    assert report["steps"] == 40 and report["resumed_from_step"] == 0
    assert report["loss_last_10"] < report["loss_first_10"], report
    assert "distilled from efficientnet_lite0" in report["backbone"]["teacher"]


def test_a_teacher_weights_file_is_used_as_is(synthetic_data, tmp_path):
    torch.manual_seed(3)
    teacher = pdn("small", 384)
    path = tmp_path / "teacher_small.pth"
    torch.save(teacher.state_dict(), path)
    config = EfficientAdConfig(image_size=(64, 64), steps=3, teacher=str(path), batch_size=8)
    saved = fit_detector("efficientad", synthetic_data, config, quiet=True)
    assert saved.fit_report["backbone"]["teacher"] == f"weights file {path}"
    for a, b in zip(
        saved.model.teacher.state_dict().values(), teacher.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def _kill_after_checkpoints(cmd: list[str], checkpoint: Path, n: int) -> int:
    """Run ``cmd``; SIGKILL it once ``checkpoint`` has been (re)written ``n`` times."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            seen.add(os.stat(checkpoint).st_ino)  # each atomic write is a new file
        if len(seen) >= n:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    return proc.returncode


def test_killed_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(
    synthetic_data, tmp_path
):
    settings = ["--steps", "60", "--teacher-steps", "20", "--checkpoint-every", "10"]
    checkpoint = tmp_path / "run.ckpt"
    killed = fit_cli(
        synthetic_data, tmp_path / "resumed", *settings, "--checkpoint", str(checkpoint)
    )
    # teacher checkpoints at steps 10 and 20, then the student's at 10, 20, ...: the 4th write
    # is in the middle of student training
    code = _kill_after_checkpoints(killed, checkpoint, 4)
    assert code == -signal.SIGKILL, "the run ended before it could be killed: make it longer"
    assert checkpoint.is_file() and not (tmp_path / "resumed").exists()
    assert not list(tmp_path.glob("*.tmp"))

    resumed = subprocess.run(killed, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming EfficientAD training at step" in resumed.stderr
    assert not checkpoint.exists()  # removed once the model is saved

    straight = subprocess.run(
        fit_cli(synthetic_data, tmp_path / "straight", *settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert straight.returncode == 0, straight.stderr
    a = load_model(tmp_path / "resumed")
    b = load_model(tmp_path / "straight")
    assert a.fit_report["resumed_from_step"] > 0 and b.fit_report["resumed_from_step"] == 0
    for (name, x), y in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


def test_checkpoint_of_other_settings_is_refused(synthetic_data, tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    first = EfficientAdConfig(
        image_size=(64, 64), steps=2, teacher_steps=2, checkpoint=str(checkpoint), batch_size=8
    )
    fit_detector("efficientad", synthetic_data, first, quiet=True)
    assert checkpoint.is_file()
    other = EfficientAdConfig(
        image_size=(64, 64), steps=3, teacher_steps=2, checkpoint=str(checkpoint), batch_size=8
    )
    with pytest.raises(Exception, match="checkpoint of a run with other settings"):
        fit_detector("efficientad", synthetic_data, other, quiet=True)
