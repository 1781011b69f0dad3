"""Factorisation: staNMF and its three wings.

- ``nmf/``: the NMF solver (data operators and sketch, starts, grow step, the one CD loop and its
  kernels, public fits, projection, masked NMF);
- ``sweep/``: the stability sweep (plan and parameters, bootstrap draw, blocks, executors, store);
- ``choose_k/``: choosing K (stability, the criteria panel, certification, the k_min check);
- ``stanmf.py`` / ``final_model.py``: the estimator and its final model; ``checks.py``: input checks.
"""
