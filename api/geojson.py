"""GeoJSON encoding of domain objects for the API and the map builders."""

from __future__ import annotations

from typing import Any

from shapely.geometry import mapping

from geo.model import Building, Device, Grid


def feature(geometry: Any, properties: dict[str, Any], fid: str | None = None) -> dict[str, Any]:
    """One GeoJSON Feature."""
    out: dict[str, Any] = {"type": "Feature", "geometry": mapping(geometry), "properties": properties}
    if fid is not None:
        out["id"] = fid
    return out


def collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    """A FeatureCollection."""
    return {"type": "FeatureCollection", "features": features}


def grid_feature(g: Grid) -> dict[str, Any]:
    """A grid as a Feature."""
    return feature(g.geometry, {"code": g.code, "level": g.level, "name": g.name, "parent_code": g.parent_code}, g.code)


def building_feature(b: Building) -> dict[str, Any]:
    """A building as a Feature."""
    return feature(b.geometry, {"code": b.code, "grid_code": b.grid_code, "name": b.name}, b.code)


def device_feature(d: Device) -> dict[str, Any]:
    """A device as a Feature."""
    return feature(d.geometry, {"id": d.id, "kind": d.kind, "name": d.name, "grid_code": d.grid_code, "zones": list(d.zones)}, d.id)
