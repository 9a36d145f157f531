"""Device registry import: a CSV, GeoJSON or GeoPackage list of devices → validated `Device`s.

File format (property / column names matched case-insensitively):

| column | meaning |
|---|---|
| `id` | the device id: an MQTT topic level (`gridwatch/devices/{id}/…`) and the broker username, so no `/ + #`, no leading `$`, no `:`, no whitespace |
| `kind` | fence, thermal, camera, smoke or sensor (`default_kind=` fills empty cells) |
| `name` | display name (default: the id) |
| `format` | the payload format: `gridwatch` (default; the device publishes on its own topics) or a vendor format (`frigate`, `hikvision`, `dahua`, `onvif`, `fence`, `zigbee2mqtt`, `homeassistant`) |
| `identity` | the vendor identity `<format>:<key>` its messages carry; or give it as vendor columns, see below |
| `interval_s` | heartbeat interval in seconds (positive), empty: not watched for going offline |
| `zones` | the fence zones it reports, `Z1;Z2` (a GeoJSON array works too) |
| location | CSV: `lon` + `lat` columns (WGS84 degrees) or a `wkt` column (POINT, LINESTRING or POLYGON in WGS84; `wkt` wins when a row has both); GeoJSON / GeoPackage: the feature geometry, reprojected to EPSG:4326 when the file declares another CRS |

Vendor identity columns (instead of `identity`; the format is inferred from them unless `format` says it):

| format | columns | identity |
|---|---|---|
| frigate | `camera` | `frigate:<camera>` |
| hikvision | `mac`, `channel` (default 1) | `hikvision:<mac as 44:19:b6:6d:24:85>/<channel>` |
| dahua | `device`, `channel` (default 0) | `dahua:<device>/<channel>` |
| onvif | `device`, `token` (or `channel`) | `onvif:<device>/<token>` |
| fence | `host`, `zone` | `fence:<host>/<zone>` (one fence zone line of an alarm host) |
| zigbee2mqtt | `friendly_name` | `zigbee2mqtt:<friendly_name>` |
| homeassistant | `unique_id` | `homeassistant:<unique_id>` |

MAC addresses are accepted as `4419B66D2485`, `44-19-b6-6d-24-85`, `4419.b66d.2485`, … and written
lower-case, colon separated. An `identity` cell is normalized the same way (a hikvision identity may
also name the camera by IP address, as the adapter does without a MAC), but its missing last part
is not defaulted: `hikvision:<mac>`, `dahua:<device>`, `onvif:<device>`, `fence:<host>` register a
whole NVR / device / alarm host, all its channels or zones (see ingest/registry.py). A fence host is
also the `{host}` level of `gridwatch/devices/{host}/fence`, so it follows the id rules below.

Every row is checked and every problem is reported (`DeviceImport.errors`, one `RowError` per bad
field); rows with errors are left out of `DeviceImport.devices`. Rows are numbered from 1: the data
row of a CSV (the header is not counted) or the feature of a GeoJSON / GeoPackage layer.

Grid assignment (`assign_grid`): the owner is a level-3 grid of the index and the geometry's
touched grids are ordered nearest-segment-first:

- a point: the grid holding it (GridIndex.locate, so shared edges resolve as alarms do);
- a line (a fence zone) or a polygon: the owner is the grid of its routing point — a line's
  midpoint, a polygon's representative point: the point alerts.routing routes its alarms by when
  they carry no position, and geo.diff places it at when grids are republished, so import, publish
  and routing always agree — then the other grids the line runs through (for a positive length) or
  the polygon overlaps, nearest segment first (by distance from the routing point). Grids touched
  at a single point are not listed; ties go to the lower code. An alarm that carries its own
  position (a fence alarm host reporting the zone's point) is routed by that position.
"""

from __future__ import annotations

import csv
import ipaddress
import logging
import math
import numbers
import os
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely
import shapely.wkt
from shapely.errors import GEOSException, ShapelyError
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from geo.errors import GeoError, OutsideDistrictError
from geo.index import GridIndex
from geo.model import Device, DeviceKind

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = get_args(DeviceKind)
GRIDWATCH_FORMAT = "gridwatch"
VENDOR_FORMATS: tuple[str, ...] = ("frigate", "hikvision", "dahua", "onvif", "fence", "zigbee2mqtt", "homeassistant")
FORMATS: tuple[str, ...] = (GRIDWATCH_FORMAT, *VENDOR_FORMATS)
CSV_SUFFIXES = (".csv", ".txt")
GEO_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".zip")

