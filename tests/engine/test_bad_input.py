"""Bad input through the entry point: one readable line naming the file/key/class, exit code 2, no traceback."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from datasets.io import write_mask
from engine.checkpoint import save_checkpoint
from tools.train_val import main

STEPS = [["ball"], ["box"]]
TRAIN = "ball/train/good"


def _first(root: Path, folder: str, ext: str) -> Path:
    return sorted((root / folder).glob(f"*{ext}"))[0]


def _write_xyz(root: Path, array: np.ndarray) -> None:
    # Three samples per pixel are stored contiguously, as in the real MVTec 3D-AD files.
    layout = {"photometric": "rgb"} if array.shape[-1] == 3 else {}
    tifffile.imwrite(_first(root, f"{TRAIN}/xyz", ".tiff"), array, **layout)


def _defect_mask(root: Path) -> Path:
    return next(p for p in sorted((root / "ball" / "test").glob("*/gt/*.png")) if "good" not in p.parts)


def _write_leaky_meta(root: Path, spelling: str = "{}") -> None:
    """Hand-made meta files whose training list also holds a test image (its path written as ``spelling``)."""
    from datasets.meta import build_meta

    train, test = build_meta(root)
    leaked = next(r for r in test if r["label"] == 0)
    leaked = {**leaked, "split": "train", "filename": spelling.format(leaked["filename"])}
    for name, records in (("train.jsonl", [*train, leaked]), ("test.jsonl", test)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in records))


# (id, how to break the dataset / config, extra argv, expected message fragment)
CASES = [
    ("missing_root", lambda r, c: c["dataset"].update(root=str(r / "nowhere")), [], "dataset root not found"),
    ("unknown_class", lambda r, c: c["incremental"].update(steps=[{"classes": ["ball", "teapot"]}]), [],
     "class 'teapot' has no train samples"),
    ("unknown_layout", lambda r, c: c["dataset"].update(layout="mvtec_2d"), [], "unknown layout 'mvtec_2d'"),
    ("empty_class", lambda r, c: [(r / "empty" / s / "good" / d).mkdir(parents=True)
                                  for s in ("train", "test") for d in ("rgb", "xyz")], [], "no .png images in"),
    ("missing_xyz", lambda r, c: _first(r, f"{TRAIN}/xyz", ".tiff").unlink(), [], "missing partner of"),
    ("missing_rgb", lambda r, c: _first(r, f"{TRAIN}/rgb", ".png").unlink(), [], "missing partner of"),
    ("corrupt_png", lambda r, c: _first(r, f"{TRAIN}/rgb", ".png").write_bytes(b"\x89PNG garbage"), [],
     "cannot be decoded"),
    ("truncated_tiff", lambda r, c: (lambda p: p.write_bytes(p.read_bytes()[:300]))(
        _first(r, f"{TRAIN}/xyz", ".tiff")), [], "corrupt or truncated TIFF"),
    ("xyz_two_channels", lambda r, c: _write_xyz(r, np.ones((64, 64, 2), np.float32)), [], "shape (H, W, 3)"),
    ("xyz_uint8", lambda r, c: _write_xyz(r, np.ones((64, 64, 3), np.uint8)), [], "float32 or float64"),
    ("xyz_all_zero", lambda r, c: _write_xyz(r, np.zeros((64, 64, 3), np.float32)), [], "no valid"),
    ("xyz_nan", lambda r, c: _write_xyz(r, np.full((64, 64, 3), np.nan, np.float32)), [], "NaN or inf"),
    ("mask_size", lambda r, c: write_mask(_defect_mask(r), np.ones((32, 32), bool)), [], "differs from rgb size"),
    ("unknown_key", lambda r, c: c["trainer"].update(epoch=3), [], "unknown config key 'trainer.epoch'"),
    ("wrong_type", lambda r, c: c["trainer"].update(epochs="ten"), [], "'trainer.epochs': expected int, got 'ten'"),
    ("repeated_class", lambda r, c: c["incremental"].update(steps=[{"classes": ["ball"]}, {"classes": ["ball"]}]),
     [], "class 'ball' appears in step 0 and again in step 1"),
    ("no_previous_ckpt", lambda r, c: None, ["--step", "1"], "checkpoint not found"),
    ("other_architecture", lambda r, c: save_checkpoint(Path(c["_out"]) / "step_0" / "ckpt.pth",
                                                        {"fingerprint": "0123", "model": {}}),
     ["--step", "1"], "written by another model configuration"),
    ("output_not_writable", lambda r, c: (Path(c["_out"]).parent / "file").write_text("x"), ["--output-under-file"],
     "cannot create output directory"),
    ("leaky_meta", lambda r, c: _write_leaky_meta(r), [], "contains test images"),
    ("leaky_meta_other_spelling", lambda r, c: _write_leaky_meta(r, "./{}"), [], "contains test images"),
    ("resume_and_overwrite", lambda r, c: None, ["--resume", "--overwrite"], "contradict each other"),
    ("non_finite_loss", lambda r, c: c["model"].update(jitter={"scale": float("inf"), "prob": 1.0}), [],
     "at step 0, epoch 1, iteration 0"),
]


@pytest.fixture()
def broken_setup(tmp_path, tiny_root, make_config):
    logging.getLogger().handlers.clear()  # an earlier main() left a handler on a stream pytest has closed
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root, ignore=shutil.ignore_patterns("*.jsonl"))
    cfg = make_config(root, STEPS)
    cfg["_out"] = str(tmp_path / "out")
    return root, cfg


@pytest.mark.parametrize(("name", "breaks", "argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line(broken_setup, capsys, name, breaks, argv, message):
    root, cfg = broken_setup
    breaks(root, cfg)
    output = Path(cfg.pop("_out"))
    config = output.parent / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    if argv == ["--output-under-file"]:
        output, argv = output.parent / "file" / "out", []
    code = main(["--config", str(config), "--output", str(output), *argv])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]  # other lines: progress bars
    assert code == 2
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err[-2000:]


def test_disk_full_while_writing_checkpoint(broken_setup, capsys, monkeypatch):
    root, cfg = broken_setup
    output = Path(cfg.pop("_out"))
    config = output.parent / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if "ckpt.pth" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["--config", str(config), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert "cannot write checkpoint" in err and "disk full" in err
    assert not list(output.rglob("*.tmp")) and not (output / "step_0" / "ckpt.pth").exists()
