"""Reading and writing planners' grid files (GeoJSON, GeoPackage, zipped Shapefile) via pyogrio.

A grid file holds polygon features with the properties `code`, `level` (1..3), `name` and optionally
`parent_code` (names matched case-insensitively; the Shapefile-truncated `parent_cod` is accepted too),
either one level per file (read with `level=N`) or all levels in one layer or in several layers.
Coordinates may be in any CRS pyproj knows, or in GCJ-02 (`crs="GCJ-02"`); grids are always returned
in WGS84 lon/lat. Codes are not checked against the §6 coding rule here and invalid polygons are kept
as read: validating a draft reports both. Files are read in chunks so big files use bounded memory.
See docs/grid-files.md for the planners' description of the format.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely
from pyproj.exceptions import CRSError

from geo.errors import GridFileError
from geo.gcj02 import transform_geometry
from geo.model import Grid

Progress = Callable[[int, int], None]

GCJ02 = "GCJ-02"
WGS84 = "EPSG:4326"
LEVELS = (1, 2, 3)
_ALIASES = {
    "code": ("code",),
    "level": ("level",),
    "name": ("name",),
    "parent_code": ("parent_code", "parent_cod", "parentcode"),
}
_FLOAT_DIGITS = re.compile(r"^(\d+)\.0*$")
_POLYGON = int(shapely.GeometryType.POLYGON)
_MULTIPOLYGON = int(shapely.GeometryType.MULTIPOLYGON)
_WGS84_CRS = pyproj.CRS.from_epsg(4326)
_SEQUENTIAL_DRIVERS = {"GeoJSON", "GeoJSONSeq", "ESRIJSON", "TopoJSON"}


@dataclass(frozen=True, slots=True)
class GridFile:
    """The grids read from one file, in WGS84, and where they came from."""

    grids: list[Grid]
    source_crs: str  # e.g. "EPSG:4547" or "GCJ-02"
    path: str
    layers: list[str]
    feature_count: int


@dataclass(frozen=True, slots=True)
class _Source:
    """One layer to read: the dataset path pyogrio opens and the layer name in it."""

    dataset: str
    layer: str | int | None
    name: str


# --------------------------------------------------------------------------------------------- CRS


def _crs_name(crs: pyproj.CRS) -> str:
    """Return a short name for a CRS: "EPSG:4326" for WGS84 lon/lat, "AUTH:CODE" if known, else WKT."""
    if crs.equals(_WGS84_CRS, ignore_axis_order=True):
        return WGS84
    authority = crs.to_authority(min_confidence=70)
    return f"{authority[0]}:{authority[1]}" if authority else crs.to_wkt()


def _parse_crs(crs: str | pyproj.CRS, where: str) -> pyproj.CRS | str:
    """Return GCJ02 for the GCJ-02 names, else the pyproj CRS; GridFileError if pyproj does not know it."""
    if isinstance(crs, str) and crs.strip().lower() in ("gcj-02", "gcj02"):
        return GCJ02
    try:
        return pyproj.CRS.from_user_input(crs)
    except CRSError as exc:
        raise GridFileError(
            f"{where}: CRS {crs!r} is not known; expected an EPSG code such as EPSG:4326, EPSG:4490 or "
            f"EPSG:4547, another CRS pyproj knows, or GCJ-02"
        ) from exc


def _is_lonlat(geoms: np.ndarray) -> bool:
    """Tell whether all coordinates lie in the lon/lat range (-180..180, -90..90)."""
    bounds = shapely.bounds(geoms)
    bounds = bounds[~np.isnan(bounds).any(axis=1)]
    if not len(bounds):
        return True
    return bool(
        bounds[:, 0].min() >= -180 and bounds[:, 2].max() <= 180
        and bounds[:, 1].min() >= -90 and bounds[:, 3].max() <= 90
    )


def _to_wgs84_func(source: pyproj.CRS | str) -> Callable[[np.ndarray], np.ndarray] | None:
    """Return a function converting an array of geometries to WGS84 (None: already WGS84)."""
    if isinstance(source, str):  # GCJ02; never compare a pyproj.CRS with a string (slow parse)
        return lambda geoms: transform_geometry(geoms, to="wgs84")
    assert isinstance(source, pyproj.CRS)
    if source.equals(_WGS84_CRS, ignore_axis_order=True):
        return None
    transformer = pyproj.Transformer.from_crs(source, _WGS84_CRS, always_xy=True)

    def coords(xy: np.ndarray) -> np.ndarray:
        out = np.array(xy, dtype=float, copy=True)
        if len(out):
            out[:, 0], out[:, 1] = transformer.transform(out[:, 0], out[:, 1], errcheck=True)
        return out

    return lambda geoms: shapely.transform(geoms, coords, include_z=None)


# ---------------------------------------------------------------------------------------- sources


def _sources(path: Path, layer: str | None) -> list[_Source]:
    """List the layers to read: every polygon layer of the file, or the one named `layer`."""
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if m.lower().endswith(".shp")]
        except zipfile.BadZipFile as exc:
            raise GridFileError(f"{path}: not a readable zip file") from exc
        if not members:
            raise GridFileError(f"{path}: expected a zipped Shapefile (a .shp inside the zip), found none")
        found = [_Source(f"/vsizip/{path.resolve()}/{m}", None, Path(m).stem) for m in sorted(members)]
    else:
        try:
            listed = pyogrio.list_layers(str(path))
        except Exception as exc:  # pyogrio raises DataSourceError and friends
            raise GridFileError(f"{path}: cannot open as a GeoJSON, GeoPackage or Shapefile: {exc}") from exc
        found = [_Source(str(path), str(name), str(name)) for name, gtype in listed if gtype is not None]
        if not found:
            raise GridFileError(f"{path}: expected at least one layer with geometries, found none")
    if layer is None:
        return found
    chosen = [s for s in found if s.name == layer]
    if not chosen:
        names = ", ".join(repr(s.name) for s in found)
        raise GridFileError(f"{path}: no layer {layer!r}; expected one of {names}")
    return chosen


def _columns(fields: Iterable[str]) -> dict[str, str]:
    """Map the canonical property names to the file's field names (case-insensitive)."""
    by_lower = {f.lower(): f for f in fields}
    found = {}
    for key, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in by_lower:
                found[key] = by_lower[alias]
                break
    return found