_WGS84 = pyproj.CRS.from_epsg(4326)
_MAC_SEPARATORS = re.compile(r"[:\-.\s]")
_MAC_HEX = re.compile(r"^[0-9a-fA-F]{12}$")
_CHANNEL_NAME = re.compile(r"^[\w.\-]{1,32}$")
_BAD_ID_CHARS = ("/", "+", "#", ":", "\x00")
_GEOMETRY_TYPES = ("Point", "LineString", "Polygon")
# vendor identity columns → the format they imply (device/channel/token: dahua or onvif, say which)
_VENDOR_COLUMNS = ("camera", "mac", "channel", "device", "token", "host", "zone", "friendly_name", "unique_id")
_IMPLIES = {"camera": "frigate", "mac": "hikvision", "host": "fence", "zone": "fence",
            "friendly_name": "zigbee2mqtt", "unique_id": "homeassistant"}
_COLUMNS_OF = {
    "frigate": ("camera",),
    "hikvision": ("mac", "channel"),
    "dahua": ("device", "channel"),
    "onvif": ("device", "token", "channel"),
    "fence": ("host", "zone"),
    "zigbee2mqtt": ("friendly_name",),
    "homeassistant": ("unique_id",),
}


class DeviceFileError(GeoError):
    """A device file cannot be read at all (missing, unknown format, no id or location columns)."""


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem with one row (CSV data row or feature, 1-based) of a device file.

    `field` is the column / property at fault (`geometry` for a feature's geometry, `row` for a
    malformed CSV row); `message` names the bad input and what was expected, without the row
    (str() adds the row and id: `row 3 (id 'cam-1'): kind 'flame' is not known; expected …`).
    """

    row: int
    device_id: str | None
    field: str
    message: str

    def __str__(self) -> str:
        who = f" (id {self.device_id!r})" if self.device_id else ""
        return f"row {self.row}{who}: {self.message}"


@dataclass(frozen=True, slots=True)
class DeviceImport:
    """The devices read from a file (rows without errors) and every problem found."""

    devices: list[Device]
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no row had an error."""
        return not self.errors


# ------------------------------------------------------------------------------------ values


def _missing(value: Any) -> bool:
    """Tell whether a cell / property is absent (None, NaN, blank text)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def _text(value: Any) -> str | None:
    """A cell as stripped text (whole floats as integers: 1.0 → "1"); None when absent."""
    if _missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def normalize_mac(value: str) -> str:
    """Return a MAC address as `44:19:b6:6d:24:85`; ValueError if it is not 12 hex digits."""
    digits = _MAC_SEPARATORS.sub("", value.strip())
    if not _MAC_HEX.match(digits):
        raise ValueError(f"MAC address {value!r} is not valid; expected 12 hex digits such as 44:19:b6:6d:24:85")
    digits = digits.lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _channel(value: str | None, default: int | None, what: str) -> str | None:
    """A channel as canonical text: a number without leading zeros, or a name ([A-Za-z0-9_.-]).

    Empty: `default` (None: no channel). ValueError for anything else.
    """
    if value is None or not value.strip():
        return None if default is None else str(default)
    value = value.strip()
    if value.isdigit():
        return str(int(value))
    if not _CHANNEL_NAME.match(value):
        raise ValueError(
            f"{what} channel {value!r} is not valid; expected a channel number"
            + (f" (default {default})" if default is not None else "")
        )
    return value


def _key(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise ValueError(f"{what} is missing")
    if any(not ch.isprintable() for ch in value):
        raise ValueError(f"{what} {value!r} has control characters")
    return value.strip()


def _hik_address(value: str) -> str:
    """A Hikvision camera's address in an identity: its MAC address (normalized) or its IP address."""
    try:
        return normalize_mac(value)
    except ValueError:
        try:
            return ipaddress.ip_address(value.strip()).compressed
        except ValueError:
            raise ValueError(
                f"hikvision address {value!r} is not valid; expected a MAC address (12 hex digits such as "
                f"44:19:b6:6d:24:85) or an IP address"
            ) from None


