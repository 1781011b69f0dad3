"""Factorisation: NMF solvers (exact and sketched, numpy and torch), stability, sweeps."""
