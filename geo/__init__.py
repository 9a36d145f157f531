"""Grids, buildings, grid versions, the sample district and the point index. No I/O beyond geo files."""