def _fence_host(value: str | None) -> str:
    host = _key(value, "fence alarm host (column host)")
    try:
        check_device_id(host)  # it is the {host} level of gridwatch/devices/{host}/fence
    except ValueError as exc:
        raise ValueError(f"fence alarm host: {exc}") from None
    return host


def _join(fmt: str, key: str, part: str | None) -> str:
    return f"{fmt}:{key}/{part}" if part is not None else f"{fmt}:{key}"


def build_identity(fmt: str, parts: Mapping[str, str | None]) -> str:
    """Build the `<format>:<key>` identity of a vendor device from its identity columns.

    `parts` maps column names (camera, mac, channel, device, token, host, zone, friendly_name,
    unique_id) to text or None. The channel defaults to 1 (hikvision) or 0 (dahua); onvif needs a
    token and fence a zone. Raises ValueError naming what is missing or wrong.
    """
    get = parts.get
    if fmt == "frigate":
        return f"frigate:{_key(get('camera'), 'frigate camera name (column camera)')}"
    if fmt == "hikvision":
        mac = normalize_mac(_key(get("mac"), "hikvision MAC address (column mac)"))
        return _join(fmt, mac, _channel(get("channel"), 1, "hikvision"))
    if fmt == "dahua":
        device = _key(get("device"), "dahua device (column device)")
        return _join(fmt, device, _channel(get("channel"), 0, "dahua"))
    if fmt == "onvif":
        device = _key(get("device"), "onvif device (column device)")
        token = _key(get("token") or get("channel"), "onvif profile/source token (column token or channel)")
        return f"onvif:{device}/{token}"
    if fmt == "fence":
        host = _fence_host(get("host"))
        return f"fence:{host}/{_key(get('zone'), 'fence zone (column zone)')}"
    if fmt == "zigbee2mqtt":
        return f"zigbee2mqtt:{_key(get('friendly_name'), 'zigbee2mqtt friendly name (column friendly_name)')}"
    if fmt == "homeassistant":
        return f"homeassistant:{_key(get('unique_id'), 'homeassistant unique_id (column unique_id)')}"
    raise ValueError(f"format {fmt!r} has no vendor identity; expected one of {', '.join(VENDOR_FORMATS)}")


def normalize_identity(identity: str) -> str:
    """Normalize a `<format>:<key>` identity given as such; ValueError if malformed.

    The address part is normalized (hikvision MAC → `44:19:b6:6d:24:85`, or an IP address; channel
    numbers without leading zeros). A missing last part is *not* filled with a default: per
    ingest/registry.py, `hikvision:<mac>`, `dahua:<device>`, `onvif:<device>` or `fence:<host>`
    registers the whole NVR / device / alarm host, every channel, token or zone of it.
    """
    fmt, sep, key = identity.strip().partition(":")
    fmt = fmt.strip().lower()
    if not sep or not key.strip():
        raise ValueError(f"identity {identity!r} is not valid; expected <format>:<key>, e.g. frigate:front_door")
    if fmt not in VENDOR_FORMATS:
        raise ValueError(
            f"identity {identity!r} names format {fmt!r}; expected one of {', '.join(VENDOR_FORMATS)}"
        )
    key = _key(key, f"identity {identity!r}")
    head, slash, tail = key.rpartition("/")
    base, part = (head, tail) if slash else (key, None)
    if fmt in ("hikvision", "dahua", "onvif", "fence") and slash and not (head and tail):
        raise ValueError(f"identity {identity!r} is not valid; expected {fmt}:<device>[/<part>]")
    if fmt == "hikvision":
        return _join(fmt, _hik_address(base), _channel(part, None, "hikvision"))
    if fmt == "dahua":
        return _join(fmt, base, _channel(part, None, "dahua"))
    if fmt == "onvif":
        return _join(fmt, base, part)
    if fmt == "fence":
        return _join(fmt, _fence_host(base), part)
    return f"{fmt}:{key}"  # frigate camera, zigbee2mqtt friendly name (may hold '/'), HA unique_id