# ------------------------------------------------------------------------------------- properties


def _missing(value: Any) -> bool:
    """Tell whether a property value is absent (None, NaN, NaT or blank text)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))  # NaN, NaT, pandas NA


def _code_text(value: Any) -> str | None:
    """Turn a code property into its digit string (123 / 123.0 / "123.0" → "123"); None if absent.

    Raises ValueError for a number that is not a whole number.
    """
    if _missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        raise ValueError("a boolean")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"the non-whole number {value!r}")
        return str(int(number))
    text = str(value).strip()
    match = _FLOAT_DIGITS.match(text)
    return match.group(1) if match else text


def _level_value(value: Any) -> int | None:
    """Turn a level property into an int; None if absent, ValueError if not a whole number."""
    if _missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        raise ValueError
    if isinstance(value, numbers.Real):
        number = float(value)
    else:
        number = float(str(value).strip())
    if not number.is_integer():
        raise ValueError
    return int(number)


# ------------------------------------------------------------------------------------------- read


class _Reader:
    """Turns the chunks of one file into Grids, with error messages naming the file and feature."""

    def __init__(self, path: Path, level: int | None) -> None:
        self.path = path
        self.level = level

    def where(self, source: _Source, index: int, multi: bool) -> str:
        """Name a feature for an error message."""
        layer = f", layer {source.name!r}" if multi else ""
        return f"{self.path}{layer}, feature {index}"

    def level_of(self, raw: Any, where: str) -> int:
        """Return a feature's level, checked against 1..3 and the single-level import."""
        expected = f"{self.level} (importing level {self.level} only)" if self.level else "1, 2 or 3"
        try:
            value = _level_value(raw)
        except ValueError:
            raise GridFileError(f"{where}: level {raw!r} is not valid; expected {expected}") from None
        if value is None:
            if self.level is None:
                raise GridFileError(
                    f"{where}: property 'level' is missing; expected 1, 2 or 3 "
                    f"(or import a single level with level=N)"
                )
            return self.level
        if value not in LEVELS or (self.level is not None and value != self.level):
            raise GridFileError(f"{where}: level {raw!r} is not valid; expected {expected}")
        return value

    def geometries(self, geoms: np.ndarray, source: _Source, first: int, multi: bool) -> np.ndarray:
        """Check that every geometry is a non-empty (Multi)Polygon; unwrap single-part MultiPolygons."""
        types = shapely.get_type_id(geoms)
        bad = ~np.isin(types, [_POLYGON, _MULTIPOLYGON]) | shapely.is_empty(geoms)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "no geometry" if geoms[i] is None else f"a {geoms[i].geom_type}" + (
                " (empty)" if geoms[i].is_empty else ""
            )
            where = self.where(source, first + i, multi)
            raise GridFileError(f"{where}: geometry is {what}; expected a Polygon or MultiPolygon")
        geoms = shapely.force_2d(geoms)
        single = (types == _MULTIPOLYGON) & (shapely.get_num_geometries(geoms) == 1)
        if single.any():
            geoms[single] = shapely.get_geometry(geoms[single], 0)
        return geoms

    def grids(
        self,
        frame: gpd.GeoDataFrame,
        geoms: np.ndarray,
        columns: dict[str, str],
        source: _Source,
        first: int,
        multi: bool,
    ) -> list[Grid]:
        """Turn one chunk's properties and its (WGS84) geometries into Grids."""
        n = len(frame)
        none = [None] * n
        codes = frame[columns["code"]].tolist() if "code" in columns else none
        levels = frame[columns["level"]].tolist() if "level" in columns else none
        names = frame[columns["name"]].tolist() if "name" in columns else none
        parents = frame[columns["parent_code"]].tolist() if "parent_code" in columns else none
        out = []
        for i in range(n):
            where = self.where(source, first + i, multi)
            try:
                code = _code_text(codes[i])
            except ValueError as exc:
                raise GridFileError(f"{where}: code is {exc}; expected a string of digits") from None
            if code is None:
                raise GridFileError(f"{where}: property 'code' is missing; expected a grid code (digits)")
            try:
                parent = _code_text(parents[i])
            except ValueError as exc:
                raise GridFileError(f"{where}: parent_code is {exc}; expected a string of digits") from None
            name = "" if _missing(names[i]) else str(names[i]).strip()
            out.append(Grid(code, self.level_of(levels[i], where), name, geoms[i], parent))
        return out


