"""File codecs: MetaImage headers and raw volumes, Allen expression grids, NRRD (bytes <-> arrays; no atlas)."""