def check_device_id(device_id: str) -> None:
    """Raise ValueError unless `device_id` can be an MQTT topic level and a broker username."""
    from ingest.errors import (
        InvalidTopicError,  # pure modules: topic names and their errors
    )
    from ingest.topics import device_status

    try:
        device_status(device_id)
    except InvalidTopicError as exc:
        raise ValueError(str(exc)) from None
    if ":" in device_id or any(ch.isspace() or not ch.isprintable() for ch in device_id):
        raise ValueError(
            f"device id {device_id!r}: expected no ':', whitespace or control characters "
            f"(it is the broker username too)"
        )


# ----------------------------------------------------------------------------------- geometry


def _check_geometry(geom: BaseGeometry) -> str | None:
    """Return why a device geometry is not acceptable (type, range, validity), or None."""
    if geom.geom_type not in _GEOMETRY_TYPES:
        return f"geometry is a {geom.geom_type}; expected a POINT, LINESTRING or POLYGON"
    if geom.is_empty:
        return f"geometry is an empty {geom.geom_type}; expected coordinates"
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        return "geometry has non-finite coordinates; expected lon/lat degrees"
    minx, miny = coords.min(axis=0)
    maxx, maxy = coords.max(axis=0)
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        return (
            f"coordinates ({minx:g}..{maxx:g}, {miny:g}..{maxy:g}) are out of range; expected WGS84 "
            f"lon -180..180, lat -90..90 (declare the file's CRS if it is projected)"
        )
    if not geom.is_valid:
        return f"geometry is not valid: {explain_validity(geom)}; expected a valid {geom.geom_type}"
    return None


def _anchor(geom: BaseGeometry) -> Point:
    """The point that places a device, as Device.anchor(): itself, a line's midpoint, else an inner point."""
    if isinstance(geom, Point):
        return geom
    if isinstance(geom, LineString):
        return geom.interpolate(0.5, normalized=True)
    return geom.point_on_surface()


_Tree = tuple[shapely.STRtree, list[str], np.ndarray]
_TREES: weakref.WeakKeyDictionary[GridIndex, _Tree] = weakref.WeakKeyDictionary()


def _tree(index: GridIndex) -> _Tree:
    """An STRtree of the index's level-3 grids (built once per index)."""
    found = _TREES.get(index)
    if found is None:
        codes = [str(c) for c in index.l3_codes.tolist()]
        geoms = np.array([index.grid(c).geometry for c in codes], dtype=object)
        found = (shapely.STRtree(geoms), codes, geoms)
        _TREES[index] = found
    return found


def assign_grid(geometry: BaseGeometry, index: GridIndex) -> tuple[str, tuple[str, ...]]:
    """Return (owner level-3 grid code, all level-3 grids the geometry touches, nearest first).

    Point: the grid holding it. Line or polygon: the owner is the grid of its routing point (a line's
    midpoint, a polygon's representative point: where alerts.routing and geo.diff place it), then the
    other grids it runs through or overlaps by distance from that point — the nearest segment first.
    Grids touched at a single point are left out; ties go to the lower code. Raises
    OutsideDistrictError when the geometry touches no grid, ValueError for other geometry types.
    """
    kind = geometry.geom_type
    if kind == "Point":
        loc = index.locate(geometry.x, geometry.y)
        if loc is None:
            raise OutsideDistrictError(f"point ({geometry.x:g}, {geometry.y:g}) lies in no level-3 grid")
        return loc.l3, (loc.l3,)
    if kind not in ("LineString", "Polygon"):
        raise ValueError(f"geometry is a {kind}; expected a Point, LineString or Polygon")
    tree, codes, geoms = _tree(index)
    hits = tree.query(geometry, predicate="intersects").tolist()
    # the owner is the grid of the point alarms without a position are routed by (alerts.routing.device_point:
    # a line's midpoint, a polygon's representative point) and that geo.diff places the device at, so import,
    # publish and routing agree; the other grids follow by distance from it: the nearest segment first
    anchor = geometry.interpolate(0.5, normalized=True) if kind == "LineString" else geometry.representative_point()
    ranked: list[tuple[float, str]] = []
    for i in hits:
        part = shapely.intersection(geoms[i], geometry)
        if part.is_empty or (kind == "LineString" and part.length == 0) or (kind == "Polygon" and part.area == 0):
            continue  # touched at a point only
        ranked.append((float(shapely.distance(anchor, part)), codes[i]))
    if not ranked:
        raise OutsideDistrictError(f"{kind} {geometry.wkt[:80]}: touches no level-3 grid")
    ranked.sort()
    loc = index.locate(anchor.x, anchor.y)
    if loc is not None and loc.l3 in {c for _, c in ranked}:
        ranked.sort(key=lambda r: (r[1] != loc.l3, r[0], r[1]))
    order = tuple(code for _, code in ranked)
    return order[0], order


