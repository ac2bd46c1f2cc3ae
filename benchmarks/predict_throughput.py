"""Cost of ``tools/predict.py``: end-to-end images/s beside the model-only rate, and peak memory.

End to end is reading, preprocessing, the model, maps, overlays, point-cloud PLYs and tables (what
``tools/predict.py`` does by default), measured again without the PLYs (``--no-clouds``) in the same
process, alternating with, without, without, with and keeping each mode's faster time (so a drifting
machine load cancels); model-only is the forward pass on the same batches, already in memory.

``python benchmarks/predict_throughput.py [--sizes synthetic,paper] [--images 16] [--batch-size 8] [--device cpu]``

Each size runs in a fresh process (so peak memory is its own): a run folder with a randomly
initialised model of that size's config (the cost does not depend on the weights) and made-up
thresholds, and a folder of ``--images`` scans in the MVTec 3D-AD layout at the input resolution.
``synthetic``: the Synthetic3D default (EfficientNet-Lite0, 128 px, 128 px inputs); ``paper``:
the MVTec 3D-AD config (EfficientNet-B4, 224 px, 800 × 800 inputs as in MVTec 3D-AD). Peak memory
is the peak resident set (VmHWM) minus the resident set before the model was built. Prints one
markdown table; "I/O share" is the part of the end-to-end time (with clouds) that is not the model's,
"clouds ×" the with-clouds rate over the without-clouds rate, "PLY MiB" the size of one input's PLY and
"PLY ms" the median time of writing one (:func:`utils.anomaly_cloud.write_anomaly_cloud` alone, timed on the
written maps: a direct cost, steadier than the ratio of two rates on a busy machine). Every point of the
made-up scans is valid, so the PLYs are as large as the input size allows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SIZES = {
    "synthetic": (REPO_ROOT / "experiments" / "Synthetic3D" / "10_0_with_0_step" / "config.yaml", 128),
    "paper": (REPO_ROOT / "experiments" / "MVTec_3DAD" / "10_0_with_0_step" / "config.yaml", 800),
}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _write_scans(folder: Path, count: int, side: int) -> None:
    """``count`` smooth RGB images and point clouds (a dome on a plane) in ``folder/good/{rgb,xyz}``."""
    import numpy as np

    from datasets.io import write_rgb, write_xyz

    grid = np.linspace(-1.0, 1.0, side, dtype=np.float32)
    x, y = np.meshgrid(grid, grid)
    rng = np.random.default_rng(0)
    for index in range(count):
        dome = np.clip(1.0 - (x**2 + y**2) * (1.5 + 0.1 * index), 0.0, None)
        z = 0.6 - 0.05 * dome
        write_xyz(folder / "good" / "xyz" / f"{index:03d}.tiff", np.stack([x * 0.1, y * 0.1, z], axis=2))
        rgb = np.stack([dome, 0.5 * (x + 1), 0.5 * (y + 1)], axis=2) + rng.normal(0, 0.02, (side, side, 3))
        write_rgb(folder / "good" / "rgb" / f"{index:03d}.png", (np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def _write_run(folder: Path, config: Path) -> None:
    """A run folder with one finished step of a random model of ``config`` and made-up thresholds."""
    import torch

    from engine.checkpoint import IncrementalState, architecture_fingerprint, save_checkpoint
    from models.model_helper import build_model
    from utils.config import config_to_yaml, load_config

    cfg = load_config(config, ["model.net.backbone.kwargs.pretrained=false"])
    classes = list(cfg["incremental"]["steps"][0]["classes"])
    cfg["incremental"]["steps"] = cfg["incremental"]["steps"][:1]
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(config_to_yaml(cfg))
    torch.manual_seed(0)
    model = build_model(cfg["model"], cfg["dataset"]["image_size"], len(classes))
    if model.router is not None:  # class adapters: made-up prototypes (routing costs the same)
        for index in range(len(classes)):
            model.router.set_prototype(index, torch.randn(model.router.prototypes.shape[1]))
    state = IncrementalState(classes, {}, {c: {"scores": [1.0]} for c in classes})
    payload = {"fingerprint": architecture_fingerprint(cfg), "step": 0, "state": state.to_dict(), "config": cfg,
               "model": model.state_dict()}
    save_checkpoint(folder / "step_0" / "ckpt.pth", payload)


def _end_to_end(run, scans: list, batch_size: int, output: Path, clouds: bool) -> float:
    """Images/s of predicting ``scans`` into a new folder ``output``, tables included."""
    from engine.calibration import DEFAULT_QUANTILE
    from engine.prediction_report import PredictionReport
    from engine.predictor import decision_rule, predict_scans

    start = time.perf_counter()
    report = PredictionReport(output, False)
    predict_scans(run, scans, report, batch_size, decision_rule(run, None, DEFAULT_QUANTILE), clouds)
    report.close()
    return len(scans) / (time.perf_counter() - start)


def _ply_ms(run, scans: list, output: Path) -> float:
    """Median milliseconds of writing one input's PLY from its cloud and the map ``output`` holds for it."""
    import numpy as np
    import tifffile

    from engine.predictor import load_scan
    from utils.anomaly_cloud import write_anomaly_cloud

    times = []
    for scan in scans:
        item = load_scan(run, scan, with_cloud=True)
        amap = tifffile.imread(output / "maps" / f"{scan.name}.tiff")
        start = time.perf_counter()
        write_anomaly_cloud(output / "timed.ply", item.xyz, amap, float(amap.max()) + 1e-6)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def measure(size: str, images: int, batch_size: int, device_name: str) -> dict:
    """One size in this process: end-to-end images/s with and without clouds, model-only images/s, peak memory."""
    import torch

    from datasets.scan_folder import find_scans
    from engine.calibration import DEFAULT_QUANTILE
    from engine.prediction_report import PredictionReport
    from engine.predictor import decision_rule, load_scan, load_trained_run, predict_scans, score_batch, stack_inputs

    config, side = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        _write_scans(tmp_path / "scans", images, side)
        _write_run(tmp_path / "run", config)
        base_rss = _status_kib("VmRSS")
        run = load_trained_run(tmp_path / "run", None, torch.device(device_name))
        scans = find_scans(tmp_path / "scans")
        predict_scans(run, scans[:batch_size], PredictionReport(tmp_path / "warm", False), batch_size,
                      decision_rule(run, None, DEFAULT_QUANTILE))
        rates: dict[bool, list[float]] = {True: [], False: []}
        for round_, clouds in enumerate((True, False, False, True)):
            rates[clouds].append(_end_to_end(run, scans, batch_size, tmp_path / f"out{round_}", clouds))
        plys = list((tmp_path / "out0" / "clouds").rglob("*.ply"))
        ply_mib = sum(p.stat().st_size for p in plys) / max(len(plys), 1) / 2**20
        ply_ms = _ply_ms(run, scans, tmp_path / "out0")
        loaded = [load_scan(run, scan) for scan in scans]
        start = time.perf_counter()
        for first in range(0, images, batch_size):
            chunk = loaded[first : first + batch_size]
            score_batch(run, stack_inputs(chunk))
        model_only = images / (time.perf_counter() - start)
    return {
        "size": size,
        "input_px": side,
        "model_px": run.model.image_size,
        "end_to_end_ips": max(rates[True]),
        "no_clouds_ips": max(rates[False]),
        "model_ips": model_only,
        "ply_mib": ply_mib,
        "ply_ms": ply_ms,
        "peak_mib": (_status_kib("VmHWM") - base_rss) / 1024,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    """Measure every size in its own process, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="synthetic,paper")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.images, args.batch_size, args.device)))
        return []
    rows = []
    for size in args.sizes.split(","):
        command = [sys.executable, __file__, "--worker", size, "--images", str(args.images), "--batch-size",
                   str(args.batch_size), "--device", args.device]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"size {size} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"device {args.device}, {args.images} images, batch {args.batch_size}\n")
    print("| size | input px | model px | end-to-end img/s | without clouds img/s | clouds × | PLY MiB | PLY ms | "
          "model-only img/s | I/O share | peak MiB (RSS) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = 1 - r["end_to_end_ips"] / r["model_ips"]
        print(f"| {r['size']} | {r['input_px']} | {r['model_px']} | {r['end_to_end_ips']:.1f} | "
              f"{r['no_clouds_ips']:.1f} | {r['end_to_end_ips'] / r['no_clouds_ips']:.2f} | {r['ply_mib']:.2f} | "
              f"{r['ply_ms']:.0f} | "
              f"{r['model_ips']:.1f} | {share:.0%} | {r['peak_mib']:.0f} |")
    return rows


if __name__ == "__main__":
    main()
