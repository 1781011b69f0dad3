"""``osnmf view DIR``: the principal patterns of a run in napari (the optional ``viewer`` extra).

The run directory's ``patterns.npz`` (``patterns`` K × AP × DV × ML float32, ``pattern_names``,
``spacing_um``) becomes one image layer per pattern, scaled in micrometres, plus the atlas
annotation as a labels layer whose features name each region (shown on hover).

The layer list is built by :func:`pattern_layers`, a pure function that needs no napari, as napari
"layer data tuples" ``(data, kwargs, layer_type)``; :func:`view_run` hands them to
``viewer.add_<layer_type>(data, **kwargs)``.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from osnmf.errors import ConfigError, InputError

INSTALL = "pip install 'osnmf[viewer]'"
AXES = ("AP", "DV", "ML")
PATTERN_COLORMAP = "magma"


def load_patterns(run_dir: str | os.PathLike) -> dict:
    """Read and check ``<run_dir>/patterns.npz``.

    Returns
    -------
    dict with ``patterns`` (float32, ``(K, AP, DV, ML)``), ``pattern_names`` (list of K str),
    ``spacing_um`` (3 floats, voxel size along AP, DV, ML in µm) and ``path`` (the file).

    Raises
    ------
    InputError : the folder or file is missing, unreadable, or its arrays are inconsistent.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} not found; pass the --out folder of 'osnmf run' or 'osnmf demo'")
    path = run_dir / "patterns.npz"
    if not path.is_file():
        raise InputError(f"{run_dir} has no patterns.npz; is it a finished run? (rerun 'osnmf run --out {run_dir}')")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("patterns", "pattern_names", "spacing_um") if k not in npz.files]
            if missing:
                raise InputError(f"{path} lacks array(s) {', '.join(missing)}; rerun the pipeline to rewrite it")
            patterns = np.asarray(npz["patterns"])
            names = [str(n) for n in np.asarray(npz["pattern_names"]).ravel()]
            spacing = np.asarray(npz["spacing_um"], dtype=float).ravel()
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if patterns.ndim != 4 or not np.issubdtype(patterns.dtype, np.number):
        raise InputError(f"{path}: 'patterns' must be numeric K × AP × DV × ML, got {patterns.dtype} {patterns.shape}")
    if len(names) != patterns.shape[0]:
        raise InputError(f"{path}: {len(names)} pattern names for {patterns.shape[0]} patterns")
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise InputError(f"{path}: 'spacing_um' must be 3 positive numbers (AP, DV, ML), got {spacing.tolist()}")
    return {"patterns": patterns.astype(np.float32, copy=False), "pattern_names": names,
            "spacing_um": tuple(float(s) for s in spacing), "path": path}


def region_features(annotation: np.ndarray, ontology: pd.DataFrame) -> pd.DataFrame:
    """One row per label present in ``annotation`` (0 = outside): index, acronym, name.

    ``ontology`` is indexed by structure id with ``acronym`` and ``name`` columns (``Atlas.ontology``).
    """
    ids = np.unique(annotation).astype(np.int64)
    known = ontology.reindex(ids)
    acronym = known["acronym"].fillna("").astype(str).to_numpy()
    acronym[ids == 0] = "outside"
    return pd.DataFrame({"index": ids, "acronym": acronym, "name": known["name"].fillna("").astype(str).to_numpy()})