def zone_grids(device: Device, index: GridIndex) -> tuple[str, ...]:
    """All level-3 grids a device's point, zone line or polygon touches, nearest-segment-first."""
    return assign_grid(device.geometry, index)[1]


def reassign(devices: Iterable[Device], index: GridIndex) -> list[tuple[str, str]]:
    """Return (device id, new owner grid) for the devices whose owner changes under `index`.

    Used when a new grid version is published. A device that no longer touches any grid of the
    new index cannot be given one: it is left out of the result and logged as a warning (the
    version diff, geo.diff, reports it as moving to no grid).
    """
    out: list[tuple[str, str]] = []
    for device in devices:
        try:
            owner, _ = assign_grid(device.geometry, index)
        except OutsideDistrictError:
            logger.warning("device %s: outside every grid of index v%s; grid left as %s",
                           device.id, index.version, device.grid_code)
            continue
        if owner != device.grid_code:
            out.append((device.id, owner))
    return out


# ---------------------------------------------------------------------------------------- rows


class _Row:
    """Validates one record (a dict of lower-case column → value, plus a geometry or its source)."""

    def __init__(self, row: int, values: Mapping[str, Any], default_kind: str | None) -> None:
        self.row = row
        self.values = values
        self.default_kind = default_kind
        self.errors: list[RowError] = []
        self.device_id: str | None = _text(values.get("id"))
        self.identity: str | None = None

    def text(self, column: str) -> str | None:
        return _text(self.values.get(column))

    def error(self, column: str, problem: str) -> None:
        self.errors.append(RowError(self.row, self.device_id, column, problem))

    # fields -----------------------------------------------------------------------------

    def check_id(self) -> str | None:
        if self.device_id is None:
            self.error("id", "id is missing; expected a non-empty device id")
            return None
        try:
            check_device_id(self.device_id)
        except ValueError as exc:
            self.error("id", str(exc))
            return None
        return self.device_id

    def kind(self) -> str | None:
        value = self.text("kind")
        if value is None:
            if self.default_kind is not None:
                return self.default_kind
            self.error("kind", f"kind is missing; expected one of {', '.join(KINDS)}")
            return None
        if value.lower() not in KINDS:
            self.error("kind", f"kind {value!r} is not known; expected one of {', '.join(KINDS)}")
            return None
        return value.lower()

    def interval(self) -> float | None:
        raw = self.text("interval_s")
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            self.error("interval_s", f"interval_s {raw!r} is not valid; expected a positive number of seconds")
            return None
        return value

    def zones(self) -> tuple[str, ...]:
        raw = self.values.get("zones")
        if _missing(raw):
            return ()
        if isinstance(raw, (list, tuple, np.ndarray)):
            items = [_text(z) for z in raw]
        else:
            items = str(raw).split(";")
        zones = tuple(z.strip() for z in items if z is not None and z.strip())
        dupes = sorted({z for z in zones if zones.count(z) > 1})
        if dupes:
            self.error("zones", f"zones {', '.join(map(repr, dupes))} given twice; expected distinct zone names (Z1;Z2)")
        return zones

    def format_and_identity(self) -> tuple[str, str | None] | None:
        """(format, identity): from the format/identity cells and the vendor identity columns."""
        fmt = self.text("format")
        if fmt is not None:
            fmt = fmt.lower()
            if fmt not in FORMATS:
                self.error("format", f"format {fmt!r} is not known; expected one of {', '.join(FORMATS)}")
                return None
        raw_identity = self.text("identity")
        parts = {c: self.text(c) for c in _VENDOR_COLUMNS}
        given = [c for c, v in parts.items() if v is not None]

        identity: str | None = None
        if raw_identity is not None:
            try:
                identity = normalize_identity(raw_identity)
            except ValueError as exc:
                self.error("identity", str(exc))
                return None
            id_fmt = identity.partition(":")[0]
            if fmt is None:
                fmt = id_fmt
            elif fmt == GRIDWATCH_FORMAT:
                self.error("identity", f"identity {raw_identity!r} given, but a gridwatch-format device is "
                                       f"identified by its id (its topic); expected no identity")
                return None
            elif fmt != id_fmt:
                self.error("identity", f"identity {raw_identity!r} is of format {id_fmt!r}; expected {fmt}:<key> (format {fmt})")
                return None
        if given:
            implied = sorted({_IMPLIES[c] for c in given if c in _IMPLIES})
            if fmt is None:
                if len(implied) > 1:
                    self.error("format", f"identity columns {', '.join(given)} name several formats "
                                         f"({', '.join(implied)}); expected the columns of one format")
                    return None
                if not implied:
                    fits = [f for f, cols in _COLUMNS_OF.items() if set(given) <= set(cols)]
                    self.error("format", f"identity columns {', '.join(given)} fit {' and '.join(fits)}; "
                                         f"expected a format column saying which")
                    return None
                fmt = implied[0]
            if fmt == GRIDWATCH_FORMAT or any(c not in _COLUMNS_OF[fmt] for c in given):
                wrong = [c for c in given if fmt == GRIDWATCH_FORMAT or c not in _COLUMNS_OF[fmt]]
                expected = ", ".join(_COLUMNS_OF.get(fmt, ())) or "no identity columns"
                self.error(wrong[0], f"identity column(s) {', '.join(wrong)} do not fit format {fmt!r}; expected {expected}")
                return None
            try:
                built = build_identity(fmt, parts)
            except ValueError as exc:
                self.error(given[0], f"{exc}; expected the identity columns of format {fmt}: "
                                     f"{', '.join(_COLUMNS_OF[fmt])}")
                return None
            if identity is not None and identity != built:
                self.error("identity", f"identity {identity!r} differs from {built!r} built from columns "
                                       f"{', '.join(given)}; expected one identity")
                return None
            identity = built
        fmt = fmt or GRIDWATCH_FORMAT
        self.identity = identity
        if fmt == GRIDWATCH_FORMAT and identity is not None:
            self.error("identity", "a gridwatch-format device is identified by its id (its topic); expected no identity")
            return None
        if fmt != GRIDWATCH_FORMAT and identity is None:
            self.error("identity", f"format {fmt} needs the vendor identity; expected an identity "
                                   f"{fmt}:<key> or the columns {', '.join(_COLUMNS_OF[fmt])}")
            return None
        return fmt, identity

    def geometry(self, geom: BaseGeometry | None, column: str, index: GridIndex) -> tuple[BaseGeometry, str] | None:
        """Check a geometry and place it: (2D geometry, owner grid), or None after an error."""
        if geom is None:
            return None
        problem = _check_geometry(geom)
        if problem is not None:
            self.error(column, problem)
            return None
        geom = shapely.force_2d(geom)
        anchor = _anchor(geom)
        if not index.contains(anchor.x, anchor.y):
            at = f"({anchor.x:.6f}, {anchor.y:.6f})"
            what = "point" if geom.geom_type == "Point" else f"{geom.geom_type}'s anchor point"
            self.error(column, f"{what} {at} is outside the district; expected a location inside a level-3 grid")
            return None
        try:
            owner, _ = assign_grid(geom, index)
        except OutsideDistrictError as exc:
            self.error(column, f"{exc}; expected a location inside the district")
            return None
        return geom, owner


