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

import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from scipy import ndimage

from osnmf.atlas import Atlas
from osnmf.constraints import Interval
from osnmf.errors import ConfigError, InputError
from osnmf.expression import SpatialExpression
from osnmf.progress import ProgressBar

AXES = {"AP": 0, "DV": 1, "ML": 2}


@dataclass(frozen=True)
class PatternSpec:
    """Recipe for one planted pattern.

    Attributes
    ----------
    name : human-readable description.
    regions : ``(acronym, weight)`` pairs; the pattern starts as the weighted union of the masks.
    gradient : ``None`` or ``(axis, high_end)``, e.g. ``("AP", "anterior")``: a linear ramp from
        ``RAMP_LOW`` to 1 over the pattern's extent along that axis (``"medial"`` ramps on the
        distance to the midline). ``high_end`` is one of anterior/posterior, dorsal/ventral,
        medial/lateral.
    shell : keep only voxels within this many voxels of the outside of the brain (0 = no limit).
    """

    name: str
    regions: tuple[tuple[str, float], ...]
    gradient: tuple[str, str] | None = None
    shell: float = 0.0


RAMP_LOW = 0.1

#: Canonical patterns, in the order they are planted (``n_patterns`` takes the first ones; extra
#: patterns beyond this list are random unions of 1–3 medium-level regions).
PATTERN_LIBRARY: tuple[PatternSpec, ...] = (
    PatternSpec("isocortex, anterior-high gradient", (("Isocortex", 1.0),), ("AP", "anterior")),
    PatternSpec("olfactory areas, main olfactory bulb high", (("OLF", 0.5), ("MOB", 0.5))),
    PatternSpec("hippocampal formation", (("HPF", 1.0),)),
    PatternSpec("striatum", (("STR", 1.0),)),
    PatternSpec("thalamus", (("TH", 1.0),)),
    PatternSpec("cerebellar cortex", (("CBX", 1.0),)),
    PatternSpec("midbrain + pons + medulla, ventral-high", (("MB", 1.0), ("P", 1.0), ("MY", 1.0)), ("DV", "ventral")),
    PatternSpec("hypothalamus + pallidum", (("HY", 1.0), ("PAL", 1.0))),
    PatternSpec("superficial cerebral cortex (outer shell)", (("CTX", 1.0),), None, 1.5),
    PatternSpec("cortical subplate + cerebellar nuclei", (("CTXsp", 1.0), ("CBN", 1.0))),
    PatternSpec("visual + retrosplenial cortex", (("VIS", 1.0), ("RSP", 1.0))),
    PatternSpec("midbrain + pons, dorsal-high", (("MB", 1.0), ("P", 1.0)), ("DV", "dorsal")),
    PatternSpec("dentate gyrus", (("DG", 1.0),)),
)


@dataclass
class Phantom:
    """A synthetic dataset and its planted truth.

    Attributes
    ----------
    data : the noisy volumes with NaN for missing, as a user would load them
        (float32 ``(n_experiments, AP, DV, ML)``; 0 outside the brain, NaN on whole missing sections).
    patterns : float32 ``(K, n_brain_voxels)``, >= 0, each scaled to max 1; columns follow
        ``atlas.brain_coords``.
    coefficients : float32 ``(n_experiments, K)``, >= 0 (NaN rows for real genes).
    clean : float32 ``(n_experiments, n_brain_voxels)``, ``coefficients @ patterns`` (NaN rows for
        real genes).
    pattern_regions : acronyms of the atlas regions each pattern was built from.
    missing : bool ``(n_experiments, n_brain_voxels)``, True where data were hidden (for real
        genes: where the file has no data).
    pattern_names : a description of each pattern.
    marker_of : int ``(n_experiments,)``: the pattern a planted marker gene is dominated by, -1 for
        mixed and real genes.
    is_real : bool ``(n_experiments,)``: True for appended real genes (truth unknown).
    missing_sections : bool ``(n_experiments, AP)``: coronal sections hidden whole.
    noise, missing_fraction, seed : the generating parameters.
    preset : ``None`` or the preset's name (``"calibrated"``); recipe : the preset's knobs.
    """

    data: SpatialExpression
    patterns: np.ndarray
    coefficients: np.ndarray
    clean: np.ndarray
    pattern_regions: list[list[str]]
    missing: np.ndarray
    pattern_names: list[str] = field(default_factory=list)
    marker_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    is_real: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    missing_sections: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))
    noise: float = 0.0
    missing_fraction: float = 0.0
    seed: int | None = None
    preset: str | None = None
    recipe: dict = field(default_factory=dict)

    @property
    def n_patterns(self) -> int:
        return int(self.patterns.shape[0])

    @property
    def atlas(self) -> Atlas:
        return self.data.atlas

    def pattern_volumes(self) -> np.ndarray:
        """Planted patterns as float32 volumes ``(K, AP, DV, ML)``, 0 outside the brain."""
        return self.data.patterns_to_volumes(self.patterns)

    def markers(self) -> dict[int, list[int]]:
        """Planted marker experiments (row indices) per pattern index."""
        return {k: np.flatnonzero(self.marker_of == k).tolist() for k in range(self.n_patterns)}

    def __repr__(self) -> str:
        n_real = int(self.is_real.sum())
        return (
            f"Phantom(n_experiments={self.data.n_experiments}, n_patterns={self.n_patterns}, "
            f"n_brain_voxels={self.patterns.shape[1]}, n_real={n_real}, noise={self.noise}, "
            f"missing={self.missing_fraction})"
        )


