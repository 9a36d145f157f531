"""Large synthetic grid hierarchies for benchmarks and tests.

`build_tessellation` lays a perturbed square lattice around the sample district's centre and
densifies every lattice edge into a wiggly polyline. Both neighbours of an edge take the very same
coordinate array, so the level-3 polygons share their edges exactly and tile the area with no gaps
or overlaps (a valid coverage). Level-2 grids are blocks of level-3 grids and level-1 grids blocks of
level-2 grids, each the coverage union of its children.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import shapely

from geo.model import Grid, child_code

logger = logging.getLogger(__name__)

CENTER = (113.85, 27.62)
MAX_CHILDREN = 999


def _block_size(n_cols: int, n_rows: int, target: int) -> int:
    """Side (in child cells) of the square blocks that group children into about `target` each."""
    side = max(1, round(math.sqrt(target)))
    while math.ceil(n_cols / side) * math.ceil(n_rows / side) > MAX_CHILDREN * MAX_CHILDREN:
        side += 1
    return side


def _edge_points(
    starts: np.ndarray, ends: np.ndarray, segments: int, amplitude: np.ndarray, waves: np.ndarray
) -> np.ndarray:
    """Densify edges start→end into `segments` pieces with a sine wiggle perpendicular to the edge."""
    t = np.linspace(0.0, 1.0, segments + 1)
    d = ends - starts
    normal = np.stack([-d[..., 1], d[..., 0]], axis=-1)
    offset = amplitude[..., None] * np.sin(np.pi * waves[..., None] * t)
    pts: np.ndarray = (
        starts[..., None, :]
        + d[..., None, :] * t[:, None]
        + normal[..., None, :] * offset[..., None]
    )
    pts[..., 0, :] = starts
    pts[..., -1, :] = ends
    return pts


def build_tessellation(
    n_l3: int,
    vertices: int = 64,
    seed: int = 0,
    *,
    cell_deg: float = 0.002,
    county: str = "430199",
    l3_per_l2: int = 16,
    l2_per_l1: int = 64,
) -> list[Grid]:
    """Build n_l3 level-3 grids (each with about `vertices` vertices) tiling exactly, plus L2/L1 parents."""
    if n_l3 < 1:
        raise ValueError(f"n_l3 {n_l3}: expected at least 1")
    if vertices < 4:
        raise ValueError(f"vertices {vertices}: expected at least 4")
    rng = np.random.default_rng(seed)
    n_cols = math.ceil(math.sqrt(n_l3))
    n_rows = math.ceil(n_l3 / n_cols)
    segments = max(1, vertices // 4)
    x0 = CENTER[0] - n_cols * cell_deg / 2
    y0 = CENTER[1] - n_rows * cell_deg / 2

    # lattice nodes, jittered by up to a fifth of a cell
    jj, ii = np.meshgrid(np.arange(n_rows + 1), np.arange(n_cols + 1), indexing="ij")
    nodes = np.stack([x0 + ii * cell_deg, y0 + jj * cell_deg], axis=-1).astype(float)
    jitter = rng.uniform(-0.2, 0.2, size=nodes.shape) * cell_deg
    nodes += jitter

    def wiggle(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Per-edge wiggle: amplitude (share of the edge length) and number of half waves."""
        return rng.uniform(-0.04, 0.04, size=shape), rng.integers(1, 3, size=shape).astype(float)

    amp_h, waves_h = wiggle((n_rows + 1, n_cols))
    amp_v, waves_v = wiggle((n_rows, n_cols + 1))
    # horizontal edges: node (j, i) → (j, i+1); vertical edges: node (j, i) → (j+1, i)
    horiz = _edge_points(nodes[:, :-1], nodes[:, 1:], segments, amp_h, waves_h)
    vert = _edge_points(nodes[:-1, :], nodes[1:, :], segments, amp_v, waves_v)

    # cells in row-major order from the north-west corner: row 0 is the northernmost
    order = np.arange(n_l3)
    row_from_north = order // n_cols
    col = order % n_cols
    j = n_rows - 1 - row_from_north  # lattice row counted from the south
    bottom = horiz[j, col][:, :-1]
    right = vert[j, col + 1][:, :-1]
    top = horiz[j + 1, col][:, ::-1][:, :-1]
    left = vert[j, col][:, ::-1][:, :-1]
    ring = np.concatenate([bottom, right, top, left], axis=1)
    ring = np.concatenate([ring, ring[:, :1]], axis=1)
    l3_geoms: np.ndarray = np.asarray(shapely.polygons(ring), dtype=object)

    # group: L2 = square blocks of L3 cells, L1 = square blocks of L2 blocks (row-major, north first)
    side2 = _block_size(n_cols, n_rows, l3_per_l2)
    b2_cols = math.ceil(n_cols / side2)
    b2_of = (row_from_north // side2) * b2_cols + col // side2
    b2_row, b2_col = np.divmod(np.arange(b2_of.max() + 1), b2_cols)
    side1 = _block_size(b2_cols, math.ceil(n_rows / side2), l2_per_l1)
    b1_cols = math.ceil(b2_cols / side1)
    b1_of_b2 = (b2_row // side1) * b1_cols + b2_col // side1
    # blocks that received no cell (the right end of a partial last row) are dropped
    used_b2 = np.unique(b2_of)
    used_b1 = np.unique(b1_of_b2[used_b2])
    if len(used_b1) > MAX_CHILDREN:
        raise ValueError(f"n_l3 {n_l3}: too many level-1 grids ({len(used_b1)}); raise l2_per_l1")

    l1_code: dict[int, str] = {}
    for n1, b1 in enumerate(used_b1, start=1):
        l1_code[int(b1)] = child_code(None, n1, county=county)
    l2_code: dict[int, str] = {}
    l2_count: dict[int, int] = {}
    for b2 in used_b2:
        b1 = int(b1_of_b2[b2])
        l2_count[b1] = l2_count.get(b1, 0) + 1
        l2_code[int(b2)] = child_code(l1_code[b1], l2_count[b1])
    l3_count: dict[int, int] = {}
    l3_codes: list[str] = []
    for b2 in b2_of.tolist():
        l3_count[b2] = l3_count.get(b2, 0) + 1
        l3_codes.append(child_code(l2_code[b2], l3_count[b2]))

    # parent geometries: exact unions over shared edges
    by_b2 = np.argsort(b2_of, kind="stable")
    splits = np.flatnonzero(np.diff(b2_of[by_b2])) + 1
    l2_geoms = {
        int(b2_of[idx[0]]): shapely.coverage_union_all(l3_geoms[idx])
        for idx in np.split(by_b2, splits)
    }
    l1_members: dict[int, list[int]] = {}
    for b2 in used_b2.tolist():
        l1_members.setdefault(int(b1_of_b2[b2]), []).append(b2)
    l1_geoms = {
        b1: shapely.coverage_union_all(np.array([l2_geoms[b] for b in members], dtype=object))
        for b1, members in l1_members.items()
    }

    grids: list[Grid] = []
    for b1, code in l1_code.items():
        grids.append(Grid(code, 1, f"Street {code[-3:]}", l1_geoms[b1], None))
    for b2, code in l2_code.items():
        grids.append(Grid(code, 2, f"Community {code[-6:-3]}-{code[-3:]}", l2_geoms[b2], code[:9]))
    for code, geom in zip(l3_codes, l3_geoms.tolist(), strict=True):
        grids.append(
            Grid(code, 3, f"Grid {code[-9:-6]}-{code[-6:-3]}-{code[-3:]}", geom, code[:12])
        )
    logger.info(
        "tessellation: %d L1, %d L2, %d L3 grids, %d vertices each",
        len(l1_code),
        len(l2_code),
        n_l3,
        ring.shape[1] - 1,
    )
    return grids