def _csv_geometry(row: _Row, has_wkt: bool) -> tuple[BaseGeometry | None, str]:
    """The row's geometry from its wkt or lon/lat cells (None after recording an error)."""
    wkt = row.text("wkt") if has_wkt else None
    if wkt is not None:
        try:
            return shapely.wkt.loads(wkt), "wkt"
        except (ShapelyError, GEOSException, ValueError) as exc:
            row.error("wkt", f"wkt {wkt[:60]!r} cannot be read ({exc}); expected POINT, LINESTRING or POLYGON WKT")
            return None, "wkt"
    lon, lat = row.text("lon"), row.text("lat")
    if lon is None and lat is None:
        row.error("lon" if not has_wkt else "wkt", "location is missing; expected lon and lat, or wkt")
        return None, "lon"
    values: list[float] = []
    ok = True
    for column, raw in (("lon", lon), ("lat", lat)):
        try:
            value = float(raw) if raw is not None else math.nan
        except ValueError:
            value = math.nan
        limit = 180 if column == "lon" else 90
        if not math.isfinite(value) or not -limit <= value <= limit:
            row.error(column, f"{column} {raw!r} is not valid; expected WGS84 degrees in -{limit}..{limit}")
            ok = False
        values.append(value)
    if not ok:
        return None, "lon"
    return Point(values[0], values[1]), "lon"


