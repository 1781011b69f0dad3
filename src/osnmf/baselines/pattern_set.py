"""The one interface of every pattern set osnmf compares: :class:`PatternSet` (staNMF, PCA, clusters).

The later analyses (Moran's I, reconstruction accuracy, linking to regions) accept it:

* ``patterns`` ``(K, m)``: one row per pattern over the m voxels (mask / C order);
* ``coefficients`` ``(n, K)``: how much each gene uses each pattern, so that
  ``X ≈ coefficients @ patterns (+ extra["offset"])``.

The baselines that make the others: :mod:`osnmf.baselines.pca` (PCA, its bootstrap) and
:mod:`osnmf.baselines.clusters` (voxel clusters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from osnmf.errors import InputError

__all__ = ["Kind", "PatternSet", "nmf_patterns"]

Kind = Literal["nmf", "pca", "clusters", "other"]


@dataclass
class PatternSet:
    """A set of K spatial patterns and the genes' coefficients on them.

    Attributes
    ----------
    name : label used in tables and figures (e.g. ``"staNMF"``, ``"PCA"``).
    patterns : float ``(K, m)``, one pattern per row over the m voxels (mask C order).
    coefficients : float ``(n, K)`` or None (unknown, e.g. clusters built without the data).
    kind : ``"nmf"``, ``"pca"``, ``"clusters"`` or ``"other"``.
    extra : free metadata; keys used by osnmf: ``"offset"`` ``(m,)`` added to every
        reconstruction (PCA's voxel means), ``"labels"`` ``(m,)`` cluster of each voxel.
    """

    name: str
    patterns: np.ndarray
    coefficients: np.ndarray | None
    kind: Kind = "other"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.patterns = np.asarray(self.patterns)
        if self.patterns.ndim != 2 or self.patterns.shape[0] == 0:
            raise InputError(f"{self.name}: patterns must be K × voxels, got {self.patterns.shape}")
        if self.coefficients is not None:
            self.coefficients = np.asarray(self.coefficients)
            if self.coefficients.ndim != 2 or self.coefficients.shape[1] != self.k:
                raise InputError(
                    f"{self.name}: coefficients must be genes × {self.k}, got "
                    f"{self.coefficients.shape}"
                )
        if self.kind not in ("nmf", "pca", "clusters", "other"):
            raise InputError(f"{self.name}: unknown kind {self.kind!r}")

    @property
    def k(self) -> int:
        """Number of patterns K."""
        return int(self.patterns.shape[0])

    @property
    def n_voxels(self) -> int:
        return int(self.patterns.shape[1])

    @property
    def offset(self) -> np.ndarray | None:
        return self.extra.get("offset")

    def reconstruct(self, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """``coefficients @ patterns (+ offset)`` for the selected genes, float64 ``(n, m)``."""
        if self.coefficients is None:
            raise InputError(f"{self.name}: no coefficients, cannot reconstruct")
        A = self.coefficients if rows is None else self.coefficients[rows]
        out = np.asarray(A, dtype=np.float64) @ np.asarray(self.patterns, dtype=np.float64)
        if self.offset is not None:
            out += np.asarray(self.offset, dtype=np.float64)
        return out

    def __repr__(self) -> str:
        n = None if self.coefficients is None else self.coefficients.shape[0]
        return f"PatternSet({self.name!r}, kind={self.kind}, K={self.k}, voxels={self.n_voxels}, genes={n})"


def nmf_patterns(model: Any = None, *, components: np.ndarray | None = None,
                 coefficients: np.ndarray | None = None, name: str = "staNMF") -> PatternSet:
    """Wrap a fitted staNMF model (or its arrays) as a :class:`PatternSet`.

    Parameters
    ----------
    model : a fitted :class:`osnmf.StaNMF` (uses ``components_`` ``(K, m)``,
        ``coefficients_`` ``(n, K)`` and ``k_``), or None to pass the arrays directly.
    components, coefficients : the arrays, when no model is given.
    """
    extra: dict[str, Any] = {}
    if model is not None:
        if not hasattr(model, "components_"):
            raise InputError("the model is not fitted (no components_): call fit() first")
        components = model.components_
        coefficients = getattr(model, "coefficients_", None)
        if getattr(model, "k_", None) is not None:
            extra["k"] = int(model.k_)
    if components is None:
        raise InputError("give a fitted model or the components")
    return PatternSet(name=name, patterns=np.asarray(components), coefficients=coefficients,
                      kind="nmf", extra=extra)