def pattern_layers(
    patterns: np.ndarray,
    pattern_names: list[str],
    spacing_um=(200.0, 200.0, 200.0),
    annotation: np.ndarray | None = None,
    ontology: pd.DataFrame | None = None,
    n_visible: int = 1,
) -> list[tuple[np.ndarray, dict, str]]:
    """napari layer data tuples for a run's patterns (and the atlas annotation).

    Parameters
    ----------
    patterns : ``(K, AP, DV, ML)`` pattern volumes (zero outside the brain).
    pattern_names : K layer names.
    spacing_um : voxel size along (AP, DV, ML) in µm; becomes each layer's ``scale``, so napari's
        world coordinates (and its scale bar) are micrometres.
    annotation : optional integer structure ids ``(AP, DV, ML)``; 0 outside the brain.
    ontology : optional ontology table (index = id, ``acronym``, ``name``) for the labels' features.
    n_visible : how many pattern layers start visible (the rest are one click away).

    Returns
    -------
    list of ``(data, kwargs, layer_type)``: K ``"image"`` layers (additive blending, magma,
    contrast 0..max) then, with ``annotation``, one ``"labels"`` layer named ``"annotation"``.
    """
    patterns = np.asarray(patterns)
    if patterns.ndim != 4:
        raise InputError(f"patterns must be K × AP × DV × ML, got shape {patterns.shape}")
    if len(pattern_names) != patterns.shape[0]:
        raise InputError(f"{len(pattern_names)} pattern names for {patterns.shape[0]} patterns")
    scale = tuple(float(s) for s in spacing_um)
    if len(scale) != 3:
        raise InputError(f"spacing_um must have 3 entries (AP, DV, ML), got {scale}")
    layers: list[tuple[np.ndarray, dict, str]] = []
    for i, (name, volume) in enumerate(zip(pattern_names, patterns, strict=True)):
        top = float(np.nanmax(volume)) if volume.size else 0.0
        layers.append((volume, {
            "name": str(name), "scale": scale, "colormap": PATTERN_COLORMAP, "blending": "additive",
            "contrast_limits": (0.0, top if np.isfinite(top) and top > 0 else 1.0),
            "visible": i < n_visible, "metadata": {"kind": "osnmf pattern", "axes": AXES},
        }, "image"))
    if annotation is not None:
        annotation = np.asarray(annotation)
        if annotation.shape != patterns.shape[1:]:
            raise InputError(
                f"annotation shape {annotation.shape} differs from the patterns' grid {patterns.shape[1:]}"
            )
        if not np.issubdtype(annotation.dtype, np.integer):
            raise InputError(f"annotation must hold integer structure ids, got {annotation.dtype}")
        kwargs = {"name": "annotation", "scale": scale, "opacity": 0.3, "visible": False,
                  "metadata": {"kind": "atlas annotation", "axes": AXES}}
        if ontology is not None:
            kwargs["features"] = region_features(annotation, ontology)
        small = annotation.size == 0 or (annotation.min() >= 0 and annotation.max() < 2**31)
        layers.append((annotation.astype(np.int32 if small else np.int64, copy=False), kwargs, "labels"))
    return layers


def _import_napari():
    try:
        import napari
    except ImportError as exc:
        raise ConfigError(f"osnmf view needs napari, which is not installed ({exc}); run: {INSTALL}") from None
    return napari


def _check_display() -> None:
    """Qt aborts the process without a display; say so first (offscreen platforms are allowed)."""
    if not sys.platform.startswith("linux"):
        return
    if os.environ.get("QT_QPA_PLATFORM") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    raise ConfigError("osnmf view opens a window but no display is set (DISPLAY/WAYLAND_DISPLAY); "
                      "run it on a desktop or over ssh -X, or open the patterns/*.nrrd files elsewhere")


def _show_micrometres(viewer, layers: list) -> None:
    """Scale bar in µm: per-layer ``units`` (napari ≥ 0.6) or the scale bar's ``unit`` (older)."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    bar = getattr(overlays, "scale_bar", None) or viewer.scale_bar  # napari ≥ 0.9 moved it
    bar.visible = True
    if layers and all(hasattr(layer, "units") for layer in layers):
        for layer in layers:
            layer.units = ("um",) * 3
    else:
        bar.unit = "um"


def view_run(run_dir: str | os.PathLike, annotation: bool = True, show: bool = True):
    """Open the patterns of ``run_dir`` in a napari viewer and return it.

    ``annotation`` adds the default atlas annotation as a labels layer when its grid matches the
    patterns'. ``show`` starts napari's event loop (blocks until the window is closed).
    Raises :class:`InputError` for a missing or invalid run directory and :class:`ConfigError`
    when napari (``pip install 'osnmf[viewer]'``) or a display is missing.
    """
    run = load_patterns(run_dir)
    napari = _import_napari()
    _check_display()
    labels = ontology = None
    if annotation:
        from osnmf.atlas import Atlas

        atlas = Atlas.default()
        if atlas.shape == run["patterns"].shape[1:]:
            labels, ontology = atlas.annotation, atlas.ontology
    layers = pattern_layers(run["patterns"], run["pattern_names"], run["spacing_um"], labels, ontology)
    try:
        viewer = napari.Viewer(title=f"osnmf: {Path(run_dir).resolve().name}", ndisplay=2)
    except ImportError as exc:  # napari without a Qt backend
        raise ConfigError(f"napari cannot open a window ({exc}); run: {INSTALL}") from None
    added = [getattr(viewer, f"add_{layer_type}")(data, **kwargs) for data, kwargs, layer_type in layers]
    viewer.dims.axis_labels = AXES
    _show_micrometres(viewer, added)
    if show:
        napari.run()
    return viewer
