"""One Parts3D sample: its random conditions, the defect-free and the defective render, and the defect mask.

A sample's conditions (pose, light, texture phases, scanner and camera noise) are drawn first; the
defect-free render uses them, and a defective render reuses all of them, so the two differ only through the
defect. The mask marks the pixels of the part (or of added material) where the defect changes the noise-free
colour by at least 3 grey levels, the noise-free depth by at least 0.1 mm, whether a point is measured, or
what the pixel sees; outside the mask the defective sample keeps the defect-free bytes, so an RGB-only defect
leaves the point cloud identical and a depth-only defect leaves the image identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.parts3d.defects import CLEARANCE, NO_DEFECT, Defect, sample_defect
from datasets.parts3d.lighting import Light, irradiance
from datasets.parts3d.objects import SHAPES
from datasets.parts3d.raymarch import Surface, cast
from datasets.parts3d.rig import Rig
from datasets.parts3d.scanner import Scan, ScanNoise, measure
from datasets.parts3d.solid import PART_OBJECT, PART_TABLE, Pose, Solid
from datasets.parts3d.textures import CLASS_FINISHES, TABLE_FINISH

__all__ = ["PartsSample", "render_sample"]

_EXPOSURE = 0.8
_GAMMA = 2.2
_RGB_NOISE = 1.5  # grey levels
_TEXTURE_PHASES = 512.0  # texels: the photo is shifted by up to this much per sample
_RGB_TOLERANCE = 3.0  # grey levels (noise-free) a defect must change a pixel by to mark it
_DEPTH_TOLERANCE = 1e-4  # metres
_MIN_DEFECT_PIXELS = 3
_DEFECT_TRIES = 10


@dataclass(frozen=True, eq=False)
class PartsSample:
    """A rendered sample.

    Attributes:
        rgb: uint8 ``(H, W, 3)``.
        xyz: float32 ``(H, W, 3)`` camera frame, metres; ``(0, 0, 0)`` = no point.
        mask: bool ``(H, W)`` defect pixels (all ``False`` for a defect-free sample).
        part: int8 ``(H, W)`` what each pixel sees (``PART_TABLE`` / ``PART_OBJECT`` / ``PART_ADDED``).
    """

    rgb: np.ndarray
    xyz: np.ndarray
    mask: np.ndarray
    part: np.ndarray


@dataclass(frozen=True, eq=False)
class _Conditions:
    """Everything random about a sample except its defect."""

    pose: Pose
    light: Light
    part_phase: tuple[float, float]
    table_phase: tuple[float, float]
    scan_noise: ScanNoise
    rgb_noise: np.ndarray  # H×W×3 standard normal

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> _Conditions:
        """Draw, in a fixed order: pose, light, texture phases, scan noise, camera noise (``size × size``)."""
        pose, light = Pose.sample(rng), Light.sample(rng)
        part_phase, table_phase = rng.uniform(0.0, _TEXTURE_PHASES, size=(2, 2))
        scan_noise = ScanNoise.draw(rng, size)
        return cls(pose, light, tuple(part_phase), tuple(table_phase), scan_noise, rng.standard_normal((size, size, 3)))


@dataclass(frozen=True, eq=False)
class _Render:
    """One render and the noise-free quantities a defect is judged by."""

    surface: Surface
    level: np.ndarray  # H×W×3 noise-free grey levels
    depth: np.ndarray  # H×W noise-free measured range, metres
    height: np.ndarray  # H×W noise-free height above the table, metres
    scan: Scan
    rgb: np.ndarray


def _material(surface: Surface, clsname: str, conditions: _Conditions) -> np.ndarray:
    """RGB reflectance ``(H, W, 3)`` of the table and the part (added material is left black for its defect)."""
    albedo = np.zeros(surface.points.shape)
    table = surface.part == PART_TABLE
    points = surface.points[table]
    albedo[table] = TABLE_FINISH.albedo(((points[:, 0], points[:, 1], np.ones(len(points))),), conditions.table_phase)
    on_part = surface.part == PART_OBJECT
    pose = conditions.pose
    coordinates = SHAPES[clsname].surface_coordinates(
        pose.to_object(surface.points[on_part]), pose.direction_to_object(surface.normals[on_part])
    )
    albedo[on_part] = CLASS_FINISHES[clsname].albedo(coordinates, conditions.part_phase)
    return albedo


def _render(rig: Rig, clsname: str, conditions: _Conditions, defect: Defect) -> _Render:
    solid = defect.reshape(Solid(SHAPES[clsname], conditions.pose))
    surface = cast(rig, solid)
    material = defect.alter_material(surface, _material(surface, clsname, conditions))
    albedo = defect.paint(surface, material)
    light = irradiance(conditions.light, surface, solid)[..., None]
    level = 255.0 * np.clip(_EXPOSURE * albedo * light, 0.0, 1.0) ** (1.0 / _GAMMA)
    rgb = np.clip(np.rint(level + _RGB_NOISE * conditions.rgb_noise), 0, 255).astype(np.uint8)
    sink = defect.sink(surface)
    scan = measure(rig, surface, solid, material.mean(axis=-1), conditions.scan_noise, sink)
    depth = surface.ranges + sink
    height = rig.camera[2] + surface.rays[..., 2] * depth
    return _Render(surface, level, depth, height, scan, rgb)


def _defect_mask(good: _Render, bad: _Render) -> np.ndarray:
    """``(H, W)`` bool: pixels of the part (clear of the table) that the defect changed."""
    changed = np.abs(bad.level - good.level).max(axis=-1) >= _RGB_TOLERANCE
    changed |= np.abs(bad.depth - good.depth) >= _DEPTH_TOLERANCE
    changed |= bad.scan.valid != good.scan.valid
    changed |= bad.surface.part != good.surface.part
    return changed & (bad.surface.part != PART_TABLE) & (bad.height >= CLEARANCE)


def render_sample(
    clsname: str, size: int, rng: np.random.Generator, defect_kind: str | None = None
) -> tuple[PartsSample, PartsSample | None]:
    """Render one sample of a class, and the same sample with a defect.

    Args:
        clsname: one of :data:`~datasets.parts3d.objects.CLASS_NAMES`.
        size: image side in pixels.
        rng: the sample's generator (everything random is drawn from it).
        defect_kind: one of :data:`~datasets.parts3d.defects.DEFECT_KINDS`, or ``None``.

    Returns:
        ``(defect-free, defective)``; the defective sample is ``None`` when ``defect_kind`` is.

    Raises:
        ValueError: unknown class or defect kind.
        RuntimeError: no placement of the defect changed enough pixels (internal; not seen at size >= 32).
    """
    if clsname not in SHAPES:
        raise ValueError(f"unknown Parts3D class {clsname!r}; expected one of {sorted(SHAPES)}")
    rig = Rig.for_size(size)
    conditions = _Conditions.draw(rng, size)
    good = _render(rig, clsname, conditions, NO_DEFECT)
    clean = PartsSample(good.rgb, good.scan.xyz, np.zeros((size, size), dtype=bool), good.surface.part)
    if defect_kind is None:
        return clean, None
    for _ in range(_DEFECT_TRIES):
        defect = sample_defect(defect_kind, rng, good.surface, CLASS_FINISHES[clsname], rig.pitch)
        bad = _render(rig, clsname, conditions, defect)
        mask = _defect_mask(good, bad)
        if mask.sum() >= _MIN_DEFECT_PIXELS:
            keep = mask[..., None]
            part = np.where(mask, bad.surface.part, good.surface.part)
            return clean, PartsSample(np.where(keep, bad.rgb, good.rgb), np.where(keep, bad.scan.xyz, good.scan.xyz),
                                      mask, part)
    raise RuntimeError(f"no {defect_kind} placement changed {_MIN_DEFECT_PIXELS} pixels of {clsname} in "
                       f"{_DEFECT_TRIES} tries")
