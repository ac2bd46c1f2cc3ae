"""Apply a trained run to new scans: ``python tools/predict.py --run RUN_DIR --input PATH [...]``.

``PATH`` is one RGB image or a folder (searched recursively; MVTec 3D-AD layout or ``NAME.png`` beside
``NAME.tiff``, see :mod:`datasets.scan_folder`). Inputs must be prepared like the run's training data
(e.g. the same background removal, ``A_ori_dataset_split/MVTec_3D-AD/preprocess.py``); resizing and
normalisation are the run's own. Writes ``predictions.csv``/``.jsonl``, ``skipped.csv``, a float32
TIFF map and an overlay PNG per input under ``--output`` (default ``RUN_DIR/predictions/<input name>``),
and for each input with a point cloud ``clouds/<name>.ply`` (unless ``--no-clouds``; column ``cloud``):
the cloud's valid points (not (0, 0, 0)) at its full resolution with their exact xyz in metres, each with
the value of the map upsampled bilinearly to that resolution (the TIFF's and the overlay's map) as the float
vertex property ``anomaly``, coloured as on the overlay (JET from 0, blue, to twice the decision threshold,
red; to the map's maximum for a threshold <= 0); binary little-endian, read by MeshLab, CloudCompare and
Open3D. Inputs without a cloud, or with no valid point in it, get no PLY (the latter with a warning).
An input is ``anomalous`` when its image score exceeds its predicted class's threshold
(:mod:`engine.calibration`): the conformal ``--quantile`` rank of the held-out training normals' scores (pooled
over the classes when the fused map is standardised per class), which keeps a false-alarm rate of at most
``1 − quantile`` on normals like them; with too few of them the highest score, and a warning with the rate it
keeps. Column ``false_alarm_rate`` and the summary line give that rate. ``--threshold`` sets one for all.

Exit code: 0 when every input was predicted, 1 when some were skipped (listed in skipped.csv), 2 on an
error that stops the run (missing run folder, no finished step, empty input folder, ...).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from datasets.scan_folder import find_scans  # noqa: E402
from engine.batch import allow_tf32  # noqa: E402
from engine.calibration import DEFAULT_QUANTILE  # noqa: E402
from engine.prediction_report import PredictionReport  # noqa: E402
from engine.predictor import decision_rule, load_trained_run, predict_scans  # noqa: E402
from utils.errors import ConfigError, IUMADError, report_error  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a tools/train_val.py output folder")
    parser.add_argument("--step", type=int, default=None, help="step to load (default: the last finished one)")
    parser.add_argument("--input", required=True, help="an RGB image or a folder of scans")
    parser.add_argument("--output", default=None, help="predictions folder (default RUN/predictions/<input name>)")
    parser.add_argument("--batch-size", type=int, default=8, help="inputs per forward pass")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE,
                        help=f"asked false-alarm rate = 1 - this, on normals like the held-out ({DEFAULT_QUANTILE})")
    parser.add_argument("--threshold", type=float, default=None, help="one image-score threshold for every class")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing predictions folder")
    parser.add_argument("--no-clouds", dest="clouds", action="store_false",
                        help="write no clouds/<name>.ply (point clouds coloured by the map)")
    return parser.parse_args(argv)


def _device(name: str | None) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 all predicted, 1 some skipped, 2 error)."""
    args = parse_args(argv)
    try:
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
        device = _device(args.device)
        allow_tf32(device)
        run = load_trained_run(args.run, args.step, device)
        rule = decision_rule(run, args.threshold, args.quantile)
        scans = find_scans(args.input)
        output = Path(args.output) if args.output else Path(args.run) / "predictions" / Path(args.input).stem
        report = PredictionReport(output, args.overwrite)
        start = time.perf_counter()
        counts = predict_scans(run, scans, report, args.batch_size, rule, args.clouds)
        report.close()
    except IUMADError as exc:
        return report_error(exc)
    rate = counts["predicted"] / max(time.perf_counter() - start, 1e-9)
    print(f"predicted {counts['predicted']} images with step {run.step}: {counts['anomalous']} anomalous, "
          f"{counts['skipped']} skipped, {rate:.1f} images/s -> {output}\n{rule.summary()}")
    shortfall = rule.shortfall()
    if shortfall:
        print(f"warning: {shortfall}", file=sys.stderr)
    if counts["skipped"]:
        print(f"skipped inputs and the reasons: {output / 'skipped.csv'}", file=sys.stderr)
    return 1 if counts["skipped"] else 0


if __name__ == "__main__":
    sys.exit(main())
