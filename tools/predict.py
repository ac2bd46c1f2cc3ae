"""Apply a trained run to new scans: ``python tools/predict.py --run RUN_DIR --input PATH [...]``.

``PATH`` is one RGB image or a folder (searched recursively; MVTec 3D-AD layout or ``NAME.png`` beside
``NAME.tiff``, see :mod:`datasets.scan_folder`). Inputs must be prepared like the run's training data
(e.g. the same background removal, ``A_ori_dataset_split/MVTec_3D-AD/preprocess.py``); resizing and
normalisation are the run's own. Writes ``predictions.csv``/``.jsonl``, ``skipped.csv``, a float32
TIFF map and an overlay PNG per input under ``--output`` (default ``RUN_DIR/predictions/<input name>``).
An input is ``anomalous`` when its image score exceeds its predicted class's threshold: the
``--quantile`` of that class's held-out training-normal scores (:mod:`engine.calibration`), or ``--threshold``.

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
from engine.predictor import check_thresholds, load_trained_run, predict_scans  # noqa: E402
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
                        help=f"threshold = this quantile of the class's held-out normal scores ({DEFAULT_QUANTILE})")
    parser.add_argument("--threshold", type=float, default=None, help="one image-score threshold for every class")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing predictions folder")
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
        check_thresholds(run, args.threshold, args.quantile)
        scans = find_scans(args.input)
        output = Path(args.output) if args.output else Path(args.run) / "predictions" / Path(args.input).stem
        report = PredictionReport(output, args.overwrite)
        start = time.perf_counter()
        counts = predict_scans(run, scans, report, args.batch_size, args.threshold, args.quantile)
        report.close()
    except IUMADError as exc:
        return report_error(exc)
    rate = counts["predicted"] / max(time.perf_counter() - start, 1e-9)
    print(f"predicted {counts['predicted']} images with step {run.step}: {counts['anomalous']} anomalous, "
          f"{counts['skipped']} skipped, {rate:.1f} images/s -> {output}")
    if counts["skipped"]:
        print(f"skipped inputs and the reasons: {output / 'skipped.csv'}", file=sys.stderr)
    return 1 if counts["skipped"] else 0


if __name__ == "__main__":
    sys.exit(main())