# ---- patterns ---------------------------------------------------------------------------------
def _ramp(mask: np.ndarray, axis: str, high_end: str) -> np.ndarray:
    """Linear ramp RAMP_LOW..1 over the extent of ``mask`` along ``axis``; float32 volume."""
    if axis not in AXES:
        raise ConfigError(f"unknown gradient axis {axis!r}; use one of {sorted(AXES)}")
    ax = AXES[axis]
    coord = np.indices(mask.shape, dtype=np.float32)[ax]
    if high_end == "medial" or high_end == "lateral":
        coord = np.abs(coord - (mask.shape[ax] - 1) / 2.0)
    where = coord[mask]
    lo, hi = float(where.min()), float(where.max())
    t = (coord - lo) / (hi - lo) if hi > lo else np.zeros_like(coord)
    if high_end in ("anterior", "dorsal", "medial"):
        t = 1.0 - t  # index 0 is anterior / dorsal; medial = small distance to the midline
    elif high_end not in ("posterior", "ventral", "lateral"):
        raise ConfigError(f"unknown gradient end {high_end!r}")
    return (RAMP_LOW + (1.0 - RAMP_LOW) * np.clip(t, 0.0, 1.0)).astype(np.float32)


def _region_mask(atlas: Atlas, acronym: str) -> np.ndarray | None:
    """Bool volume of a region (None if the atlas has no such node or it owns no voxel)."""
    try:
        sid = atlas.id_of(acronym)
    except InputError:  # an atlas without this node (e.g. a custom ontology)
        return None
    rows = np.flatnonzero(atlas.region_ids == sid)
    if rows.size == 0:
        return None
    mask = np.zeros(atlas.shape, dtype=bool)
    mask[atlas.brain_mask] = atlas.membership[int(rows[0])].toarray().ravel()
    return mask


def build_pattern(atlas: Atlas, spec: PatternSpec, smoothing_um: float = 200.0) -> np.ndarray | None:
    """One planted pattern as a float32 vector over the brain voxels (max 1), or None if empty.

    The weighted union of the region masks, times the gradient ramp, restricted to the outer
    shell if asked, then Gaussian-smoothed (sigma ``smoothing_um`` µm per axis) and cut to the
    brain.
    """
    volume = np.zeros(atlas.shape, dtype=np.float32)
    for acronym, weight in spec.regions:
        mask = _region_mask(atlas, acronym)
        if mask is not None:
            volume += np.float32(weight) * mask
    if spec.shell > 0:
        depth = ndimage.distance_transform_edt(np.pad(atlas.brain_mask, 1))[1:-1, 1:-1, 1:-1]
        volume[depth > spec.shell] = 0.0
    support = volume > 0
    if not support.any():
        return None
    if spec.gradient is not None:
        volume *= _ramp(support, *spec.gradient)
    if smoothing_um > 0:
        sigma = [smoothing_um / s for s in atlas.spacing_um]
        volume = ndimage.gaussian_filter(volume, sigma=sigma, mode="constant")
    vector = volume[atlas.brain_mask].astype(np.float32)
    peak = float(vector.max())
    if peak <= 0:
        return None
    return vector / np.float32(peak)


def random_candidates(atlas: Atlas, min_voxels: int = 100) -> list[int]:
    """Medium-level regions with at least ``min_voxels`` voxels (coarse ones if none)."""
    sizes = dict(zip(atlas.region_ids.tolist(), np.asarray(atlas.membership.sum(axis=1)).ravel(), strict=True))
    candidates = [sid for sid in atlas.medium_ids if sizes.get(sid, 0) >= min_voxels]
    return candidates or [sid for sid in atlas.coarse_ids if sizes.get(sid, 0) > 0]


