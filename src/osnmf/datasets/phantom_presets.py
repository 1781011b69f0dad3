"""Phantom presets: a synthetic atlas calibrated to the real Allen atlas (``preset="calibrated"``).

The default :func:`~osnmf.datasets.phantom.make_phantom` plants K patterns and little else, so
its genes are exact mixtures of the truth: staNMF finds them almost perfectly (instability
γ ≈ 0.0003 at the planted K, some sixty times below the paper's real curve) and single
experiments are too sparse (28% of brain voxels at exactly zero where real grids have ~0.1%).
Real genes carry a positive background everywhere and their own smooth structure; the
calibrated model adds exactly that, per experiment ``g`` and brain voxel ``v``::

    clean[g, v] = L_g * ( sum_k a[g, k] P[k, v]                 planted patterns (the truth)
                          + b_g * B_g(v)                        positive background
                          + sum_j m[g, j] M[j, v]               minor patterns shared by few genes
                          + c_g * F_g(v) )                      the gene's own smooth structure
    data[g, v]  = clean[g, v] * noise[g, v]                     log-normal, mean 1 (never 0)

* ``L_g`` (gene level) is log-normal with log-sd ``level_sd``; ``a`` are the sparse coefficients of
  :func:`~osnmf.datasets.phantom.plant_coefficients` (markers first), max 1 per gene;
* ``B_g`` is a broad log-normal field (mean 1, Gaussian-smoothed at ``background_um``) and
  ``b_g`` log-uniform in ``background``: a positive floor that differs from gene to gene;
* ``M_j`` are ``n_minor`` extra region-shaped patterns (random unions of medium regions); a gene
  carries ``M_j`` with probability ``minor_share * (j + 1) ** -minor_decay`` (weight
  ``minor_strength`` × Exponential(1)) — structure shared by groups of genes, from a few dozen
  genes for the first minor pattern down to a handful for the last;
* ``F_g`` is the gene's own field: white noise smoothed at ``idio_um``, standardised, cut at
  ``idio_threshold`` sd (smooth blobs, max 1), weight ``c_g`` ~ ``idio`` × Uniform(0.5, 1.5).

``Phantom.patterns`` / ``coefficients`` are the K planted patterns and ``a·L`` (what a K-pattern
NMF should recover); ``Phantom.clean`` is the whole noiseless expression above (so
``clean != coefficients @ patterns`` here). Missing data and real genes follow ``make_phantom``.
The numbers the preset was tuned to, and what it gives, are in ``docs/stanmf.md`` (printed by
``benchmarks/bench_calibrated_phantom.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from osnmf.atlas import Atlas
from osnmf.datasets.phantom_parts import Phantom, assemble, check_phantom_params, plant_coefficients
from osnmf.datasets.phantom_patterns import build_pattern, plant_patterns, random_candidates, random_spec
from osnmf.errors import ConfigError

__all__ = ["CALIBRATED", "CalibratedRecipe", "make_calibrated_phantom", "make_preset"]


@dataclass(frozen=True)
class CalibratedRecipe:
    """Knobs of the calibrated model (see the module docstring); defaults = the calibration.

    Attributes
    ----------
    noise : coefficient of variation of the multiplicative voxel noise.
    level_sd : log-sd of the per-gene expression level ``L_g``.
    sparsity, n_markers : as in :func:`~osnmf.datasets.phantom.plant_coefficients`.
    background : ``(low, high)`` range of the log-uniform background ``b_g`` (relative to the
        gene's planted maximum).
    background_um, background_sd : smoothing sigma (µm) and log-sd of the background field.
    balance : planted pattern ``k``'s coefficients are scaled by ``(mean_k E / E_k) ** (balance / 2)``
        with ``E_k = ||P_k||²``: 0 keeps them, 1 gives every pattern the same expected energy (so
        no small pattern is the obvious one to drop at K - 1).
    n_minor, minor_strength, minor_decay, minor_share : the minor shared patterns; a gene carries
        minor pattern ``j`` with probability ``minor_share * (j + 1) ** -minor_decay`` and weight
        ``minor_strength * Exponential(1)``.
    idio, idio_um, idio_threshold : weight, smoothing sigma (µm) and cut (in sd) of each gene's
        own smooth field.
    smoothing_um : smoothing sigma of the planted and minor patterns (µm).
    """

    noise: float = 0.25
    level_sd: float = 0.5
    sparsity: float = 0.6
    n_markers: int = 2
    background: tuple[float, float] = (0.005, 0.05)
    background_um: float = 1000.0
    background_sd: float = 0.4
    balance: float = 0.75
    n_minor: int = 40
    minor_strength: float = 0.6
    minor_decay: float = 1.0
    minor_share: float = 0.3
    idio: float = 0.05
    idio_um: float = 300.0
    idio_threshold: float = 1.0
    smoothing_um: float = 350.0

    def check(self) -> None:
        for name in ("noise", "level_sd", "background_sd", "minor_strength", "minor_decay", "idio",
                     "balance"):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0 <= value <= 10):
                raise ConfigError(f"calibrated phantom: {name} must be in [0, 10], got {value!r}")
        lo, hi = self.background
        if not (0 < lo <= hi <= 10):
            raise ConfigError(f"calibrated phantom: background must be 0 < low <= high <= 10, got {self.background!r}")
        if not 0 <= self.minor_share <= 1:
            raise ConfigError(f"calibrated phantom: minor_share must be in [0, 1], got {self.minor_share!r}")
        if not 0 <= self.sparsity < 1:
            raise ConfigError(f"calibrated phantom: sparsity must be in [0, 1), got {self.sparsity!r}")
        if int(self.n_minor) != self.n_minor or self.n_minor < 0 or self.n_markers < 0:
            raise ConfigError("calibrated phantom: n_minor and n_markers must be integers >= 0")
        if min(self.background_um, self.idio_um, self.smoothing_um) <= 0:
            raise ConfigError("calibrated phantom: background_um, idio_um and smoothing_um must be > 0")


#: The calibrated recipe (tuned with ``benchmarks/bench_calibrated_phantom.py``).
CALIBRATED = CalibratedRecipe()


def _smooth_fields(n: int, atlas: Atlas, sigma_um: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` standardised Gaussian random fields on the brain voxels, float32 ``(n, n_brain)``.

    White noise on the whole grid, Gaussian-smoothed (sigma ``sigma_um`` per axis, reflecting
    edges), cut to the brain and scaled to mean 0, sd 1 per field.
    """
    sigma = [0.0] + [sigma_um / s for s in atlas.spacing_um]
    white = rng.standard_normal((n, *atlas.shape), dtype=np.float32)
    smooth = ndimage.gaussian_filter(white, sigma=sigma, mode="reflect", truncate=3.0)
    out = smooth[:, atlas.brain_mask]
    out -= out.mean(axis=1, keepdims=True)
    out /= np.maximum(out.std(axis=1, keepdims=True), 1e-12)
    return out


def _minor_patterns(atlas: Atlas, n_minor: int, rng: np.random.Generator, smoothing_um: float) -> np.ndarray:
    """``n_minor`` random region-union patterns (max 1), float32 ``(n_minor, n_brain)``."""
    out = np.zeros((n_minor, atlas.n_brain_voxels), dtype=np.float32)
    if n_minor == 0:
        return out
    candidates = random_candidates(atlas)
    j = 0
    while j < n_minor:
        vec = build_pattern(atlas, random_spec(atlas, rng, j + 1, candidates), smoothing_um)
        if vec is not None:
            out[j] = vec
            j += 1
    return out


def make_calibrated_phantom(
    n_genes: int = 600,
    n_patterns: int = 11,
    missing: float = 0.05,
    seed: int | None = 0,
    atlas: Atlas | None = None,
    real_genes: Sequence[str | Path] | bool | None = False,
    section_share: float = 0.6,
    progress: bool = False,
    recipe: CalibratedRecipe = CALIBRATED,
) -> Phantom:
    """Synthetic atlas whose staNMF instability and single experiments resemble the real atlas.

    Parameters
    ----------
    n_genes : synthetic experiments (the calibration used 600; the real atlas has 4,345).
    n_patterns : K planted patterns (11, the paper's K, by default).
    missing, seed, atlas, real_genes, section_share, progress : as in
        :func:`~osnmf.datasets.phantom.make_phantom` (``missing`` 0.05: real coronal grids miss
        3–8% of the brain voxels).
    recipe : the knobs (:class:`CalibratedRecipe`); default :data:`CALIBRATED`.

    Returns
    -------
    Phantom with ``preset == "calibrated"``; ``clean`` is the whole noiseless expression.
    """
    recipe.check()
    check_phantom_params(n_genes, n_patterns, recipe.noise, missing, recipe.sparsity, section_share, 0.0,
                         recipe.smoothing_um, recipe.n_markers)
    atlas = Atlas.default() if atlas is None else atlas
    rng = np.random.default_rng(seed)
    n_genes, n_patterns = int(n_genes), int(n_patterns)

    patterns, names, regions = plant_patterns(atlas, n_patterns, rng, recipe.smoothing_um)
    coefficients, marker_of = plant_coefficients(n_genes, n_patterns, rng, recipe.sparsity, recipe.n_markers,
                                                 level_sd=recipe.level_sd)
    level = coefficients.max(axis=1).astype(np.float32)  # L_g: the coefficients' max is the level
    if recipe.balance:
        energy = (patterns.astype(np.float64) ** 2).sum(axis=1)
        coefficients = (coefficients * (energy.mean() / energy) ** (recipe.balance / 2)).astype(np.float32)
    minor = _minor_patterns(atlas, recipe.n_minor, rng, recipe.smoothing_um)
    lo, hi = recipe.background
    b = np.exp(rng.uniform(np.log(lo), np.log(hi), size=n_genes)).astype(np.float32)
    c = (recipe.idio * rng.uniform(0.5, 1.5, size=n_genes)).astype(np.float32)
    m = np.zeros((n_genes, recipe.n_minor), dtype=np.float32)
    if recipe.n_minor:
        share = recipe.minor_share * (np.arange(recipe.n_minor) + 1.0) ** -recipe.minor_decay
        on = rng.random((n_genes, recipe.n_minor)) < share
        m[on] = recipe.minor_strength * rng.exponential(1.0, size=int(on.sum()))
    field_rng = np.random.default_rng(rng.integers(2**63))
    bsd = np.float32(recipe.background_sd)

    def signal(start: int, stop: int) -> np.ndarray:
        n = stop - start
        block = coefficients[start:stop] @ patterns
        lv = level[start:stop, None]
        back = _smooth_fields(n, atlas, recipe.background_um, field_rng)
        back = np.exp(bsd * back - bsd * bsd / 2)  # log-normal, mean 1
        block += lv * b[start:stop, None] * back
        if recipe.n_minor:
            block += lv * (m[start:stop] @ minor)
        own = _smooth_fields(n, atlas, recipe.idio_um, field_rng)
        own -= np.float32(recipe.idio_threshold)
        np.maximum(own, 0.0, out=own)
        own /= np.maximum(own.max(axis=1, keepdims=True), 1e-12)
        block += lv * c[start:stop, None] * own
        return block

    ph = assemble(atlas, rng, patterns, names, regions, coefficients, marker_of, signal, noise=recipe.noise,
                  missing=missing, background=0.0, section_share=section_share, section_noise=0.0,
                  real_genes=real_genes, seed=seed, progress=progress)
    return replace(ph, preset="calibrated", recipe=asdict(recipe))


PRESETS = {"calibrated": make_calibrated_phantom}


def make_preset(name: str, **kwargs) -> Phantom:
    """Dispatch ``make_phantom(preset=name, ...)`` to the preset's builder."""
    if name not in PRESETS:
        raise ConfigError(f"unknown phantom preset {name!r}; use one of {sorted(PRESETS)}")
    return PRESETS[name](**kwargs)
