"""Region prediction test: do the patterns linked to a region reproduce its mask?

A logistic regression predicts a region's mask (default the isocortex) over all brain voxels from
the patterns linked to it; its ROC AUC is compared with models built the same way on random
pattern subsets (the paper: AUC 0.99 for PPs 1–3 vs a median of 0.78 over 1,000 random triples).
The random models use ``random_size`` patterns each (default: as many as the model uses). The
pipeline follows the paper: the model is a triple (:func:`model_patterns`: the linked patterns,
topped up with the patterns most correlated with the region) against random triples; with a single
linked pattern and K = 8 there would be only 8 single-pattern models, and p could never be small.
AUC is measured on the voxels the model was fitted on, as in the paper;
with ``holdout`` a random share of voxels is kept out of the fit and scored instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from osnmf.atlas import Atlas
from osnmf.constraints import POSITIVE, Interval, refuse
from osnmf.errors import InputError
from osnmf.progress import track

PAPER_RANDOM_SIZE = 3  # the paper's random models are pattern triples
PAPER_REGION = "Isocortex"  # the region whose prediction from its linked patterns the paper tests

__all__ = ["PAPER_RANDOM_SIZE", "PAPER_REGION", "RegionPrediction", "linked_patterns", "model_patterns", "region_auc",
           "region_prediction_test"]


def linked_patterns(links, atlas: Atlas, region: int | str = "Isocortex") -> list[int]:
    """Patterns whose best combination holds ``region`` or a region inside it.

    Parameters
    ----------
    links : a :class:`~osnmf.spatial.linking.LinkResult` (or its ``best`` table).
    """
    best = getattr(links, "best", links)
    target = atlas.id_of(region)
    inside = set(atlas.descendants(target, include_self=True))
    return sorted(int(p) for p, ids in zip(best["pattern_index"], best["region_ids"], strict=True)
                  if any(int(s) in inside for s in ids))


def region_patterns(links, correlations, atlas: Atlas, region: int | str = "Isocortex") -> list[int]:
    """The patterns a region is predicted from: :func:`linked_patterns`, or when no pattern's best
    combination lies in the region, the single pattern most correlated with the region's mask.

    Parameters
    ----------
    links : a :class:`~osnmf.spatial.linking.LinkResult` (or its ``best`` table).
    correlations : :func:`osnmf.spatial.region_correlation.region_correlations` (``pattern_index``,
        ``region_id``, ``r``).
    """
    linked = linked_patterns(links, atlas, region)
    if linked:
        return linked
    rows = correlations[correlations["region_id"] == atlas.id_of(region)]
    if rows.empty:
        raise InputError(f"no pattern correlation with {atlas.acronym(region)}: it has no voxel in the support")
    return [int(rows.loc[rows["r"].idxmax(), "pattern_index"])]


def model_patterns(linked: list[int], correlations, atlas: Atlas, region: int | str = "Isocortex",
                   size: int = 3) -> list[int]:
    """The patterns of the region's model: ``linked``, topped up to ``size`` with the other patterns
    most correlated with the region's mask (ties to the lower index); all of them when more are linked.

    Parameters
    ----------
    correlations : :func:`osnmf.spatial.region_correlation.region_correlations` (``pattern_index``,
        ``region_id``, ``r``).
    """
    chosen = sorted({int(i) for i in linked})
    rows = correlations[correlations["region_id"] == atlas.id_of(region)]
    ranked = rows.assign(r=rows["r"].astype(float).fillna(-np.inf)).sort_values(
        ["r", "pattern_index"], ascending=[False, True], kind="stable")
    for p in ranked["pattern_index"].astype(int):
        if len(chosen) >= size:
            break
        if p not in chosen:
            chosen.append(p)
    return sorted(chosen)


def region_auc(features: np.ndarray, target: np.ndarray, C: float = 1.0, holdout: float = 0.0,
               seed: int = 0, standardise: bool = True) -> float:
    """ROC AUC of a logistic regression of ``target`` on standardised ``features``.

    Parameters
    ----------
    features : ``(n_voxels, n_features)``.
    target : bool ``(n_voxels,)``.
    holdout : share of voxels held out of the fit and scored (0 = score the fitted voxels).
    seed : seed of the hold-out split.
    standardise : z-score the features first (skip when they already are).
    """
    x = StandardScaler().fit_transform(features) if standardise else np.asarray(features, dtype=np.float64)
    if holdout > 0:
        rng = np.random.default_rng(seed)
        test = rng.random(target.size) < holdout
        train = ~test
    else:
        train = test = np.ones(target.size, dtype=bool)
    model = LogisticRegression(C=C, solver="newton-cholesky", max_iter=200).fit(x[train], target[train])
    return float(roc_auc_score(target[test], model.decision_function(x[test])))


@dataclass
class RegionPrediction:
    """Outcome of :func:`region_prediction_test`.

    Attributes
    ----------
    region, region_id : the predicted region.
    linked : indices of the patterns used; linked_names their names.
    auc : ROC AUC of the linked model.
    random_subsets : ``(n_random, random_size)`` pattern indices of the random models.
    random_aucs : ``(n_random,)`` their AUCs.
    median_random : median of random_aucs.
    p_value : empirical ``(1 + #{random AUC ≥ auc}) / (n_random + 1)``.
    """

    region: str
    region_id: int
    linked: list[int]
    linked_names: list[str]
    auc: float
    random_subsets: np.ndarray = field(repr=False)
    random_aucs: np.ndarray = field(repr=False)
    median_random: float
    p_value: float

    def summary(self) -> dict:
        return {
            "region": self.region,
            "linked": self.linked_names,
            "auc": self.auc,
            "median_random_auc": self.median_random,
            "p_value": self.p_value,
            "n_random": int(self.random_aucs.size),
            "random_size": int(self.random_subsets.shape[1]),
            "n_distinct_random_subsets": int(len({tuple(s) for s in self.random_subsets})),
        }


def region_prediction_test(
    patterns,
    atlas: Atlas,
    region: int | str = "Isocortex",
    linked=None,
    links=None,
    n_random: int = 1000,
    seed: int = 0,
    C: float = 1.0,
    holdout: float = 0.0,
    pattern_names=None,
    progress: bool = False,
    random_size: int | None = None,
) -> RegionPrediction:
    """Predict a region's mask from its linked patterns and compare with random pattern subsets.

    Parameters
    ----------
    patterns : ``(K, n_brain_voxels)`` in ``atlas.brain_coords`` order.
    region : id or acronym (default Isocortex).
    linked : explicit pattern indices to use; otherwise taken from ``links`` with
        :func:`linked_patterns`.
    links : a LinkResult (or its ``best`` table), used when ``linked`` is None.
    n_random : number of random subsets of the same size (drawn without replacement within a
        subset, independently across models; a subset drawn twice is fitted once).
    seed : seed of the random subsets (and of the hold-out split).
    C : inverse regularisation strength of the logistic regression.
    holdout : share of voxels scored out of the fit (0: in-sample AUC, as in the paper).
    random_size : patterns per random model (default: as many as are linked; at most K).
    """
    pats = np.asarray(patterns, dtype=np.float64)
    if pats.ndim != 2 or pats.shape[1] != atlas.n_brain_voxels:
        raise InputError(f"patterns must be (K, {atlas.n_brain_voxels}) in atlas.brain_coords order, "
                         f"got shape {pats.shape}")
    if not np.isfinite(pats).all():
        raise InputError("patterns contain NaN or inf")
    n_random = POSITIVE.check("n_random", n_random)
    Interval(Real, 0, 1, closed="left").check("holdout", holdout)
    k = pats.shape[0]
    names = [str(n) for n in pattern_names] if pattern_names is not None else (
        getattr(links, "pattern_names", None) or [f"PP{i + 1}" for i in range(k)])
    rid = atlas.id_of(region)
    if linked is None:
        if links is None:
            raise InputError("give the linked patterns (linked=[...]) or a best_combinations result (links=...)")
        linked = linked_patterns(links, atlas, rid)
    linked = sorted({int(i) for i in linked})
    if not linked:
        raise InputError(f"no pattern is linked to {atlas.acronym(rid)}; pass linked=[...] explicitly")
    if linked[0] < 0 or linked[-1] >= k:
        raise InputError(f"linked pattern indices must lie in 0..{k - 1}, got {linked}")
    target = atlas.mask(rid)[atlas.brain_mask]
    if target.all() or not target.any():
        raise InputError(f"{atlas.acronym(rid)} covers none or all of the brain; nothing to predict")

    x = StandardScaler().fit_transform(pats.T)
    cache: dict[tuple[int, ...], float] = {}

    def auc_of(subset) -> float:
        key = tuple(sorted(int(i) for i in subset))
        if key not in cache:
            cache[key] = region_auc(x[:, list(key)], target, C=C, holdout=holdout, seed=seed, standardise=False)
        return cache[key]

    auc = auc_of(linked)
    rng = np.random.default_rng(seed)
    size = len(linked) if random_size is None else int(random_size)
    if not 1 <= size <= k:
        raise refuse("random_size", size, f"an integer in [1, {k}] (the number of patterns)")
    subsets = np.stack([np.sort(rng.choice(k, size=size, replace=False)) for _ in range(n_random)])
    aucs = np.empty(n_random)
    for i, s in enumerate(track(subsets, f"random models for {atlas.acronym(rid)}", enabled=progress)):
        aucs[i] = auc_of(s)
    p = (1 + int(np.sum(aucs >= auc))) / (n_random + 1)
    return RegionPrediction(
        region=atlas.acronym(rid), region_id=rid, linked=linked, linked_names=[names[i] for i in linked],
        auc=auc, random_subsets=subsets, random_aucs=aucs, median_random=float(np.median(aucs)), p_value=p,
    )
