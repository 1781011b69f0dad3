"""Choosing K: stability of pattern sets, the criteria panel, certification, the k_min check."""
