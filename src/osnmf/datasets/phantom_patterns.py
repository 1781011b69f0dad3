"""Planted spatial patterns of the synthetic atlas: region-shaped specs, their library, smoothing, ramps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from osnmf.atlas import Atlas
from osnmf.errors import ConfigError, InputError

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
