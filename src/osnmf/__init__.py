"""osnmf: principal spatial patterns of gene expression in 3D brain atlases.

Stability-driven NMF (staNMF) with kNN imputation, baselines, spatial statistics, linking of the
patterns to the Allen ontology, marker genes and spatial coexpression networks.

The public API is re-exported here and imported lazily, so ``import osnmf`` stays fast.
"""

from importlib import import_module

from osnmf._version import __version__
from osnmf.errors import ConfigError, DownloadError, InputError, OsnmfError

# public name -> module that defines it
_LAZY = {
    "Atlas": "osnmf.atlas",
    "SpatialExpression": "osnmf.expression",
    "read_allen_grid_zip": "osnmf.formats.allen_grid",
    "read_aba_folder": "osnmf.io.aba_folder",
    "write_aba_folder": "osnmf.io.aba_folder",
    "read_npz": "osnmf.io.npz",
    "write_npz": "osnmf.io.npz",
    "read_h5ad": "osnmf.io.anndata_io",
    "write_h5ad": "osnmf.io.anndata_io",
    "write_nrrd": "osnmf.formats.nrrd_io",
    "read_nrrd": "osnmf.formats.nrrd_io",
    "load_expression": "osnmf.io.load",
    "read_cells": "osnmf.io.cells",
    "make_phantom": "osnmf.datasets.phantom",
    "Phantom": "osnmf.datasets.phantom_parts",
    "make_cells": "osnmf.datasets.cells",
    "load_drosophila": "osnmf.datasets.drosophila",
    "download_aba": "osnmf.datasets.download",
    "impute_knn": "osnmf.preprocess",
    "default_support": "osnmf.preprocess",
    "holdout_check": "osnmf.preprocess",
    "prepare_matrix": "osnmf.preprocess",
    "masked_nmf": "osnmf.factorize.nmf.masked",
    "fit_nmf": "osnmf.factorize.nmf.fits",
    "fit_nmf_replicates": "osnmf.factorize.nmf.fits",
    "bootstrap_counts": "osnmf.factorize.sweep.bootstrap",
    "sketch_matrix": "osnmf.factorize.nmf.operators",
    "StaNMF": "osnmf.factorize.stanmf",
    "DaskExecutor": "osnmf.factorize.sweep.executors",
    "instability": "osnmf.factorize.choose_k.stability",
    "select_k": "osnmf.factorize.choose_k.stability",
    "morans_i": "osnmf.spatial.moran",
    "spatial_weights": "osnmf.spatial.moran",
    "strongest_pattern_morans_i": "osnmf.spatial.moran",
    "region_adjacency": "osnmf.spatial.adjacency",
    "contiguous_sets": "osnmf.spatial.adjacency",
    "best_combinations": "osnmf.spatial.linking",
    "region_correlations": "osnmf.spatial.region_correlation",
    "bubble_data": "osnmf.spatial.region_correlation",
    "beam_search": "osnmf.spatial.linking",
    "pattern_ontology": "osnmf.interpret.ontology",
    "region_prediction_test": "osnmf.interpret.region_prediction",
    "PatternSet": "osnmf.baselines.pattern_set",
    "pca_patterns": "osnmf.baselines.pca",
    "reconstruction_accuracy": "osnmf.evaluate.metrics",
    "patterns_per_gene": "osnmf.evaluate.metrics",
    "compare_stanmf_pca": "osnmf.evaluate.compare",
    "compare_distributions": "osnmf.evaluate.compare",
    "marker_genes": "osnmf.interpret.markers",
    "coexpression_networks": "osnmf.interpret.networks",
    "run_pipeline": "osnmf.pipeline",
}

__all__ = ["ConfigError", "DownloadError", "InputError", "OsnmfError", "__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'osnmf' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__():
    return sorted(__all__)
