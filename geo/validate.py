"""The validation report of a draft grid version (planners redraw boundaries; errors block publishing).

`validate_grids` checks codes and hierarchy (duplicate, missing or malformed codes, bad levels, unknown
or missing parents), geometry validity, containment of each child in its parent, sibling overlaps,
gaps in each parent's coverage, slivers, and the buildings and devices placed on the grids.

All measures are taken in one local equal-area frame (Lambert azimuthal equal-area centred on the
data's bounds centre); every geometry is projected once, vectorized. Findings report their locations
in WGS84. Pure logic, no I/O.

Speed: the costly topology checks run on fast paths first and do exact overlay only where needed:
- containment: vectorized `covers` against prepared parents; `difference` only for the rest;
- overlaps: GEOS's coverage validator flags the polygons whose edges do not match their neighbours'
  exactly; only sibling groups holding such a polygon get STRtree candidate pairs and intersections;
- gaps: each parent's children are merged with the fast `coverage_union_all` when the group is a
  valid coverage (else `union_all`); when every child lies inside its parent, the gap area is
  area(parent) - area(union) and the `difference` is computed only when that exceeds the tolerance.

A grid with invalid geometry (or an impossible level) is left out of the topology checks, and the
checks that would cascade from it (its parent's coverage, its children's containment, buildings
and devices on it) are skipped, so one broken polygon gives one finding.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyproj
import shapely
from shapely.geometry import GeometryCollection, Point, mapping
from shapely.geometry.base import BaseGeometry

from geo.model import CODE_LENGTH, Building, Device, Grid

Severity = Literal["error", "warning"]
Progress = Callable[[str, int, int], None]

#: every check and its severity, in report order
CHECKS: dict[str, Severity] = {
    "missing_code": "error",
    "duplicate_code": "error",
    "bad_level": "error",
    "missing_parent": "error",
    "unknown_parent": "error",
    "invalid_geometry": "error",
    "outside_parent": "error",
    "overlap": "error",
    "gap": "error",
    "device_outside": "error",
    "malformed_code": "warning",
    "sliver": "warning",
    "building_outside": "warning",
    "building_cut": "warning",
}
_SEVERITY_ORDER = {"error": 0, "warning": 1}
_CHECK_ORDER = {name: i for i, name in enumerate(CHECKS)}
CHUNK = 20_000  # geometries per vectorized call between progress reports
WORKERS = min(4, os.cpu_count() or 1)  # threads for the per-group GEOS work (it releases the GIL)
_POLYGONAL = (int(shapely.GeometryType.POLYGON), int(shapely.GeometryType.MULTIPOLYGON))
_EMPTY = GeometryCollection()
_REASON_POINT = re.compile(r"\[\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)\s*\]")


# ---------------------------------------------------------------------------------------------
# report objects


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem of a draft grid version, located on the map (WGS84)."""

    severity: Severity
    check: str
    codes: tuple[str, ...]
    measure: float | None
    unit: str | None
    message: str
    location: BaseGeometry

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; the location as a GeoJSON geometry."""
        loc = self.location if self.location is not None else _EMPTY
        return {
            "severity": self.severity,
            "check": self.check,
            "codes": list(self.codes),
            "measure": self.measure,
            "unit": self.unit,
            "message": self.message,
            "location": _geojson(loc),
        }


@dataclass(frozen=True)
class ValidationReport:
    """All findings of one validation run and how many grids of each level were checked."""

    findings: tuple[Finding, ...]
    grid_counts: dict[int, int]

    @property
    def errors(self) -> int:
        """Number of error findings (they block publishing)."""
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        """Number of warning findings."""
        return sum(1 for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        """Tell whether the version may be published (no error)."""
        return self.errors == 0

    def counts(self) -> dict[str, int]:
        """Return the number of findings per check (checks with findings only)."""
        return dict(Counter(f.check for f in self.findings))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of the whole report."""
        return {
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "grid_counts": {str(k): v for k, v in sorted(self.grid_counts.items())},
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_geojson(self) -> dict[str, Any]:
        """Return a GeoJSON FeatureCollection with one Feature per finding."""
        features = []
        for f in self.findings:
            props = f.to_dict()
            geometry = props.pop("location")
            features.append({"type": "Feature", "geometry": geometry, "properties": props})
        return {"type": "FeatureCollection", "features": features}

    def table(self) -> str:
        """Return a plain-text table for the CLI: severity, check, codes, measure, message."""
        head = ("severity", "check", "codes", "measure", "message")
        rows = [
            (f.severity, f.check, ",".join(f.codes), _fmt_measure(f.measure, f.unit), f.message)
            for f in self.findings
        ]
        widths = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(4)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head[:4], widths, strict=True)) + "  " + head[4]]
        lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 7)
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
        status = "OK" if self.ok else "NOT PUBLISHABLE"
        levels = ", ".join(f"L{k}: {v}" for k, v in sorted(self.grid_counts.items()))
        lines.append(f"{status}: {self.errors} error(s), {self.warnings} warning(s); grids {levels}")
        return "\n".join(lines)


