"""The sample district's local metric frame and WGS84 coordinate lattice.

Shapes are drawn in metres (x east, y north from CENTER) and converted to WGS84 lon/lat with an
equirectangular projection; over 12 km its distortion is well below a metre, which is fine for
synthetic data. Stored coordinates are rounded to a 1e-7° lattice (about 1 cm).
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

CENTER = (113.85, 27.62)  # lon, lat
PRECISION = 1e-7  # degrees
_R = 6_371_008.8
M_PER_DEG_LAT = math.pi * _R / 180.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(CENTER[1]))


def _to_deg(c: np.ndarray) -> np.ndarray:
    """Metres → lon/lat, coordinate array version."""
    return np.column_stack(
        [CENTER[0] + c[:, 0] / M_PER_DEG_LON, CENTER[1] + c[:, 1] / M_PER_DEG_LAT]
    )


def _to_m(c: np.ndarray) -> np.ndarray:
    """Lon/lat → metres, coordinate array version."""
    return np.column_stack(
        [(c[:, 0] - CENTER[0]) * M_PER_DEG_LON, (c[:, 1] - CENTER[1]) * M_PER_DEG_LAT]
    )


def to_degrees(geom: BaseGeometry) -> BaseGeometry:
    """Convert a geometry from the local metric frame to WGS84 lon/lat."""
    return shapely.transform(geom, _to_deg)


def to_metres(geom: BaseGeometry) -> BaseGeometry:
    """Convert a WGS84 lon/lat geometry to the local metric frame (inverse of to_degrees)."""
    return shapely.transform(geom, _to_m)


def snap(geom: BaseGeometry) -> BaseGeometry:
    """Round a WGS84 geometry's coordinates to the 1e-7° lattice."""
    return shapely.transform(geom, lambda c: np.round(c / PRECISION) * PRECISION)


def metres_to_degrees_point(x: float, y: float) -> tuple[float, float]:
    """Convert one local point to a (lon, lat) pair rounded to the lattice."""
    lon = CENTER[0] + x / M_PER_DEG_LON
    lat = CENTER[1] + y / M_PER_DEG_LAT
    return (round(lon / PRECISION) * PRECISION, round(lat / PRECISION) * PRECISION)
