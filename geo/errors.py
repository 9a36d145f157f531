"""Errors raised by geo/."""


class GeoError(Exception):
    """Base class of geo errors."""


class InvalidCodeError(GeoError):
    """A grid or building code does not follow the hierarchical coding rule."""


class OutsideDistrictError(GeoError):
    """A point lies outside every grid of the district."""


class GridSetError(GeoError):
    """A set of grids cannot be indexed (empty, duplicate codes, non-polygonal geometry)."""


class GridFileError(GeoError):
    """A planner's grid file cannot be read or written (format, CRS, missing or wrong properties)."""
