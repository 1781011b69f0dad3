"""Interpretation of principal patterns: marker genes, coexpression networks, classes, ontology."""
