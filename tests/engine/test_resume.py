"""A run killed with SIGKILL in the middle of step 1 and resumed gives the results of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
STEPS = [["ball", "box"], ["cone"]]


def command(config: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "tools" / "train_val.py"), "--config", str(config), "--output", str(output),
            *extra]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, tiny_root, make_config):
    cfg = make_config(tiny_root, STEPS, incremental_epochs=12, save_every_epochs=1)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = subprocess.run(command(config, tmp_path / "ref"), env=env, capture_output=True, text=True,
                               timeout=600, check=False)
    assert reference.returncode == 0, reference.stderr[-3000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(config, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "step_1" / "last.pth").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed in step 1"
    assert (killed / "step_0" / "ckpt.pth").is_file() and not (killed / "step_1" / "ckpt.pth").exists()

    resumed = subprocess.run(command(config, killed, "--resume"), env=env, capture_output=True, text=True,
                             timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at epoch" in resumed.stdout
    ref = json.loads((tmp_path / "ref" / "results.json").read_text())
    assert json.loads((killed / "results.json").read_text()) == ref