def random_spec(atlas: Atlas, rng: np.random.Generator, index: int, candidates: list[int]) -> PatternSpec:
    """A random pattern recipe ``PP<index>``: 1–3 regions drawn from ``candidates`` (see :func:`random_candidates`)."""
    n = int(rng.integers(1, 4))
    chosen = rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)
    regions = tuple((atlas.acronym(candidates[i]), 1.0) for i in chosen)
    ends = [None, ("AP", "anterior"), ("AP", "posterior"), ("DV", "dorsal"), ("DV", "ventral"), ("ML", "medial")]
    gradient = ends[int(rng.integers(len(ends)))]
    return PatternSpec(f"random #{index}: " + " + ".join(a for a, _ in regions), regions, gradient)


def plant_patterns(
    atlas: Atlas,
    n_patterns: int,
    rng: np.random.Generator,
    smoothing_um: float = 200.0,
    max_correlation: float = 0.6,
) -> tuple[np.ndarray, list[str], list[list[str]]]:
    """The first ``n_patterns`` usable library patterns, then random ones.

    Random patterns whose Pearson correlation with an earlier one exceeds ``max_correlation`` are
    drawn again (up to 200 tries), so the planted set stays distinguishable.

    Returns ``(patterns float32 (K, n_brain_voxels), names, region acronyms)``.
    """
    vectors: list[np.ndarray] = []
    names: list[str] = []
    regions: list[list[str]] = []

    def accept(vec: np.ndarray | None, spec: PatternSpec, check: bool) -> bool:
        if vec is None:
            return False
        if check and vectors:
            corr = np.corrcoef(np.vstack([*vectors, vec]))[-1, :-1]
            if np.nanmax(corr) > max_correlation:
                return False
        vectors.append(vec)
        names.append(spec.name)
        regions.append([a for a, _ in spec.regions])
        return True

    for spec in PATTERN_LIBRARY:
        if len(vectors) == n_patterns:
            break
        accept(build_pattern(atlas, spec, smoothing_um), spec, check=False)
    tries, candidates = 0, None
    while len(vectors) < n_patterns:
        if candidates is None:
            candidates = random_candidates(atlas)
            if not candidates:
                raise ConfigError("the atlas has no region with voxels to build patterns from")
        spec = random_spec(atlas, rng, len(vectors) + 1, candidates)
        tries += 1
        accept(build_pattern(atlas, spec, smoothing_um), spec, check=tries < 200)
    return np.vstack(vectors).astype(np.float32), names, regions


