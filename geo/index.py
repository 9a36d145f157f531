"""The in-memory point index that routes alarms: point → (L1, L2, L3, building).

Only level-3 grids are searched; the level-2 and level-1 answers follow from the located level-3
grid's `parent_code` chain (grids nest exactly), or from its code's prefix (design §6) where a grid
has no parent_code, so imported grids with foreign codes route correctly too. Buildings have their own cell cover (geo.cellcover).
Both covers answer exactly: a point in a boundary cell is tested with GEOS. A grid holds the points
of its boundary too, so a point on the district's outline is inside, and a point on an edge shared
by two grids goes to the grid with the lower code, on every path, so replays give the same route.

Codes are reported as indices into the sorted arrays `l1_codes`, `l2_codes`, `l3_codes` and
`building_codes` (vectorized) or as a `Location` (one point). The index is read-only once built and
may be shared by threads. It expects valid polygons, as a validated grid version has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely

from geo.cellcover import CellCover, CoverStats
from geo.errors import GridSetError, InvalidCodeError
from geo.model import Building, Grid, parent_code

logger = logging.getLogger(__name__)

_POLYGONAL = {shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON}


@dataclass(frozen=True, slots=True)
class Location:
    """The grid chain and building that hold a point."""

    l1: str
    l2: str
    l3: str
    building: str | None = None


@dataclass(frozen=True, slots=True)
class LocatedArrays:
    """Vectorized locate result: per point, indices into the index's code arrays (-1: nothing)."""

    l1: np.ndarray
    l2: np.ndarray
    l3: np.ndarray
    building: np.ndarray

    def __len__(self) -> int:
        """Return the number of points."""
        return len(self.l3)


def _polygonal(geoms: np.ndarray, what: str, codes: Sequence[str]) -> None:
    """Raise GridSetError unless every geometry is a non-empty (Multi)Polygon."""
    types = shapely.get_type_id(geoms)
    bad = ~np.isin(types, [int(t) for t in _POLYGONAL]) | shapely.is_empty(geoms)
    if bad.any():
        code = codes[int(np.flatnonzero(bad)[0])]
        raise GridSetError(f"{what} {code}: geometry must be a non-empty Polygon or MultiPolygon")


