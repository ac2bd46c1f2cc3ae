"""Anomaly-map pictures: the evaluation's figures and the prediction overlays.

The evaluation (DESIGN.md §6) writes one PNG per test sample, RGB | depth | GT | map; ``tools/predict.py``
writes heat map over RGB | depth, with the decision in the corner. Drawn with OpenCV only; the figures
are written atomically through :mod:`utils.fileio`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from utils.fileio import atomic_write_bytes

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "anomaly_colours", "denormalize_image", "prediction_overlay",
    "save_anomaly_figure", "plot_step_curves",
]

LOGGER = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_GAP = 4  # pixels between panels
_TITLE_HEIGHT = 28
_OVERLAY_ALPHA = 0.5  # weight of the heat map over the RGB image


def _to_numpy(array: Any) -> np.ndarray:
    """Return a numpy view/copy of a numpy array or a (CPU or GPU) torch tensor."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def denormalize_image(
    image: Any, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """Undo the input normalisation of one image.

    Args:
        image: (3, H, W) float tensor or array, ``(rgb - mean) / std``.
        mean: per-channel mean of the normalisation, [0, 1] units (ImageNet's by default).
        std: per-channel std of the normalisation.

    Returns:
        (H, W, 3) uint8 RGB image.

    Raises:
        ValueError: ``image`` is not (3, H, W).
    """
    arr = _to_numpy(image).astype(np.float64)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"denormalize_image: expected a (3, H, W) image, found shape {arr.shape}")
    rgb = np.clip(arr * np.reshape(std, (3, 1, 1)) + np.reshape(mean, (3, 1, 1)), 0.0, 1.0)  # (3, H, W) in [0, 1]
    return np.rint(rgb * 255.0).astype(np.uint8).transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)


def _checked_rgb(rgb: Any) -> np.ndarray:
    """``rgb`` as an (H, W, 3) uint8 array; ValueError otherwise."""
    rgb_arr = _to_numpy(rgb)
    if rgb_arr.ndim != 3 or rgb_arr.shape[2] != 3 or rgb_arr.dtype != np.uint8:
        raise ValueError(f"rgb: expected an (H, W, 3) uint8 image, found shape {rgb_arr.shape} dtype {rgb_arr.dtype}")
    return rgb_arr