def read_grid_file(
    path: str | os.PathLike[str],
    *,
    crs: str | pyproj.CRS | None = None,
    level: int | None = None,
    layer: str | None = None,
    progress: Progress | None = None,
    chunk_size: int = 10_000,
) -> GridFile:
    """Read a planner's grid file (GeoJSON, GeoPackage or zipped Shapefile) into WGS84 grids.

    `crs` overrides the CRS the file declares (any pyproj CRS string, or "GCJ-02"); without either,
    lon/lat coordinates are taken as EPSG:4326 and anything else is refused. `level=N` reads a file
    of level N only (features without a level get N). `layer` picks one layer of a multi-layer file,
    otherwise all its polygon layers are read. `progress(done, total)` is called after each chunk of
    `chunk_size` features. Raises GridFileError naming the file (and feature) on any problem.
    """
    path = Path(path)
    if level is not None and level not in LEVELS:
        raise GridFileError(f"{path}: level={level!r} is not valid; expected 1, 2 or 3")
    if chunk_size < 1:
        raise GridFileError(f"{path}: chunk_size={chunk_size!r} is not valid; expected a positive number")
    if not path.exists():
        raise GridFileError(f"{path}: file not found")
    override = _parse_crs(crs, str(path)) if crs is not None else None
    sources = _sources(path, layer)
    multi = len(sources) > 1
    infos = []
    for source in sources:
        try:
            infos.append(pyogrio.read_info(source.dataset, layer=source.layer, force_feature_count=True))
        except Exception as exc:
            raise GridFileError(f"{path}: cannot read layer {source.name!r}: {exc}") from exc
    total = sum(max(int(info["features"]), 0) for info in infos)
    reader = _Reader(path, level)
    grids: list[Grid] = []
    crs_names: list[str] = []
    done = 0
    for source, info in zip(sources, infos, strict=True):
        where = f"{path}, layer {source.name!r}" if multi else str(path)
        columns = _columns(info["fields"])
        if "code" not in columns and info["features"]:
            raise GridFileError(
                f"{where}, feature 0: property 'code' is missing; expected a grid code (digits) "
                f"(found properties: {', '.join(info['fields']) or 'none'})"
            )
        declared = info["crs"]
        source_crs = override if override is not None else (_parse_crs(declared, where) if declared else None)
        gcj = isinstance(source_crs, str)
        name = GCJ02 if gcj else (_crs_name(source_crs) if source_crs is not None else WGS84)
        if name not in crs_names:
            crs_names.append(name)
        convert = _to_wgs84_func(source_crs if source_crs is not None else _WGS84_CRS)
        must_be_lonlat = source_crs is None or gcj or source_crs.is_geographic
        count = int(info["features"])
        # GeoJSON has no random access: every chunk would re-parse the file from its start, so it is
        # read in one pass (GeoPackage and Shapefile are read chunk by chunk, in bounded memory)
        step = max(count, 1) if info.get("driver") in _SEQUENTIAL_DRIVERS else chunk_size
        first = 0
        while first < count:
            try:
                frame = pyogrio.read_dataframe(
                    source.dataset,
                    layer=source.layer,
                    columns=list(columns.values()),
                    skip_features=first,
                    max_features=step,
                )
            except Exception as exc:
                raise GridFileError(f"{where}: cannot read features {first}..: {exc}") from exc
            if not len(frame):
                break
            geoms = reader.geometries(np.asarray(frame.geometry.array, dtype=object), source, first, multi)
            if must_be_lonlat and not _is_lonlat(geoms):
                told = "declares no CRS" if source_crs is None else f"is read as {name}"
                raise GridFileError(
                    f"{where} {told} but its coordinates are not lon/lat degrees; pass the file's CRS "
                    f"with --crs (crs= in Python), e.g. --crs EPSG:4547"
                )
            if convert is not None:
                try:
                    geoms = convert(geoms)
                except (pyproj.exceptions.ProjError, ValueError) as exc:
                    raise GridFileError(
                        f"{where}: cannot convert coordinates from {name} to WGS84: {exc}"
                    ) from exc
            grids.extend(reader.grids(frame, geoms, columns, source, first, multi))
            first += len(frame)
            done += len(frame)
            if progress is not None:
                progress(done, total)
    return GridFile(
        grids=grids,
        source_crs=", ".join(crs_names) if crs_names else WGS84,
        path=str(path),
        layers=[s.name for s in sources],
        feature_count=len(grids),
    )


