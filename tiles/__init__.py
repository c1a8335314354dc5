"""Tile production from the city model: vector tiles (ST_AsMVT), 3D Tiles, raster and
terrain tiles, caching and offline export. Built by the APIs and 3D issues."""
