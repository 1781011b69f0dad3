"""Per-backend kernels of the coordinate-descent loop (numpy, numba, torch), one signature each."""
