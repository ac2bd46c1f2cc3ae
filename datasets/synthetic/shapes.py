"""The Synthetic3D shape library: each class is a height field with a texture pattern and two colours.

A shape maps object coordinates ``(p, q)`` in metres to ``(height m, inside bool, pattern in [0, 1])``;
:data:`CLASS_LOOKS` gives each class its shape and the colours where the pattern is 0 and 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["CLASS_NAMES", "CLASS_LOOKS", "Shape"]

#: Sorted = incremental order. In the 6-4 setting the base step is ball … pyramid and the increment ring, star,
#: washer, wave; the round look-alikes (ball | ring, bowl | washer) fall on both sides of that cut.
CLASS_NAMES = ("ball", "bowl", "box", "capsule", "cone", "pyramid", "ring", "star", "washer", "wave")

Shape = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _ball(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    radius, cell = 0.036, 0.012
    r2 = p * p + q * q
    inside = r2 < radius**2
    height = np.where(inside, radius + np.sqrt(np.maximum(radius**2 - r2, 0.0)), 0.0)
    dp, dq = np.mod(p, cell) - cell / 2, np.mod(q, cell) - cell / 2
    return height, inside, (dp * dp + dq * dq < 0.0035**2).astype(float)


def _bowl(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    outer, inner, rim_height, floor = 0.045, 0.037, 0.028, 0.006
    r = np.hypot(p, q)
    basin = floor + (rim_height - floor) * (r / inner) ** 2
    rim = rim_height * np.sqrt(np.clip(1.0 - ((r - inner) / (outer - inner)) ** 2, 0.0, 1.0))
    inside = r < outer
    height = np.where(r < inner, basin, np.where(inside, rim, 0.0))
    return height, inside, (np.sin(2 * np.pi * r / 0.01) > 0).astype(float)


def _box(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half_p, half_q, top, bevel = 0.040, 0.027, 0.030, 0.004
    edge = np.minimum(half_p - np.abs(p), half_q - np.abs(q))
    inside = edge > 0
    height = np.where(inside, top * np.sqrt(np.clip(edge / bevel, 0.0, 1.0)), 0.0)
    checker = (np.floor(p / 0.01) + np.floor(q / 0.01)) % 2
    return height, inside, checker


def _capsule(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half_length, radius = 0.028, 0.016
    d2 = np.maximum(np.abs(p) - half_length, 0.0) ** 2 + q * q
    inside = d2 < radius**2
    height = np.where(inside, radius + np.sqrt(np.maximum(radius**2 - d2, 0.0)), 0.0)
    return height, inside, (p > 0).astype(float)


def _cone(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    radius, top = 0.042, 0.045
    r = np.hypot(p, q)
    inside = r < radius
    height = np.where(inside, top * (1.0 - r / radius), 0.0)
    sectors = np.floor((np.arctan2(q, p) + np.pi) / (np.pi / 4)) % 2
    return height, inside, sectors


def _pyramid(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half, top, pitch, line = 0.038, 0.040, 0.009, 0.0018
    m = np.maximum(np.abs(p), np.abs(q))
    inside = m < half
    height = np.where(inside, top * (1.0 - m / half), 0.0)
    grid = (np.mod(p, pitch) < line) | (np.mod(q, pitch) < line)
    return height, inside, grid.astype(float)


def _ring(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    major, minor = 0.030, 0.011
    d2 = (np.hypot(p, q) - major) ** 2
    inside = d2 < minor**2
    height = np.where(inside, minor + np.sqrt(np.maximum(minor**2 - d2, 0.0)), 0.0)
    return height, inside, (np.sin(12 * np.arctan2(q, p)) > 0).astype(float)


def _star(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    outer, inner, prism, apex = 0.046, 0.022, 0.010, 0.014
    period = 2 * np.pi / 5
    t = np.mod(np.arctan2(q, p), period) / period
    star_radius = inner + (outer - inner) * np.abs(2 * t - 1)
    r = np.hypot(p, q)
    inside = r < star_radius
    height = np.where(inside, prism + apex * (1.0 - r / star_radius), 0.0)
    return height, inside, np.clip(r / star_radius, 0.0, 1.0)


def _washer(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    outer, hole, thickness, round_off, bolt_radius = 0.042, 0.016, 0.008, 0.003, 0.029
    r = np.hypot(p, q)
    edge = np.minimum(r - hole, outer - r)
    inside = edge > 0
    height = np.where(inside, thickness * np.sqrt(np.clip(edge / round_off, 0.0, 1.0)), 0.0)
    nearest = np.round(np.arctan2(q, p) / (np.pi / 3)) * (np.pi / 3)
    dots = (p - bolt_radius * np.cos(nearest)) ** 2 + (q - bolt_radius * np.sin(nearest)) ** 2 < 0.0045**2
    return height, inside, dots.astype(float)


def _wave(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half, base, amplitude = 0.042, 0.014, 0.007
    inside = np.maximum(np.abs(p), np.abs(q)) < half
    surface = base + amplitude * np.sin(2 * np.pi * p / 0.028) * np.cos(2 * np.pi * q / 0.034)
    height = np.where(inside, surface, 0.0)
    return height, inside, np.floor(surface / 0.0035) % 2


#: class -> (shape, colour where pattern = 0, colour where pattern = 1)
CLASS_LOOKS: dict[str, tuple[Shape, tuple[float, float, float], tuple[float, float, float]]] = {
    "ball": (_ball, (0.85, 0.20, 0.15), (0.95, 0.93, 0.88)),
    "bowl": (_bowl, (0.20, 0.35, 0.80), (0.60, 0.75, 0.95)),
    "box": (_box, (0.72, 0.56, 0.35), (0.45, 0.30, 0.15)),
    "capsule": (_capsule, (0.95, 0.85, 0.20), (0.50, 0.20, 0.60)),
    "cone": (_cone, (0.95, 0.55, 0.10), (0.97, 0.97, 0.95)),
    "pyramid": (_pyramid, (0.85, 0.75, 0.50), (0.30, 0.30, 0.30)),
    "ring": (_ring, (0.20, 0.70, 0.30), (0.08, 0.38, 0.15)),
    "star": (_star, (0.97, 0.82, 0.30), (0.80, 0.25, 0.20)),
    "washer": (_washer, (0.66, 0.68, 0.71), (0.30, 0.31, 0.34)),
    "wave": (_wave, (0.10, 0.58, 0.60), (0.82, 0.90, 0.85)),
}
assert tuple(sorted(CLASS_LOOKS)) == CLASS_NAMES
