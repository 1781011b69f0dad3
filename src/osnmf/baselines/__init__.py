"""Baselines staNMF is compared with: pattern sets, PCA (one Gram, bootstrap) and clusterings."""