# ---------------------------------------------------------------------------------------- parents


def _inner_points(geoms: np.ndarray) -> np.ndarray:
    """Return a point inside each polygon (the centroid where GEOS cannot work on an invalid one)."""
    try:
        return shapely.point_on_surface(geoms)
    except shapely.errors.GEOSException:
        out = np.empty(len(geoms), dtype=object)
        for i, g in enumerate(geoms):
            try:
                out[i] = g.point_on_surface()
            except shapely.errors.GEOSException:
                out[i] = g.centroid
        return out


def _overlap_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the intersection areas of pairs of polygons, repairing invalid ones where GEOS refuses."""
    try:
        return shapely.area(shapely.intersection(a, b))
    except shapely.errors.GEOSException:
        return shapely.area(shapely.intersection(shapely.make_valid(a), shapely.make_valid(b)))


def _find_parents(children: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Return, per child polygon, the index of the parent polygon holding it, or -1.

    The parent is the one containing the child's point_on_surface; if none or several do, the one
    with the largest intersection area (none intersecting: -1).
    """
    found = np.full(len(children), -1, dtype=np.int64)
    if not len(children) or not len(parents):
        return found
    tree = shapely.STRtree(parents)
    points = _inner_points(children)
    child_i, parent_i = tree.query(points, predicate="within")
    hits = np.bincount(child_i, minlength=len(children))
    unique = hits == 1
    found[child_i[unique[child_i]]] = parent_i[unique[child_i]]
    rest = np.flatnonzero(~unique)
    if len(rest):
        sub_i, par_i = tree.query(children[rest], predicate="intersects")
        if len(sub_i):
            areas = _overlap_areas(children[rest][sub_i], parents[par_i])
            order = np.lexsort((-areas, sub_i))  # by child, largest area first
            sub_i, par_i, areas = sub_i[order], par_i[order], areas[order]
            first = np.r_[True, sub_i[1:] != sub_i[:-1]] & (areas > 0)
            found[rest[sub_i[first]]] = par_i[first]
    return found


