"""A synthetic ISH atlas with planted ground truth, built on the real Allen annotation.

:func:`make_phantom` plants ``K`` smooth, region-shaped, non-negative spatial patterns on the
brain voxels of an :class:`~osnmf.atlas.Atlas`, mixes them into genes with sparse non-negative
coefficients, adds ISH-like noise and hides data the way the Allen atlas misses it (whole coronal
sections per experiment plus scattered voxels). Everything comes from one ``numpy`` Generator
seeded by ``seed``, so the same arguments give the same phantom.

The model, per experiment ``g`` and brain voxel ``v``::

    clean[g, v] = sum_k coefficients[g, k] * patterns[k, v]
    data[g, v]  = max(0, (clean[g, v] * m[g, v] + b[g, v]) * s[g, ap(v)])   (NaN where missing[g, v])
    m ~ LogNormal with mean 1 and coefficient of variation ``noise``       (multiplicative)
    b ~ Normal(0, (background * max_v clean[g, :])**2)                      (small additive)
    s ~ LogNormal with mean 1 and CV ``section_noise`` per coronal section  (default off: s = 1)

Missing data: per experiment, runs of 1–3 whole coronal sections are hidden until about
``section_share * missing`` of the brain voxels are gone (randomised rounding keeps the mean
right), then scattered voxels at the rate that brings the expected total to ``missing``. A
hidden section is NaN over its whole plane (outside the brain too, as the Allen ``-1``); the
rest of the outside of the brain is 0.

Gene kinds (see :attr:`Phantom.marker_of`):

* **marker genes** come first: experiments ``0 .. n_markers * K - 1``; marker ``i`` is dominated
  by pattern ``i % K`` (that pattern holds >= 90% of the gene's total coefficient);
* **mixed genes** (the rest): at least two (usually several) patterns, each pattern switched on
  with probability ``1 - sparsity``, Exponential weights, and no pattern above 2/3 of the
  total, so every marker outranks every mixed gene in importance ``a_gk / sum_k a_gk``;
* **real genes** (optional, appended last): Allen grid zips read as they are; their truth is
  unknown, so their rows of ``coefficients`` and ``clean`` are NaN and ``marker_of`` is -1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from osnmf.atlas import Atlas
from osnmf.datasets.phantom_parts import Phantom, assemble, check_phantom_params, plant_coefficients
from osnmf.datasets.phantom_patterns import plant_patterns
from osnmf.datasets.phantom_presets import make_preset


def make_phantom(
    n_genes: int | None = None,
    n_patterns: int | None = None,
    noise: float = 0.1,
    missing: float | None = None,
    seed: int | None = 0,
    atlas: Atlas | None = None,
    real_genes: Sequence[str | Path] | bool | None = False,
    sparsity: float = 0.5,
    n_markers: int = 2,
    background: float = 0.02,
    section_share: float = 0.6,
    smoothing_um: float = 200.0,
    section_noise: float = 0.0,
    progress: bool = False,
    preset: str | None = None,
) -> Phantom:
    """Synthetic ISH atlas with planted patterns, coefficients, noise and missing data.

    Parameters
    ----------
    n_genes : synthetic experiments (one per gene; symbols ``Gene0001`` …, ids ``phantom-000001`` …);
        default 200 (``preset="calibrated"``: 600).
    n_patterns : K planted patterns, default 8 (``preset="calibrated"``: 11); the first 13 come
        from :data:`~osnmf.datasets.phantom_patterns.PATTERN_LIBRARY` (isocortex with an
        anterior→posterior gradient, olfactory bulb, hippocampus, striatum, thalamus, cerebellar
        cortex, ventral-high midbrain + hindbrain, hypothalamus + pallidum, …),
        more are random unions of medium regions.
    noise : coefficient of variation of the multiplicative (log-normal, mean 1) noise.
    missing : expected fraction of brain voxels hidden per experiment (NaN); default 0.1
        (``preset="calibrated"``: 0.05).
    seed : seed of the one ``numpy.random.Generator`` used for everything.
    atlas : the atlas to build on (default :meth:`Atlas.default`).
    real_genes : paths of Allen grid zips to append as real experiments (truth unknown: NaN rows
        in ``coefficients``/``clean``, ``is_real`` True). ``False``/``None``: none.
    sparsity : probability that a non-dominant pattern is off (coefficient exactly 0) in a gene.
    n_markers : marker genes per pattern (the first ``n_markers * K`` experiments).
    background : sd of the additive Gaussian noise, relative to each gene's clean maximum.
    section_share : share of the missing voxels that come from whole coronal sections (the rest
        are scattered voxels).
    smoothing_um : sigma of the Gaussian smoothing of the region masks, µm.
    section_noise : coefficient of variation of an extra log-normal (mean 1) gain shared by all
        voxels of one coronal section of one experiment, as uneven staining between ISH sections
        (0 = off, the default).
    progress : show a progress bar while generating.
    preset : ``None`` (this model) or ``"calibrated"``: the atlas calibrated to the real one
        (:func:`osnmf.datasets.phantom_presets.make_calibrated_phantom`; the preset sets the
        noise model and its own defaults — only ``n_genes``, ``n_patterns``, ``missing``,
        ``seed``, ``atlas``, ``real_genes``, ``section_share`` and ``progress`` pass through).

    Returns
    -------
    Phantom

    Notes
    -----
    Memory is dominated by the float32 volumes (``n × AP × DV × ML``) and ``clean``
    (``n × n_brain_voxels``): about 3.9 GB for the paper's 4,345 experiments.
    """
    if preset is not None:
        given = {"n_genes": n_genes, "n_patterns": n_patterns, "missing": missing}
        return make_preset(
            preset, seed=seed, atlas=atlas, real_genes=real_genes, section_share=section_share, progress=progress,
            **{k: v for k, v in given.items() if v is not None},
        )
    n_genes = 200 if n_genes is None else n_genes
    n_patterns = 8 if n_patterns is None else n_patterns
    missing = 0.1 if missing is None else missing
    check_phantom_params(
        n_genes, n_patterns, noise, missing, sparsity, section_share, background, smoothing_um, n_markers, section_noise
    )
    atlas = Atlas.default() if atlas is None else atlas
    rng = np.random.default_rng(seed)
    n_genes, n_patterns = int(n_genes), int(n_patterns)

    patterns, names, regions = plant_patterns(atlas, n_patterns, rng, smoothing_um)
    coefficients, marker_of = plant_coefficients(n_genes, n_patterns, rng, sparsity, n_markers)

    def signal(start: int, stop: int) -> np.ndarray:
        return coefficients[start:stop] @ patterns

    return assemble(
        atlas, rng, patterns, names, regions, coefficients, marker_of, signal, noise=noise, missing=missing,
        background=background, section_share=section_share, section_noise=section_noise,
        real_genes=real_genes, seed=seed, progress=progress,
    )