def _scale_to_uint8(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Map ``values`` linearly from [vmin, vmax] (default: finite min / max) to 0..255; NaN -> 0."""
    finite = np.isfinite(values)
    if vmin is None:
        vmin = float(values[finite].min()) if finite.any() else 0.0
    if vmax is None:
        vmax = float(values[finite].max()) if finite.any() else 1.0
    span = vmax - vmin if vmax > vmin else 1.0
    scaled = np.clip((np.where(finite, values, vmin) - vmin) / span, 0.0, 1.0)
    return np.rint(scaled * 255.0).astype(np.uint8)


def _depth_panel(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) or (H, W, 3) depth, float or uint8 -> (H, W, 3) uint8 BGR greyscale picture."""
    if depth.shape[:2] != (height, width) or depth.ndim not in (2, 3) or (depth.ndim == 3 and depth.shape[2] != 3):
        raise ValueError(f"depth: expected shape ({height}, {width}) or ({height}, {width}, 3), found {depth.shape}")
    picture = depth if depth.dtype == np.uint8 else _scale_to_uint8(depth.astype(np.float64))
    if picture.ndim == 2:
        picture = np.repeat(picture[:, :, None], 3, axis=2)
    return np.ascontiguousarray(picture[:, :, ::-1])


def _title_strip(text: str, width: int) -> np.ndarray:
    """A black (_TITLE_HEIGHT, width, 3) strip with ``text`` in white (non-ASCII shown as '?')."""
    strip = np.zeros((_TITLE_HEIGHT, width, 3), dtype=np.uint8)
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    cv2.putText(
        strip, ascii_text, (6, _TITLE_HEIGHT - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
    )
    return strip


def save_anomaly_figure(
    path: str | os.PathLike[str],
    rgb: Any,
    depth: Any,
    gt: Any,
    amap: Any,
    title: str,
    vmin: float | None = None,
    vmax: float | None = None,
    overlay: bool = True,
) -> Path:
    """Write one PNG with the panels RGB | depth | GT | anomaly map (no depth panel without depth) and a title line.

    The map is drawn with the JET colour map, scaled from ``vmin`` (blue) to ``vmax`` (red); pass
    the same ``vmin``/``vmax`` for every sample of a class to make their pictures comparable
    (default: this map's own min / max). The range is printed after the title.

    Args:
        path: destination ``.png`` file (parent folders are created; written atomically).
        rgb: (H, W, 3) uint8 RGB image (e.g. from :func:`denormalize_image`).
        depth: (H, W) or (H, W, 3) depth image, float (scaled to its finite min / max, NaN black)
            or uint8 (drawn as is); ``None`` for an RGB-only sample.
        gt: (H, W) ground-truth mask, 0/1 or bool.
        amap: (h, w) float anomaly map; bilinearly resized to (H, W) when the sizes differ.
        title: text of the title line, e.g. ``"bagel/test/crack/000.png  score 0.83"``.
        vmin: map value drawn as the coldest colour.
        vmax: map value drawn as the hottest colour.
        overlay: blend the heat map over the RGB image (True) or draw it alone (False).

    Returns:
        The written path.

    Raises:
        ValueError: wrong shapes or dtypes, ``vmin >= vmax``, or a path not ending in ``.png``.
    """
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ValueError(f"save_anomaly_figure: expected a .png path, found {str(target)!r}")
    rgb_arr = _checked_rgb(rgb)
    gt_arr, map_arr = _to_numpy(gt), _to_numpy(amap).astype(np.float32)
    height, width = rgb_arr.shape[:2]
    if gt_arr.shape != (height, width):
        raise ValueError(f"gt: expected shape ({height}, {width}) like rgb, found {gt_arr.shape}")
    if map_arr.ndim != 2 or 0 in map_arr.shape or not np.isfinite(map_arr).all():
        raise ValueError(f"amap: expected a non-empty finite (h, w) map, found shape {map_arr.shape}")
    if vmin is not None and vmax is not None and not vmin < vmax:
        raise ValueError(f"expected vmin < vmax, found vmin={vmin} vmax={vmax}")
    if map_arr.shape != (height, width):
        map_arr = cv2.resize(map_arr, (width, height), interpolation=cv2.INTER_LINEAR)

    bgr = np.ascontiguousarray(rgb_arr[:, :, ::-1])
    gt_bgr = np.repeat(np.where(gt_arr != 0, 255, 0).astype(np.uint8)[:, :, None], 3, axis=2)
    low = float(map_arr.min()) if vmin is None else float(vmin)
    high = float(map_arr.max()) if vmax is None else float(vmax)
    heat = cv2.applyColorMap(_scale_to_uint8(map_arr.astype(np.float64), low, high), cv2.COLORMAP_JET)
    if overlay:
        heat = cv2.addWeighted(bgr, 1.0 - _OVERLAY_ALPHA, heat, _OVERLAY_ALPHA, 0.0)

    gap = np.full((height, _GAP, 3), 255, dtype=np.uint8)
    depth_panels = [] if depth is None else [_depth_panel(_to_numpy(depth), height, width), gap]
    row = np.concatenate([bgr, gap, *depth_panels, gt_bgr, gap, heat], axis=1)  # (H, 4W + 3 gaps, 3) with depth
    canvas = np.concatenate([_title_strip(f"{title}   map [{low:.3g}, {high:.3g}]", row.shape[1]), row], axis=0)
    ok, encoded = cv2.imencode(".png", canvas)
    if not ok:
        raise ValueError(f"save_anomaly_figure: OpenCV could not encode a PNG of shape {canvas.shape}")
    LOGGER.debug("writing anomaly figure %s", target)
    return atomic_write_bytes(target, encoded.tobytes())


def anomaly_colours(values: Any, vmax: float) -> np.ndarray:
    """The colours of anomaly-map values on the prediction overlay's scale: JET from 0 (blue) to ``vmax`` (red).

    Values are clipped to [0, ``vmax``] and quantised to 256 levels, exactly as :func:`prediction_overlay`
    draws them (NaN is drawn as 0), so a point cloud coloured with this matches the overlay picture.

    Args:
        values: float map values of any shape ``(...)``, e.g. an ``(H, W)`` map or ``(N,)`` per-point values.
        vmax: map value drawn as the hottest colour.

    Returns:
        ``(..., 3)`` uint8 RGB colours.

    Raises:
        ValueError: ``vmax`` not positive.
    """
    if not vmax > 0:
        raise ValueError(f"vmax must be positive, found {vmax}")
    flat = _to_numpy(values).astype(np.float64)
    levels = _scale_to_uint8(flat.reshape(-1, 1), 0.0, vmax)  # (N, 1): applyColorMap wants an image
    bgr = cv2.applyColorMap(levels, cv2.COLORMAP_JET)  # (N, 1, 3) BGR
    return np.ascontiguousarray(bgr[:, 0, ::-1]).reshape(*flat.shape, 3)


def _corner_label(image: np.ndarray, text: str, colour: tuple[int, int, int]) -> None:
    """Draw ``text`` on a filled black box in the top-left corner of a BGR ``image`` (in place)."""
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    scale = max(0.4, image.shape[1] / 640)
    while scale > 0.25 and cv2.getTextSize(ascii_text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > image.shape[1] - 8:
        scale *= 0.9  # shrink until the text fits the image width
    (width, height), base = cv2.getTextSize(ascii_text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (0, 0), (width + 8, height + base + 8), (0, 0, 0), thickness=-1)
    cv2.putText(image, ascii_text, (4, height + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def prediction_overlay(rgb: Any, depth: Any | None, amap: Any, label: str, anomalous: bool, vmax: float) -> bytes:
    """PNG bytes of one prediction: the heat map over the RGB image, the depth image beside it.

    Args:
        rgb: (H, W, 3) uint8 RGB image at the input's resolution.
        depth: (h, w) float depth image (resized to (H, W), nearest) or ``None`` for an RGB-only model.
        amap: (H, W) float anomaly map at the input's resolution.
        label: text drawn in the top-left corner (decision and score), red when ``anomalous``, green otherwise.
        anomalous: the decision.
        vmax: map value drawn as the hottest colour (0 is the coldest, :func:`anomaly_colours`); e.g. twice
            the threshold.

    Raises:
        ValueError: wrong shapes, or ``vmax`` not positive.
    """
    rgb_arr, map_arr = _checked_rgb(rgb), _to_numpy(amap)
    height, width = rgb_arr.shape[:2]
    if map_arr.shape != (height, width):
        raise ValueError(f"amap: expected shape ({height}, {width}) like rgb, found {map_arr.shape}")
    bgr = np.ascontiguousarray(rgb_arr[:, :, ::-1])
    heat = np.ascontiguousarray(anomaly_colours(map_arr, vmax)[:, :, ::-1])  # RGB -> BGR
    panels = [cv2.addWeighted(bgr, 1.0 - _OVERLAY_ALPHA, heat, _OVERLAY_ALPHA, 0.0)]
    if depth is not None:
        depth_arr = cv2.resize(_to_numpy(depth).astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
        panels += [np.full((height, _GAP, 3), 255, dtype=np.uint8), _depth_panel(depth_arr, height, width)]
    _corner_label(panels[0], label, (0, 0, 255) if anomalous else (0, 200, 0))
    ok, encoded = cv2.imencode(".png", np.concatenate(panels, axis=1))
    if not ok:
        raise ValueError("prediction_overlay: OpenCV could not encode the PNG")
    return encoded.tobytes()


def plot_step_curves(table: dict[str, dict[str, dict]], path: Path) -> None:
    """A PNG of the mean I-AUROC over the classes seen after each step: one panel per modality, one line per row.

    Args:
        table: row (variant) → modality → results with ``steps`` (``results.json`` or a seed summary).
        path: the ``.png`` to write (atomically).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modalities = sorted({m for cells in table.values() for m in cells})
    fig, axes = plt.subplots(1, len(modalities), figsize=(5 * len(modalities), 4), squeeze=False)
    for ax, modality in zip(axes[0], modalities):
        for variant, cells in table.items():
            if modality in cells:
                steps = cells[modality]["steps"]
                ax.plot([s["step"] for s in steps], [100 * (s["mean"].get("i_auroc") or 0) for s in steps],
                        marker="o", label=variant)
        ax.set(title=modality, xlabel="step", ylabel="mean I-AUROC (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