def assign_parents(grids: Sequence[Grid], candidates: Iterable[Grid] = ()) -> list[Grid]:
    """Fill in the missing parent_code of every grid of level 2 or 3, by containment.

    For a child of level L the parents are the level L-1 grids of `grids` itself or, when `grids`
    holds no grid of that level, those of `candidates` (e.g. the current version's grids). See
    `_find_parents` for the rule; a child with no overlapping parent keeps parent_code None.
    Returns a new list in the same order; grids that already name a parent are unchanged.
    """
    out = list(grids)
    candidates = list(candidates)
    for level in (2, 3):
        todo = [i for i, g in enumerate(out) if g.level == level and g.parent_code is None]
        if not todo:
            continue
        pool = [g for g in out if g.level == level - 1] or [g for g in candidates if g.level == level - 1]
        if not pool:
            continue
        children = np.array([out[i].geometry for i in todo], dtype=object)
        parents = np.array([g.geometry for g in pool], dtype=object)
        found = _find_parents(children, parents)
        for i, p in zip(todo, found.tolist(), strict=True):
            if p >= 0:
                out[i] = dataclasses.replace(out[i], parent_code=pool[p].code)
    return out


def assemble_draft(imported: Sequence[Grid], base: Sequence[Grid], level: int | None) -> list[Grid]:
    """Build a draft version's grids from an imported file and the base (current) version.

    `level=None`: the imported grids are the whole draft (parents found among themselves).
    `level=N`: the draft is the base's grids of the other levels + the imported level-N grids; those
    get their parents among the base's level N-1, and base level N+1 grids whose parent code is not
    among the new level-N codes get their parent re-found among the new level N by containment.
    The result is ordered by level (stable).
    """
    if level is None:
        return sorted(assign_parents(imported), key=lambda g: g.level)
    if level not in LEVELS:
        raise GridFileError(f"assemble_draft: level={level!r} is not valid; expected 1, 2 or 3")
    wrong = next((g for g in imported if g.level != level), None)
    if wrong is not None:
        raise GridFileError(
            f"assemble_draft: imported grid {wrong.code} has level {wrong.level}; expected {level}"
        )
    new = assign_parents(imported, [g for g in base if g.level == level - 1])
    new_codes = {g.code for g in new}
    above = [g for g in base if g.level < level]
    below = [g for g in base if g.level == level + 1]
    stale = [i for i, g in enumerate(below) if g.parent_code not in new_codes]
    if stale:
        refound = assign_parents([dataclasses.replace(below[i], parent_code=None) for i in stale], new)
        for i, g in zip(stale, refound, strict=True):
            below[i] = g
    deeper = [g for g in base if g.level > level + 1]
    return above + new + below + deeper


# ------------------------------------------------------------------------------------------ write


def _frame(grids: Sequence[Grid]) -> gpd.GeoDataFrame:
    """Return the grids as a GeoDataFrame in EPSG:4326 with the file properties."""
    return gpd.GeoDataFrame(
        {
            "code": [g.code for g in grids],
            "level": np.array([g.level for g in grids], dtype=np.int32),
            "name": [g.name for g in grids],
            "parent_code": [g.parent_code for g in grids],
        },
        geometry=[g.geometry for g in grids],
        crs=WGS84,
    )


def write_grid_file(
    grids: Sequence[Grid], path: str | os.PathLike[str], *, progress: Progress | None = None
) -> Path:
    """Write grids (WGS84) to a grid file chosen by suffix, replacing an existing file; return the path.

    `.gpkg`: a GeoPackage with one layer per level, `grids_l1`, `grids_l2`, `grids_l3` (levels with no
    grids are left out); `.geojson` / `.json`: one FeatureCollection with all levels. Properties are
    code, level, name and parent_code; the CRS is EPSG:4326. `progress(done, total)` after each layer.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gpkg", ".geojson", ".json"):
        raise GridFileError(f"{path}: cannot write this format; expected a .gpkg, .geojson or .json path")
    grids = list(grids)
    total = len(grids)
    if suffix == ".gpkg" and not grids:
        raise GridFileError(f"{path}: no grids to write; expected at least one grid for a GeoPackage")
    path.unlink(missing_ok=True)
    try:
        if suffix == ".gpkg":
            done = 0
            for level in LEVELS:
                part = [g for g in grids if g.level == level]
                if not part:
                    continue
                pyogrio.write_dataframe(_frame(part), str(path), layer=f"grids_l{level}", driver="GPKG")
                done += len(part)
                if progress is not None:
                    progress(done, total)
        else:
            pyogrio.write_dataframe(_frame(grids), str(path), driver="GeoJSON")
            if progress is not None:
                progress(total, total)
    except Exception as exc:
        raise GridFileError(f"{path}: cannot write the grid file: {exc}") from exc
    return path
