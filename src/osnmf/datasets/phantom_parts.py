"""Building blocks of the synthetic ISH atlas: pattern specs, planting, noise and missing data.

The model is described in :mod:`osnmf.datasets.phantom`; :func:`~osnmf.datasets.phantom.make_phantom`
and the presets (:mod:`osnmf.datasets.phantom_presets`) assemble a :class:`Phantom` from these parts.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from importlib import resources
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from osnmf.atlas import Atlas
from osnmf.constraints import Interval
from osnmf.errors import ConfigError
from osnmf.expression import SpatialExpression
from osnmf.progress import ProgressBar


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


# ---- coefficients ----------------------------------------------------------------------------
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
    from osnmf.formats.allen_grid import read_allen_grid_zip

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
