"""Evaluation of pattern sets: reconstruction metrics, staNMF-vs-PCA comparisons, planted-truth checks."""