def _feature_geometry(row: _Row, geom: BaseGeometry | None) -> tuple[BaseGeometry | None, str]:
    """A feature's geometry (None after recording an error)."""
    if geom is None:
        row.error("geometry", "feature has no geometry; expected a Point, LineString or Polygon")
    return geom, "geometry"


def _finish(
    row: _Row, geometry: Callable[[], tuple[BaseGeometry | None, str]], index: GridIndex
) -> Device | None:
    """Check every field of a row (errors in column order); the Device, or None when the row had errors."""
    device_id = row.check_id()
    kind = row.kind()
    fmt_identity = row.format_and_identity()
    interval = row.interval()
    zones = row.zones()
    geom, column = geometry()
    placed = row.geometry(geom, column, index)
    if row.errors or device_id is None or kind is None or fmt_identity is None or placed is None:
        return None
    name = row.text("name") or device_id
    fmt, identity = fmt_identity
    geometry, owner = placed
    return Device(device_id, kind, name, geometry, owner, zones, fmt, identity, interval)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- files


def _lower_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in record.items() if k is not None}


def _read_csv(path: Path, index: GridIndex, default_kind: str | None) -> Iterator[tuple[_Row, Device | None]]:
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise DeviceFileError(f"{path}: cannot open: {exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        columns = {str(c).strip().lower() for c in reader.fieldnames or ()}
        _check_columns(path, columns, default_kind, csv_file=True)
        has_wkt = "wkt" in columns
        for n, record in enumerate(reader, start=1):
            values = _lower_keys(record)
            if None in record:  # more cells than header columns
                row = _Row(n, values, default_kind)
                row.error("row", f"{len(record[None])} cell(s) more than the {len(columns)} header columns; "  # type: ignore[index]
                                 f"expected one cell per column")
                yield row, None
                continue
            if all(_missing(v) for v in values.values()):
                continue
            row = _Row(n, values, default_kind)
            yield row, _finish(row, lambda row=row: _csv_geometry(row, has_wkt), index)


def _check_columns(path: Path, columns: set[str], default_kind: str | None, *, csv_file: bool) -> None:
    found = ", ".join(sorted(columns)) or "none"
    if "id" not in columns:
        raise DeviceFileError(f"{path}: no 'id' column; expected columns id, kind, … (found: {found})")
    if "kind" not in columns and default_kind is None:
        raise DeviceFileError(f"{path}: no 'kind' column; expected one, or pass default_kind (found: {found})")
    if csv_file and "wkt" not in columns and not {"lon", "lat"} <= columns:
        raise DeviceFileError(f"{path}: no location columns; expected 'lon' and 'lat', or 'wkt' (found: {found})")


def _layer(path: Path, layer: str | None) -> str | int | None:
    if path.suffix.lower() == ".zip":
        return None
    try:
        listed = [(str(n), g) for n, g in pyogrio.list_layers(str(path))]
    except Exception as exc:  # pyogrio's DataSourceError and friends
        raise DeviceFileError(f"{path}: cannot open as GeoJSON or GeoPackage: {exc}") from exc
    names = [n for n, g in listed if g is not None]
    if layer is not None:
        if layer not in names:
            raise DeviceFileError(f"{path}: no layer {layer!r}; expected one of {', '.join(map(repr, names))}")
        return layer
    if len(names) == 1:
        return names[0]
    if "devices" in names:
        return "devices"
    raise DeviceFileError(
        f"{path}: {len(names)} geometry layers; expected one, a layer named 'devices', or layer= "
        f"({', '.join(map(repr, names))})"
    )


def _read_geo(
    path: Path, index: GridIndex, default_kind: str | None, layer: str | None
) -> Iterator[tuple[_Row, Device | None]]:
    dataset = f"/vsizip/{path.resolve()}" if path.suffix.lower() == ".zip" else str(path)
    chosen = _layer(path, layer)
    try:
        frame = pyogrio.read_dataframe(dataset, layer=chosen)
    except Exception as exc:
        raise DeviceFileError(f"{path}: cannot read: {exc}") from exc
    columns = {str(c).strip().lower() for c in frame.columns if c != frame.geometry.name}
    _check_columns(path, columns, default_kind, csv_file=False)
    geoms = np.asarray(frame.geometry.array, dtype=object)
    reprojected = False
    if frame.crs is not None and not pyproj.CRS(frame.crs).equals(_WGS84, ignore_axis_order=True):
        transformer = pyproj.Transformer.from_crs(frame.crs, _WGS84, always_xy=True)

        def coords(xy: np.ndarray) -> np.ndarray:
            out = np.array(xy, dtype=float, copy=True)
            if len(out):
                out[:, 0], out[:, 1] = transformer.transform(out[:, 0], out[:, 1])
            return out

        present = np.array([g is not None for g in geoms], dtype=bool)
        geoms[present] = shapely.transform(geoms[present], coords)
        reprojected = True
    logger.info("%s: %d features%s", path, len(frame), f" (reprojected from {frame.crs})" if reprojected else "")
    props = frame.drop(columns=frame.geometry.name).to_dict(orient="records")
    for n, (record, geom) in enumerate(zip(props, geoms, strict=True), start=1):
        row = _Row(n, _lower_keys(record), default_kind)
        yield row, _finish(row, lambda row=row, geom=geom: _feature_geometry(row, geom), index)


def _unique(rows: Sequence[tuple[_Row, Device | None]], key: Callable[[_Row], str | None], what: str) -> set[int]:
    """Record the repeats of a value (id or identity) over all rows; return the repeating row numbers.

    Every row naming the value counts, bad rows too, so fixing one row never reveals a new
    duplicate; the first row keeps the value, each later one gets the error.
    """
    first: dict[str, int] = {}
    bad: set[int] = set()
    for row, _ in rows:
        value = key(row)
        if value is None:
            continue
        if value in first:
            row.error(what, f"{what} {value!r} is already used by row {first[value]}; expected each {what} once per file")
            bad.add(row.row)
        else:
            first[value] = row.row
    return bad


def read_devices(
    path: Path | str,
    *,
    index: GridIndex,
    default_kind: str | None = None,
    layer: str | None = None,
) -> DeviceImport:
    """Read and validate a device registry file (CSV, GeoJSON, GeoPackage; see the module docstring).

    Every row is checked against the grid `index` (its anchor must lie inside the district) and
    given its owner level-3 grid (`assign_grid`). Problems are collected as RowErrors, not raised;
    DeviceFileError is raised only when the file cannot be read at all (missing, unknown suffix,
    no `id` column, no location columns, no `kind` column without `default_kind`).
    """
    path = Path(os.fspath(path))
    if default_kind is not None and default_kind not in KINDS:
        raise ValueError(f"default_kind {default_kind!r}: expected one of {', '.join(KINDS)}")
    if not path.exists():
        raise DeviceFileError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        rows = list(_read_csv(path, index, default_kind))
    elif suffix in GEO_SUFFIXES:
        rows = list(_read_geo(path, index, default_kind, layer))
    else:
        raise DeviceFileError(
            f"{path}: unknown file type {suffix or '(none)'}; expected .csv, .geojson, .json, .gpkg or a zipped Shapefile"
        )
    drop = _unique(rows, lambda r: r.device_id, "id") | _unique(rows, lambda r: r.identity, "identity")
    devices = [d for r, d in rows if d is not None and r.row not in drop]
    errors = [e for r, _ in rows for e in r.errors]
    if errors:
        logger.info("%s: %d devices, %d errors (first: %s)", path, len(devices), len(errors), errors[0])
    return DeviceImport(devices, errors)
