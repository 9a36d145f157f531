"""GeoJSON encoding of domain objects for the API and the map builders."""

from __future__ import annotations

from typing import Any

from shapely.geometry import mapping

from geo.model import Building, Device, Grid
from store.ports import DeviceState


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


def device_properties(d: Device, state: DeviceState | None = None) -> dict[str, Any]:
    """What the map and the API show of a device: identity, owner grid, state and when it was last heard."""
    return {
        "id": d.id,
        "kind": d.kind,
        "name": d.name,
        "grid_code": d.grid_code,
        "zones": list(d.zones),
        "format": d.format,
        "identity": d.identity,
        "interval_s": d.interval_s,
        "state": state.state if state is not None else "unknown",
        "state_since": state.since.isoformat() if state is not None and state.since else None,
        "last_seen": state.last_seen.isoformat() if state is not None and state.last_seen else None,
        "detail": state.detail if state is not None else {},
    }


def device_feature(d: Device, state: DeviceState | None = None) -> dict[str, Any]:
    """A device as a Feature, with its state."""
    return feature(d.geometry, device_properties(d, state), d.id)