class GridIndex:
    """Routes points to the grid chain and building of one grid version."""

    def __init__(
        self,
        grids: Iterable[Grid],
        buildings: Iterable[Building] = (),
        version: int = 0,
        *,
        cells_per_polygon: float = 64.0,
    ) -> None:
        """Index the level-3 grids (and buildings) of a grid version."""
        self.version = version
        grids = list(grids)
        self._grids = {g.code: g for g in grids}
        if len(self._grids) != len(grids):
            raise GridSetError("grids: duplicate grid codes")
        l3 = sorted((g for g in grids if g.level == 3), key=lambda g: g.code)
        if not l3:
            raise GridSetError("grids: no level-3 grid to index")
        self.l3_codes = np.array([g.code for g in l3])
        l2_of = [self._parent(g.code) for g in l3]
        l2 = sorted(set(l2_of))
        l1_of_l2 = {c: self._parent(c) for c in l2}
        l1 = sorted(set(l1_of_l2.values()))
        self.l2_codes = np.array(l2)
        self.l1_codes = np.array(l1)
        self.l3_parent = np.searchsorted(self.l2_codes, l2_of)
        self.l2_parent = np.searchsorted(self.l1_codes, [l1_of_l2[c] for c in l2])
        geoms = np.array([g.geometry for g in l3], dtype=object)
        _polygonal(geoms, "grid", self.l3_codes.tolist())
        self._cover = CellCover(geoms, cells_per_polygon=cells_per_polygon)
        self.bounds: tuple[float, float, float, float] = self._cover.bounds

        blds = sorted(buildings, key=lambda b: b.code)
        self.building_codes = np.array([b.code for b in blds], dtype=str)
        self._buildings: CellCover | None = None
        if blds:
            bgeoms = np.array([b.geometry for b in blds], dtype=object)
            _polygonal(bgeoms, "building", self.building_codes.tolist())
            self._buildings = CellCover(bgeoms, cells_per_polygon=16.0, min_cells=1 << 20)
        # chain lookups for the one-point path: one shared Location per level-3 grid
        self._l3_l = self.l3_codes.tolist()
        self._l2_of_l3 = [l2[i] for i in self.l3_parent.tolist()]
        self._l1_of_l3 = [l1[self.l2_parent[i]] for i in self.l3_parent.tolist()]
        self._bld_l = self.building_codes.tolist()
        self._loc_l = [
            Location(a, b, c)
            for a, b, c in zip(self._l1_of_l3, self._l2_of_l3, self._l3_l, strict=True)
        ]
        logger.info(
            "grid index v%d: %d L3 / %d L2 / %d L1 grids, %d buildings",
            version,
            len(l3),
            len(l2),
            len(l1),
            len(blds),
        )

    def _parent(self, code: str) -> str:
        """The parent's code: the grid's `parent_code`, else the design §6 code prefix."""
        g = self._grids.get(code)
        if g is not None and g.parent_code is not None:
            return g.parent_code
        try:
            parent = parent_code(code)
        except InvalidCodeError:
            parent = None
        if parent is None:
            raise GridSetError(f"grid {code}: no parent_code, and its code does not follow the design §6 rule")
        return parent

    def grid(self, code: str) -> Grid:
        """Return the indexed grid with this code (KeyError if unknown)."""
        return self._grids[code]

    def stats(self) -> dict[str, CoverStats | None]:
        """Return size figures of the grid and building covers."""
        return {
            "grids": self._cover.stats(),
            "buildings": self._buildings.stats() if self._buildings else None,
        }

    def locate(self, lon: float, lat: float) -> Location | None:
        """Return the route of one point, or None outside the district."""
        i = self._cover.locate(lon, lat)
        if i < 0:
            return None
        b = self._buildings.locate(lon, lat) if self._buildings is not None else -1
        if b < 0:
            return self._loc_l[i]
        return Location(self._l1_of_l3[i], self._l2_of_l3[i], self._l3_l[i], self._bld_l[b])

    def locate_many(self, lons: np.ndarray, lats: np.ndarray) -> LocatedArrays:
        """Locate many points at once; -1 where a point is in no grid (or no building)."""
        lons = np.asarray(lons, dtype=np.float64)
        lats = np.asarray(lats, dtype=np.float64)
        if lons.shape != lats.shape:
            raise ValueError(f"lons {lons.shape} and lats {lats.shape}: expected the same shape")
        lons, lats = lons.ravel(), lats.ravel()
        l3 = self._cover.locate_many(lons, lats)
        inside = l3 >= 0
        l2 = np.where(inside, self.l3_parent[np.where(inside, l3, 0)], -1)
        l1 = np.where(inside, self.l2_parent[np.where(inside, l2, 0)], -1)
        if self._buildings is not None:
            building = np.full(len(lons), -1, dtype=np.int64)
            idx = np.flatnonzero(inside)
            building[idx] = self._buildings.locate_many(lons[idx], lats[idx])
        else:
            building = np.full(len(lons), -1, dtype=np.int64)
        return LocatedArrays(l1=l1, l2=l2, l3=l3, building=building)

    def contains(self, lon: float, lat: float) -> bool:
        """Tell whether a point lies inside the district (in some level-3 grid)."""
        return self._cover.locate(lon, lat) >= 0

    def contains_many(self, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
        """Tell, per point, whether it lies inside the district."""
        return self._cover.locate_many(np.ravel(lons), np.ravel(lats)) >= 0

    def location_of(self, located: LocatedArrays, i: int) -> Location | None:
        """Turn entry i of a vectorized result into a Location (None when outside)."""
        l3 = int(located.l3[i])
        if l3 < 0:
            return None
        b = int(located.building[i])
        return Location(
            self._l1_of_l3[l3],
            self._l2_of_l3[l3],
            self._l3_l[l3],
            self._bld_l[b] if b >= 0 else None,
        )
