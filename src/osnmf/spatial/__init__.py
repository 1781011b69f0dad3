"""Spatial statistics on the atlas grid: Moran's I, region adjacency, linking patterns to regions."""