# ---- coefficients -----------------------------------------------------------------------------
def plant_coefficients(
    n_genes: int,
    n_patterns: int,
    rng: np.random.Generator,
    sparsity: float = 0.5,
    n_markers: int = 2,
    level_sd: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse non-negative mixing weights.

    Returns ``(coefficients float32 (n_genes, K), marker_of int (n_genes,))``. Each gene has an
    expression level ``exp(N(0, level_sd²))`` equal to its largest coefficient. The first
    ``min(n_genes, n_markers * K)`` genes are markers (see the module docstring).
    """
    K = n_patterns
    coef = np.zeros((n_genes, K), dtype=np.float64)
    marker_of = np.full(n_genes, -1, dtype=np.int64)
    level = np.exp(rng.normal(0.0, level_sd, size=n_genes))
    n_mark = min(n_genes, n_markers * K)
    for g in range(n_genes):
        if g < n_mark:
            k = g % K
            marker_of[g] = k
            w = np.zeros(K)
            w[k] = 1.0
            others = np.flatnonzero((np.arange(K) != k) & (rng.random(K) >= sparsity))
            if others.size:
                w[others] = rng.uniform(0.0, 0.1 / max(K - 1, 1), size=others.size)
        else:
            on = rng.random(K) >= sparsity
            need = min(2, K) - int(on.sum())
            if need > 0:
                off = np.flatnonzero(~on)
                on[rng.choice(off, size=need, replace=False)] = True
            w = np.where(on, rng.exponential(1.0, size=K), 0.0)
            if K >= 2:  # cap the top weight at 2x the rest: share <= 2/3
                top = int(np.argmax(w))
                rest = w.sum() - w[top]
                w[top] = min(w[top], 2.0 * rest)
        coef[g] = level[g] * w / w.max()
    return coef.astype(np.float32), marker_of


# ---- noise and missing data -------------------------------------------------------------------
def _missing_sections(section_sizes: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """Bool ``(AP,)``: sections hidden whole, about ``target`` of the brain voxels on average."""
    hidden = np.zeros(section_sizes.size, dtype=bool)
    total = float(section_sizes.sum())
    if target <= 0 or total == 0:
        return hidden
    have = 0.0
    # contiguous runs of 1-3 sections, as damaged or lost slides in the real atlas
    for _ in range(4 * section_sizes.size):
        start = int(rng.integers(section_sizes.size))
        run = slice(start, start + int(rng.integers(1, 4)))
        gain = float(section_sizes[run][~hidden[run]].sum()) / total
        if gain == 0:
            continue
        if have + gain <= target:
            hidden[run] = True
            have += gain
            continue
        # the run overshoots: take it with probability (target - have) / gain and stop, so the
        # expected hidden fraction is exactly the target (randomised rounding)
        if rng.random() < (target - have) / gain:
            hidden[run] = True
        break
    return hidden


def _between(low: float, high: float, closed: str = "both", why: str = "") -> Interval:
    return Interval(Real, low, high, closed=closed, why=why)


#: the constraint of each phantom parameter (``osnmf.params_table`` gives them to ``phantom_*``)
RULES = {
    "n_genes": Interval(Integral, 1), "n_patterns": Interval(Integral, 1), "noise": _between(0, 10),
    "missing": _between(0, 0.95), "sparsity": _between(0, 1, "left", "1 would switch every pattern off"),
    "section_share": _between(0, 1), "background": _between(0, 10), "section_noise": _between(0, 10),
    "smoothing_um": Interval(Real, 0), "n_markers": Interval(Integral, 0),
}


def check_phantom_params(
    n_genes, n_patterns, noise, missing, sparsity, section_share, background, smoothing_um, n_markers, section_noise=0.0
) -> None:
    """Refuse out-of-range phantom parameters with one :class:`ConfigError` line each (:data:`RULES`)."""
    values = {"n_genes": n_genes, "n_patterns": n_patterns, "noise": noise, "missing": missing,
              "sparsity": sparsity, "section_share": section_share, "background": background,
              "section_noise": section_noise, "smoothing_um": smoothing_um, "n_markers": n_markers}
    for name, value in values.items():
        RULES[name].check(name, value)


CHUNK = 128  # experiments per noise block: fixed, so the random stream never depends on memory


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
        from :data:`PATTERN_LIBRARY` (isocortex with an anterior→posterior gradient, olfactory
        bulb, hippocampus, striatum, thalamus, cerebellar cortex, ventral-high midbrain +
        hindbrain, hypothalamus + pallidum, …), more are random unions of medium regions.
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
        from osnmf.datasets.phantom_presets import make_preset

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


def assemble(
    atlas: Atlas,
    rng: np.random.Generator,
    patterns: np.ndarray,
    names: list[str],
    regions: list[list[str]],
    coefficients: np.ndarray,
    marker_of: np.ndarray,
    signal,
    *,
    noise: float,
    missing: float,
    background: float,
    section_share: float,
    section_noise: float,
    real_genes,
    seed: int | None,
    progress: bool,
) -> Phantom:
    """Observe a noiseless signal through the ISH noise and missing-data model of this module.

    ``signal(start, stop)`` returns the noiseless float32 block ``(stop - start, n_brain_voxels)``
    of experiments ``start .. stop-1`` (called once per block of :data:`CHUNK`, in order); it
    becomes ``Phantom.clean``. The noise, missing data and real genes follow :func:`make_phantom`.
    """
    n_genes, n_patterns = coefficients.shape
    if real_genes is True or isinstance(real_genes, (str, Path)):
        raise ConfigError("real_genes takes a list of Allen grid zip paths (they are not packaged)")
    real_paths = [Path(p) for p in real_genes] if real_genes else []
    real_vols, real_syms, real_ids = _read_real(real_paths, atlas)
    n_real = len(real_vols)
    n_total = n_genes + n_real

    brain = atlas.brain_mask
    brain_flat = np.flatnonzero(brain.ravel())
    ap_of_voxel = atlas.brain_coords[:, 0]
    section_sizes = np.bincount(ap_of_voxel, minlength=atlas.shape[0]).astype(np.float64)
    n_vox = patterns.shape[1]

    volumes = np.zeros((n_total, *atlas.shape), dtype=np.float32)
    clean = np.empty((n_total, n_vox), dtype=np.float32)
    miss = np.zeros((n_total, n_vox), dtype=bool)
    sections = np.zeros((n_total, atlas.shape[0]), dtype=bool)
    log_sd = np.float32(np.sqrt(np.log1p(noise**2)))

    with ProgressBar("phantom", n_genes, enabled=progress) as bar:
        for start in range(0, n_genes, CHUNK):
            stop = min(start + CHUNK, n_genes)
            block = np.asarray(signal(start, stop), dtype=np.float32)
            clean[start:stop] = block
            # multiplicative log-normal noise with mean 1 and CV = noise, then a little additive
            obs = rng.standard_normal(block.shape, dtype=np.float32)
            obs *= log_sd
            obs -= log_sd * log_sd / 2
            np.exp(obs, out=obs)
            obs *= block
            if background > 0:
                add = rng.standard_normal(block.shape, dtype=np.float32)
                add *= np.float32(background) * block.max(axis=1, keepdims=True)
                obs += add
                del add
            if section_noise > 0:  # staining differs from section to section
                sec_sd = np.float32(np.sqrt(np.log1p(section_noise**2)))
                gain = rng.standard_normal((stop - start, atlas.shape[0]), dtype=np.float32) * sec_sd
                obs *= np.exp(gain - sec_sd * sec_sd / 2)[:, ap_of_voxel]
            np.maximum(obs, 0.0, out=obs)
            # missing: whole coronal sections, then scattered voxels up to the requested fraction
            for i in range(start, stop):
                sections[i] = _missing_sections(section_sizes, missing * section_share, rng)
            hid = sections[start:stop][:, ap_of_voxel]
            frac = hid.mean(axis=1)
            p = np.clip((missing - frac) / np.maximum(1.0 - frac, 1e-9), 0.0, 1.0).astype(np.float32)
            hid |= rng.random(block.shape, dtype=np.float32) < p[:, None]
            miss[start:stop] = hid
            obs[hid] = np.nan
            for j, i in enumerate(range(start, stop)):
                volumes[i].reshape(-1)[brain_flat] = obs[j]
                volumes[i, sections[i]] = np.nan  # the whole section plane has no data
            bar.update(completed=stop)

    for j, vol in enumerate(real_vols):
        i = n_genes + j
        volumes[i] = vol
        clean[i] = np.nan
        miss[i] = np.isnan(vol[brain])
    coef_all = np.full((n_total, n_patterns), np.nan, dtype=np.float32)
    coef_all[:n_genes] = coefficients
    marker_all = np.full(n_total, -1, dtype=np.int64)
    marker_all[:n_genes] = marker_of
    is_real = np.zeros(n_total, dtype=bool)
    is_real[n_genes:] = True

    width = max(4, len(str(n_genes)))
    genes = [f"Gene{i + 1:0{width}d}" for i in range(n_genes)] + real_syms
    ids = [f"phantom-{i + 1:06d}" for i in range(n_genes)] + real_ids
    data = SpatialExpression(volumes, np.array(genes), np.array(ids), atlas)
    return Phantom(
        data=data,
        patterns=patterns,
        coefficients=coef_all,
        clean=clean,
        pattern_regions=regions,
        missing=miss,
        pattern_names=names,
        marker_of=marker_all,
        is_real=is_real,
        missing_sections=sections,
        noise=float(noise),
        missing_fraction=float(missing),
        seed=seed,
    )


def _gene_symbols() -> dict[str, str]:
    """section_data_set_id -> gene symbol from the packaged list of the paper's experiments."""
    path = resources.files("osnmf.resources").joinpath("coronal_experiments.csv.gz")
    with path.open("rb") as fh, gzip.open(fh, "rt") as text:
        lines = text.read().splitlines()
    header = lines[0].split(",")
    i_id, i_sym = header.index("section_data_set_id"), header.index("gene_symbol")
    out = {}
    for line in lines[1:]:
        parts = line.split(",")
        if len(parts) > max(i_id, i_sym):
            out[parts[i_id]] = parts[i_sym]
    return out


def _read_real(paths: list[Path], atlas: Atlas) -> tuple[list[np.ndarray], list[str], list[str]]:
    from osnmf.io.allen_grid import read_allen_grid_zip

    if not paths:
        return [], [], []
    symbols = _gene_symbols()
    vols, syms, ids = [], [], []
    for path in paths:
        vol = read_allen_grid_zip(path, expected_shape=atlas.shape)["energy"]
        vols.append(vol.astype(np.float32))
        eid = path.name[: -len(".zip")] if path.name.endswith(".zip") else path.stem
        ids.append(eid)
        syms.append(symbols.get(eid, eid))
    if len(set(ids)) != len(ids):
        raise ConfigError("real_genes lists the same experiment twice")
    return vols, syms, ids