def _geojson(geom: BaseGeometry) -> dict[str, Any]:
    """GeoJSON geometry dict with plain lists (JSON-ready)."""
    out: dict[str, Any] = _listify(mapping(geom))
    return out


def _listify(obj: Any) -> Any:
    """Turn the tuples of a shapely mapping into lists."""
    if isinstance(obj, dict):
        return {k: _listify(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_listify(v) for v in obj]
    return obj


def _fmt_area(a: float) -> str:
    """Format an area in square metres for a message."""
    return f"{a:,.0f} m2" if a >= 100 else f"{a:.1f} m2"


def _fmt_measure(measure: float | None, unit: str | None) -> str:
    """Format a finding's measure for the table."""
    if measure is None:
        return ""
    if unit == "ratio":
        return f"{measure:.3f}"
    return f"{measure:,.1f} {unit or ''}".strip()


# ---------------------------------------------------------------------------------------------
# the local equal-area frame


class _Frame:
    """Lambert azimuthal equal-area frame centred on the data; vectorized both ways."""

    def __init__(self, lon0: float, lat0: float) -> None:
        """Build the forward (WGS84 → metres) and inverse transformers."""
        crs = pyproj.CRS.from_proj4(
            f"+proj=laea +lat_0={lat0:.9f} +lon_0={lon0:.9f} +datum=WGS84 +units=m +no_defs"
        )
        self._fwd = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        self._inv = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    @classmethod
    def around(cls, geoms: np.ndarray) -> _Frame:
        """Centre the frame on the bounds of the non-empty geometries."""
        present = geoms[~shapely.is_missing(geoms)]
        present = present[~shapely.is_empty(present)]
        bounds = shapely.total_bounds(present) if len(present) else np.zeros(4)
        if not np.isfinite(bounds).all():
            bounds = np.zeros(4)
        return cls((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)

    @staticmethod
    def _apply(tr: pyproj.Transformer, c: np.ndarray) -> np.ndarray:
        """Transform an (n, 2) coordinate array."""
        if len(c) == 0:
            return c
        x, y = tr.transform(c[:, 0], c[:, 1])
        return np.column_stack([x, y])

    def to_metric(self, geoms: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Project an array of WGS84 geometries, CHUNK at a time."""
        out = np.empty(len(geoms), dtype=object)
        if progress is not None:
            progress("project", 0, len(geoms))
        for start in range(0, len(geoms), CHUNK):
            part = geoms[start : start + CHUNK]
            out[start : start + CHUNK] = shapely.transform(part, lambda c: self._apply(self._fwd, c))
            if progress is not None:
                progress("project", min(start + CHUNK, len(geoms)), len(geoms))
        return out

    def to_wgs84(self, geom: BaseGeometry) -> BaseGeometry:
        """Return one metric geometry in WGS84."""
        result: BaseGeometry = shapely.transform(geom, lambda c: self._apply(self._inv, c))
        return result


# ---------------------------------------------------------------------------------------------
# the draft: grids as arrays


@dataclass
class _Draft:
    """The grids under validation as parallel arrays, plus what the checks learn about them."""

    grids: Sequence[Grid]
    codes: list[str]
    labels: list[str]
    levels: np.ndarray
    parents: list[str | None]
    wgs: np.ndarray
    metric: np.ndarray
    frame: _Frame
    tolerance: float
    progress: Progress | None
    parent_idx: np.ndarray  # index of the resolved parent grid, -1 none/unknown, -2 ambiguous
    inferred: np.ndarray  # parent taken from the code prefix (parent code missing or unknown)
    level_ok: np.ndarray
    geom_ok: np.ndarray | None = None
    suspicious: set[tuple[int, str | None]] | None = None  # sibling groups not a valid coverage

    @property
    def usable(self) -> np.ndarray:
        """Grids that take part in the topology checks: valid geometry and a level of 1..3."""
        assert self.geom_ok is not None
        result: np.ndarray = self.geom_ok & self.level_ok
        return result

    def report(self, stage: str, done: int, total: int) -> None:
        """Report progress if a callback was given."""
        if self.progress is not None:
            self.progress(stage, done, total)

    def key(self, i: int) -> tuple[int, str | None]:
        """The sibling group of grid i: (level, parent code), the resolved parent's when there is one."""
        p = int(self.parent_idx[i])
        return (int(self.levels[i]), self.codes[p] if p >= 0 else self.parents[i])

    def finding(
        self,
        check: str,
        codes: Iterable[str],
        message: str,
        location: BaseGeometry | None,
        measure: float | None = None,
        unit: str | None = None,
    ) -> Finding:
        """Build a Finding with the check's severity."""
        return Finding(
            severity=CHECKS[check],
            check=check,
            codes=tuple(codes),
            measure=None if measure is None else float(measure),
            unit=unit,
            message=message,
            location=location if location is not None else _EMPTY,
        )

    def piece(self, metric_geom: BaseGeometry) -> BaseGeometry:
        """A metric piece as a WGS84 location."""
        return self.frame.to_wgs84(metric_geom)


def _level_int(level: object) -> int:
    """The level as an int, or 0 when it is not an integer."""
    try:
        if isinstance(level, bool):
            return 0
        as_int = int(level)  # type: ignore[call-overload]
        return as_int if as_int == level else 0
    except (TypeError, ValueError):
        return 0


def _resolve_parents(
    codes: list[str], levels: np.ndarray, parents: list[str | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Index of each grid's parent (-1 none/unknown, -2 ambiguous) and whether it was inferred.

    The parent is the one grid of level-1 with the grid's parent code. When the parent code is missing
    or names no grid, the topology checks still use the parent the grid's own code implies (design §6
    prefix), so one attribute slip does not also open a gap in that parent.
    """
    by_key: dict[tuple[int, str], list[int]] = defaultdict(list)
    by_code: dict[str, list[int]] = defaultdict(list)
    for i, (c, lv) in enumerate(zip(codes, levels.tolist(), strict=True)):
        by_key[(lv, c)].append(i)
        by_code[c].append(i)
    out = np.full(len(codes), -1, dtype=np.int64)
    inferred = np.zeros(len(codes), dtype=bool)
    for i, (p, lv) in enumerate(zip(parents, levels.tolist(), strict=True)):
        if lv not in (1, 2, 3) and p and len(by_code.get(p, [])) == 1:
            out[i] = by_code[p][0]  # a grid of impossible level: its parent's coverage is not checked
        if lv not in (2, 3):
            continue
        hits = by_key.get((lv - 1, p), []) if p else []
        if not hits:
            implied = codes[i][: CODE_LENGTH[lv - 1]] if len(codes[i]) == CODE_LENGTH[lv] else ""
            hits = by_key.get((lv - 1, implied), []) if implied else []
            inferred[i] = len(hits) == 1
        out[i] = hits[0] if len(hits) == 1 else (-2 if hits else -1)
    return out, inferred


def _object_array(items: Sequence[Any]) -> np.ndarray:
    """A 1-d object array of these items (geometries or None)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _polygonal_mask(geoms: np.ndarray) -> np.ndarray:
    """Mask of non-empty (Multi)Polygons."""
    types = shapely.get_type_id(geoms)
    result: np.ndarray = np.isin(types, _POLYGONAL) & ~shapely.is_empty(geoms)
    return result


# ---------------------------------------------------------------------------------------------
# attribute checks


def _check_codes(d: _Draft) -> list[Finding]:
    """missing_code, duplicate_code, bad_level, malformed_code."""
    out: list[Finding] = []
    counts = Counter(c for c in d.codes if c)
    dup_members: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(d.codes):
        if counts.get(c, 0) > 1:
            dup_members[c].append(i)
    for i, g in enumerate(d.grids):
        if not d.codes[i]:
            out.append(d.finding("missing_code", (d.labels[i],), f"grid {d.labels[i]} ({g.name!r}) has no "
                                 "code", d.wgs[i]))
        if not d.level_ok[i]:
            out.append(d.finding("bad_level", (d.labels[i],), f"grid {d.labels[i]} has level {g.level!r}; "
                                 "expected 1, 2 or 3 (left out of the geometry checks)", d.wgs[i]))
        problem = _code_problem(d.codes[i], int(d.levels[i]), d.parents[i]) if d.codes[i] else None
        if problem:
            message = f"grid {d.labels[i]}: {problem}"
            out.append(d.finding("malformed_code", (d.labels[i],), message, d.wgs[i]))
    for code, members in dup_members.items():
        levels = sorted({int(d.levels[i]) for i in members})
        geoms = [d.wgs[i] for i in members if d.wgs[i] is not None]
        out.append(
            d.finding(
                "duplicate_code",
                (code,),
                f"code {code} is used by {len(members)} grids (level {', '.join(map(str, levels))}); "
                "the containment and coverage of their children are not checked until it is unique",
                GeometryCollection(geoms),
                len(members),
                "grids",
            )
        )
    return out


def _code_problem(code: str, level: int, parent: str | None) -> str | None:
    """Describe how a code breaks the design §6 coding rule, or None."""
    problems = []
    if not code.isdigit():
        problems.append("has characters other than digits")
    expected = CODE_LENGTH.get(level)
    if expected is not None and len(code) != expected:
        problems.append(f"has {len(code)} characters, level {level} codes have {expected} digits")
    if parent and not code.startswith(parent):
        problems.append(f"does not start with its parent's code {parent}")
    if not problems:
        return None
    return f"code {code!r} " + " and ".join(problems) + " (design §6 coding rule)"


def _check_parents(d: _Draft) -> list[Finding]:
    """missing_parent and unknown_parent."""
    out: list[Finding] = []
    for i in range(len(d.codes)):
        lv, p, label = int(d.levels[i]), d.parents[i], d.labels[i]
        if not d.level_ok[i]:
            continue
        implied = ""
        if d.inferred[i]:
            implied = f"; checked against {d.labels[d.parent_idx[i]]}, the parent its code implies"
        if lv >= 2 and not p:
            out.append(d.finding("missing_parent", (label,), f"level-{lv} grid {label} has no parent code"
                                 f"{implied}", d.wgs[i]))
        elif lv == 1 and p:
            out.append(d.finding("unknown_parent", (label, p), f"level-1 grid {label} names parent {p}, "
                                 "but level-1 grids have no parent", d.wgs[i]))
        elif p and (d.parent_idx[i] == -1 or d.inferred[i]):
            out.append(d.finding("unknown_parent", (label, p), f"level-{lv} grid {label} names parent {p}, "
                                 f"but there is no level-{lv - 1} grid {p}{implied}", d.wgs[i]))
    return out


# ---------------------------------------------------------------------------------------------
# geometry checks


def _check_validity(d: _Draft) -> list[Finding]:
    """invalid_geometry; sets d.geom_ok."""
    geoms = d.wgs
    n = len(geoms)
    polygonal = np.zeros(n, dtype=bool)
    valid = np.zeros(n, dtype=bool)
    d.report("validity", 0, n)
    for start in range(0, n, CHUNK):
        sl = slice(start, start + CHUNK)
        polygonal[sl] = _polygonal_mask(geoms[sl])
        valid[sl] = polygonal[sl] & shapely.is_valid(geoms[sl])
        d.report("validity", min(start + CHUNK, n), n)
    d.geom_ok = valid
    has_children = set(d.parent_idx[d.parent_idx >= 0].tolist())
    out: list[Finding] = []
    for i in np.flatnonzero(~valid).tolist():
        out.append(_invalid_finding(d, i, bool(polygonal[i]), i in has_children))
    return out


def _invalid_finding(d: _Draft, i: int, polygonal: bool, has_children: bool) -> Finding:
    """Describe one grid with unusable geometry, what make_valid would make of it, what is skipped."""
    label, geom, metric = d.labels[i], d.wgs[i], d.metric[i]
    location: BaseGeometry | None = geom
    if geom is None:
        text = "has no geometry"
        measure = None
    elif shapely.is_empty(geom):
        text = "has an empty geometry"
        measure = None
    elif not polygonal:
        text = f"is a {geom.geom_type}, not a Polygon or MultiPolygon"
        measure = None
    else:
        reason = shapely.is_valid_reason(geom)
        fixed = shapely.make_valid(metric)
        parts = shapely.get_num_geometries(fixed)
        measure = float(shapely.area(fixed))
        text = (
            f"is not valid ({reason}); make_valid would make a {fixed.geom_type}"
            f"{f' of {parts} parts' if parts > 1 else ''} of {_fmt_area(measure)} "
            f"(the drawn polygon measures {_fmt_area(abs(float(shapely.area(metric))))})"
        )
        m = _REASON_POINT.search(reason)
        if m:
            location = Point(float(m.group(1)), float(m.group(2)))
    skipped = []
    parent = d.labels[d.parent_idx[i]] if d.parent_idx[i] >= 0 else d.parents[i]
    if parent and d.level_ok[i]:
        skipped.append(f"coverage of {parent}")
    if has_children:
        skipped.append("containment of its children")
    tail = f"; {' and '.join(skipped)} not checked until this is fixed" if skipped else ""
    return d.finding("invalid_geometry", (label,), f"grid {label} {text}{tail}", location, measure,
                     "m2" if measure is not None else None)


def _check_coverage(d: _Draft) -> list[Finding]:
    """outside_parent and gap, per parent: fast when the union of the children equals the parent."""
    usable = d.usable
    claimed = d.parent_idx >= 0
    children: dict[int, list[int]] = defaultdict(list)
    for i in np.flatnonzero(claimed & usable).tolist():
        children[int(d.parent_idx[i])].append(i)
    broken_parents = set(d.parent_idx[claimed & ~usable].tolist())
    dup = {c for c, k in Counter(d.codes).items() if k > 1}
    has_level = {lv for lv in (2, 3) if (d.levels == lv).any()}  # no gaps reported for absent levels
    parents = np.array(
        [
            p for p in np.flatnonzero(usable & (d.levels <= 2)).tolist()
            if d.codes[p] not in dup and int(d.levels[p]) + 1 in has_level
        ],
        dtype=np.int64,
    )
    if not len(parents):
        return []
    unions = np.empty(len(parents), dtype=object)
    unions[:] = _parallel_map(
        d, "coverage", lambda p: _union(d, children.get(p, []), (int(d.levels[p]) + 1, d.codes[p])),
        parents.tolist(),
    )
    same = _same_area(d.metric[parents], unions)
    rest, rest_unions = parents[~same], unions[~same]
    inside = _children_inside(d, rest, children)
    out = [f for p in rest.tolist() for f in inside.findings.get(p, [])]
    gap_todo = np.array([p not in broken_parents for p in rest.tolist()], dtype=bool)
    out += _gap_findings(d, rest[gap_todo], rest_unions[gap_todo], inside.all_inside[gap_todo], children)
    return out


def _same_area(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mask: a[i] and b[i] are the same area (identical vertices after normalizing, else topologically)."""
    same: np.ndarray = shapely.equals_exact(shapely.normalize(a), shapely.normalize(b), tolerance=0.0)
    if (~same).any():
        unsure = np.flatnonzero(~same)
        empty = shapely.is_empty(b[unsure])
        check = unsure[~empty]
        same[check] = shapely.equals(a[check], b[check])
    return same


@dataclass
class _Inside:
    """Result of the per-child containment check of some parents."""

    all_inside: np.ndarray  # per parent: every child covered exactly (no overlay needed)
    findings: dict[int, list[Finding]]


def _children_inside(d: _Draft, parents: np.ndarray, children: dict[int, list[int]]) -> _Inside:
    """outside_parent for the children of `parents`: vectorized covers first, difference for the rest."""
    kids = np.array([c for p in parents.tolist() for c in children.get(p, [])], dtype=np.int64)
    of = d.parent_idx[kids]
    shapely.prepare(d.metric[parents])
    covered = np.zeros(len(kids), dtype=bool)
    d.report("containment", 0, len(kids))
    for start in range(0, len(kids), CHUNK):
        sl = slice(start, start + CHUNK)
        covered[sl] = shapely.covers(d.metric[of[sl]], d.metric[kids[sl]])
        d.report("containment", min(start + CHUNK, len(kids)), len(kids))
    not_inside = set(of[~covered].tolist())
    all_inside = np.array([p not in not_inside for p in parents.tolist()], dtype=bool)
    findings: dict[int, list[Finding]] = defaultdict(list)
    rest, rest_parent = kids[~covered], of[~covered]
    outside = shapely.difference(d.metric[rest], d.metric[rest_parent])
    areas = shapely.area(outside)
    for i, p, geom, area in zip(rest.tolist(), rest_parent.tolist(), outside, areas.tolist(), strict=True):
        if area > d.tolerance:
            share = area / float(shapely.area(d.metric[i]))
            child, parent = d.labels[i], d.labels[p]
            message = f"grid {child} has {_fmt_area(area)} ({share:.1%} of it) outside its parent {parent}"
            piece = d.piece(_polygonal_part(geom))
            findings[p].append(d.finding("outside_parent", (child, parent), message, piece, area, "m2"))
    return _Inside(all_inside, findings)


def _polygonal_part(geom: BaseGeometry) -> BaseGeometry:
    """Keep only the polygons of an overlay result (drop touching lines and points)."""
    parts = shapely.get_parts(geom)
    polys = parts[np.isin(shapely.get_type_id(parts), _POLYGONAL)]
    if len(polys) == 1:
        only: BaseGeometry = polys[0]
        return only
    return shapely.multipolygons(polys) if len(polys) else geom


def _is_coverage(geoms: np.ndarray) -> bool:
    """Tell whether polygons form a valid coverage (edges match exactly, no overlap)."""
    if len(geoms) < 2:
        return True
    try:
        return bool(shapely.coverage_is_valid(geoms))
    except shapely.errors.GEOSException:
        return False


def _parallel_map(d: _Draft, stage: str, func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """Map func over items on a few threads (GEOS releases the GIL), reporting progress."""
    d.report(stage, 0, len(items))
    out: list[Any] = []
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for k, result in enumerate(pool.map(func, items)):
            out.append(result)
            if k % 1000 == 999 or k == len(items) - 1:
                d.report(stage, k + 1, len(items))
    return out


def _sibling_groups(d: _Draft) -> dict[tuple[int, str | None], list[int]]:
    """Usable grids by sibling group (level, parent code)."""
    groups: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    for i in np.flatnonzero(d.usable).tolist():
        groups[d.key(i)].append(i)
    return groups


def _check_overlaps(d: _Draft) -> list[Finding]:
    """overlap: sibling pairs (same level and parent) overlapping by more than the tolerance.

    Sibling groups that form a valid coverage cannot overlap; only the others get STRtree candidate
    pairs and intersection areas.
    """
    groups = _sibling_groups(d)
    keys = [k for k, members in groups.items() if len(members) > 1]
    valid = _parallel_map(d, "overlap", lambda k: _is_coverage(d.metric[groups[k]]), keys)
    d.suspicious = {k for k, ok in zip(keys, valid, strict=True) if not ok}
    if not d.suspicious:
        return []
    members = np.array([i for k in sorted(d.suspicious, key=str) for i in groups[k]], dtype=np.int64)
    tree = shapely.STRtree(d.metric[members])
    a_pos, b_pos = tree.query(d.metric[members], predicate="intersects")
    a, b = members[a_pos], members[b_pos]
    same = np.array([d.key(x) == d.key(y) for x, y in zip(a.tolist(), b.tolist(), strict=True)], dtype=bool)
    keep = (a < b) & same
    a, b = a[keep], b[keep]
    inter = shapely.intersection(d.metric[a], d.metric[b])
    areas = shapely.area(inter)
    out: list[Finding] = []
    for x, y, geom, area in zip(a.tolist(), b.tolist(), inter, areas.tolist(), strict=True):
        if area > d.tolerance:
            x, y = sorted((x, y), key=lambda k: d.labels[k])
            out.append(d.finding("overlap", (d.labels[x], d.labels[y]),
                                 f"grids {d.labels[x]} and {d.labels[y]} overlap by {_fmt_area(area)}",
                                 d.piece(_polygonal_part(geom)), area, "m2"))
    return out


def _gap_findings(
    d: _Draft, parents: np.ndarray, unions: np.ndarray, all_inside: np.ndarray, children: dict[int, list[int]]
) -> list[Finding]:
    """gap: pieces of each parent covered by none of its children, larger than the tolerance."""
    if not len(parents):
        return []
    missing = shapely.area(d.metric[parents]) - shapely.area(unions)
    todo = ~all_inside | (missing > d.tolerance)  # all inside: the gap area is exactly `missing`
    holes = shapely.difference(d.metric[parents[todo]], unions[todo])
    out: list[Finding] = []
    for p, hole in zip(parents[todo].tolist(), holes, strict=True):
        pieces = shapely.get_parts(_polygonal_part(hole)) if not hole.is_empty else []
        for piece in pieces:
            area = float(shapely.area(piece))
            if area > d.tolerance:
                what = "no children at all" if not children.get(p) else "a gap"
                out.append(d.finding("gap", (d.labels[p],),
                                     f"grid {d.labels[p]} has {what}: {_fmt_area(area)} covered by none of "
                                     f"its level-{int(d.levels[p]) + 1} grids", d.piece(piece), area, "m2"))
    return out


def _union(d: _Draft, kids: list[int], key: tuple[int, str | None]) -> BaseGeometry:
    """Union of a parent's children: coverage union when they form a valid coverage."""
    if not kids:
        return _EMPTY
    geoms = d.metric[kids]
    if key not in (d.suspicious or set()):
        try:
            result: BaseGeometry = shapely.coverage_union_all(geoms)
            return result
        except shapely.errors.GEOSException:
            pass
    merged: BaseGeometry = shapely.union_all(geoms)
    return merged


def _check_slivers(d: _Draft, ratio: float, min_area: float) -> list[Finding]:
    """sliver: Polsby-Popper compactness 4πA/P² below `ratio` or area below `min_area`."""
    assert d.geom_ok is not None
    d.report("sliver", 0, 1)
    idx = np.flatnonzero(d.geom_ok)
    area = shapely.area(d.metric[idx])
    perimeter = shapely.length(d.metric[idx])
    with np.errstate(divide="ignore", invalid="ignore"):
        compact = np.where(perimeter > 0, 4 * math.pi * area / perimeter**2, 0.0)
    bad = (compact < ratio) | (area < min_area)
    out: list[Finding] = []
    for i, a, c in zip(idx[bad].tolist(), area[bad].tolist(), compact[bad].tolist(), strict=True):
        label = d.labels[i]
        if c < ratio:
            message = (
                f"grid {label} is a sliver: compactness 4πA/P² = {c:.3f} (< {ratio}), area {_fmt_area(a)}"
            )
            out.append(d.finding("sliver", (label,), message, d.wgs[i], c, "ratio"))
        else:
            out.append(d.finding("sliver", (label,), f"grid {label} is tiny: {_fmt_area(a)} "
                                 f"(< {_fmt_area(min_area)})", d.wgs[i], a, "m2"))
    d.report("sliver", 1, 1)
    return out


# ---------------------------------------------------------------------------------------------
# buildings and devices


@dataclass
class _Level3:
    """The usable level-3 grids in a tree, and the area of the broken ones (checks skipped there)."""

    idx: np.ndarray
    tree: shapely.STRtree
    shadow: BaseGeometry


def _level3(d: _Draft) -> _Level3:
    """Index the usable level-3 grids; merge the repaired broken ones into a 'not checked' shadow."""
    idx = np.flatnonzero(d.usable & (d.levels == 3))
    shapely.prepare(d.metric[idx])
    broken = np.flatnonzero(~d.usable & (d.levels == 3))
    repaired = [shapely.make_valid(g) for g in d.metric[broken] if g is not None and not g.is_empty]
    shadow = shapely.union_all(repaired) if repaired else _EMPTY
    shapely.prepare(shadow)
    return _Level3(idx, shapely.STRtree(d.metric[idx]), shadow)


def _check_buildings(d: _Draft, buildings: Sequence[Building], bm: np.ndarray, l3: _Level3) -> list[Finding]:
    """building_outside (part in no level-3 grid) and building_cut (in two or more grids)."""
    if not len(buildings):
        return []
    d.report("buildings", 0, len(buildings))
    bm = np.array([g if g is None or g.is_valid else shapely.make_valid(g) for g in bm], dtype=object)
    b_pos, g_pos = l3.tree.query(bm, predicate="intersects")
    grid = l3.idx[g_pos]
    covered = shapely.covers(d.metric[grid], bm[b_pos])
    fine = np.zeros(len(buildings), dtype=bool)
    fine[b_pos[covered]] = True
    if not l3.shadow.is_empty:
        fine |= shapely.intersects(l3.shadow, bm)  # on a broken grid: not checked until it is fixed
    hits: dict[int, list[int]] = defaultdict(list)
    for b, g in zip(b_pos.tolist(), grid.tolist(), strict=True):
        if not fine[b]:
            hits[b].append(g)
    out: list[Finding] = []
    for b in np.flatnonzero(~fine).tolist():
        out.extend(_building_findings(d, buildings[b], bm[b], hits.get(b, [])))
    d.report("buildings", len(buildings), len(buildings))
    return out


def _building_findings(d: _Draft, bld: Building, geom: BaseGeometry, grids: list[int]) -> list[Finding]:
    """The findings of one building that no single grid covers."""
    out: list[Finding] = []
    if geom is None or geom.is_empty:
        return [d.finding("building_outside", (bld.code,), f"building {bld.code} has no geometry", None)]
    if grids:
        parts = shapely.intersection(geom, d.metric[grids])
        areas = shapely.area(parts)
        big = [(d.labels[g], a) for g, a in zip(grids, areas.tolist(), strict=True) if a > d.tolerance]
        if len(big) >= 2:
            big.sort()
            smaller = min(a for _, a in big)
            names = ", ".join(f"{c} ({_fmt_area(a)})" for c, a in big)
            out.append(d.finding("building_cut", (bld.code, *(c for c, _ in big)),
                                 f"building {bld.code} is cut by a grid boundary: {names}; smaller part "
                                 f"{_fmt_area(smaller)}", bld.geometry, smaller, "m2"))
        rest = shapely.difference(geom, shapely.union_all(d.metric[grids]))
    else:
        rest = geom
    area = float(shapely.area(rest))
    if area > d.tolerance:
        total = float(shapely.area(geom))
        where = "lies in no level-3 grid" if area >= total - d.tolerance else f"has {_fmt_area(area)} " \
            f"of its {_fmt_area(total)} in no level-3 grid"
        out.append(d.finding("building_outside", (bld.code,), f"building {bld.code} {where}",
                             d.piece(_polygonal_part(rest)), area, "m2"))
    return out


def _check_devices(d: _Draft, devices: Sequence[Device], dm: np.ndarray, l3: _Level3) -> list[Finding]:
    """device_outside: a device whose point or line meets no level-3 grid."""
    if not len(devices):
        return []
    d.report("devices", 0, 1)
    d_pos, _ = l3.tree.query(dm, predicate="intersects")
    placed = np.zeros(len(devices), dtype=bool)
    placed[d_pos] = True
    if not l3.shadow.is_empty:
        present = ~shapely.is_missing(dm)
        placed[present] |= shapely.intersects(l3.shadow, dm[present])
    out: list[Finding] = []
    for k in np.flatnonzero(~placed).tolist():
        dev = devices[k]
        what = "has no geometry" if dev.geometry is None or dev.geometry.is_empty else \
            f"({dev.kind} {dev.geometry.geom_type}) lies in no level-3 grid"
        out.append(d.finding("device_outside", (dev.id,), f"device {dev.id} {what} (registered to grid "
                             f"{dev.grid_code})", dev.geometry))
    d.report("devices", 1, 1)
    return out


# ---------------------------------------------------------------------------------------------
# entry point


def _draft(grids: Sequence[Grid], frame: _Frame, metric: np.ndarray, tolerance: float,
           progress: Progress | None) -> _Draft:
    """Arrange the grids as arrays and resolve their parents."""
    codes = [g.code or "" for g in grids]
    labels = [c if c else f"<no code #{i}>" for i, c in enumerate(codes)]
    levels = np.array([_level_int(g.level) for g in grids], dtype=np.int64)
    parents = [g.parent_code or None for g in grids]
    parent_idx, inferred = _resolve_parents(codes, levels, parents)
    return _Draft(
        grids=grids,
        codes=codes,
        labels=labels,
        levels=levels,
        parents=parents,
        wgs=_object_array([g.geometry for g in grids]),
        metric=metric,
        frame=frame,
        tolerance=tolerance,
        progress=progress,
        parent_idx=parent_idx,
        inferred=inferred,
        level_ok=np.isin(levels, (1, 2, 3)),
    )


def _sort_key(f: Finding) -> tuple[int, int, tuple[str, ...]]:
    """Errors first, then by check, then by codes."""
    return (_SEVERITY_ORDER[f.severity], _CHECK_ORDER[f.check], f.codes)


def validate_grids(
    grids: Sequence[Grid],
    *,
    buildings: Sequence[Building] = (),
    devices: Sequence[Device] = (),
    tolerance_m2: float = 1.0,
    sliver_ratio: float = 0.05,
    sliver_area_m2: float = 50.0,
    progress: Progress | None = None,
) -> ValidationReport:
    """Validate a draft grid version and its buildings and devices; see the module docstring."""
    grids, buildings, devices = list(grids), list(buildings), list(devices)
    shapes = [g.geometry for g in grids] + [b.geometry for b in buildings] + [v.geometry for v in devices]
    everything = _object_array(shapes)
    frame = _Frame.around(everything)
    metric = frame.to_metric(everything, progress)
    n, nb = len(grids), len(buildings)
    d = _draft(grids, frame, metric[:n], tolerance_m2, progress)
    findings: list[Finding] = []
    d.report("attributes", 0, 1)
    findings += _check_codes(d)
    findings += _check_parents(d)
    d.report("attributes", 1, 1)
    findings += _check_validity(d)
    findings += _check_overlaps(d)
    findings += _check_coverage(d)
    findings += _check_slivers(d, sliver_ratio, sliver_area_m2)
    if buildings or devices:
        l3 = _level3(d)
        findings += _check_buildings(d, buildings, metric[n : n + nb], l3)
        findings += _check_devices(d, devices, metric[n + nb :], l3)
    counts = Counter(d.levels.tolist())
    return ValidationReport(
        findings=tuple(sorted(findings, key=_sort_key)), grid_counts=dict(sorted(counts.items()))
    )
