"""The NMF solver: operators and sketch, starts, the grow step, the one CD loop, fits, projection."""
