"""``osnmf view DIR``: the principal patterns of a run in napari (the optional ``viewer`` extra).

The run directory's ``patterns.npz`` (read by :func:`osnmf.run.layout.read_patterns`: ``patterns``
K × AP × DV × ML float32, ``pattern_names``, ``spacing_um``) becomes one image layer per pattern,
scaled in micrometres, plus the atlas annotation as a labels layer whose features name each region
(shown on hover).

The layer list is built by :func:`pattern_layers`, a pure function that needs no napari, as napari
"layer data tuples" ``(data, kwargs, layer_type)``; :func:`view_run` hands them to
``viewer.add_<layer_type>(data, **kwargs)``.

The window opens on something to see: every pattern visible in its own grid cell, each in its own
colour (:func:`pattern_colors`), named by what it is (``PP3 · Isocortex``, the run's
``pattern_names``) with the name drawn in its cell, at the coronal section where all patterns show
best (:func:`best_section`), with the atlas regions in a cell of their own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from osnmf.atlas import position_label
from osnmf.errors import ConfigError, InputError
from osnmf.qtcheck import qt_problem
from osnmf.run.layout import read_patterns

INSTALL = "pip install 'osnmf[viewer]'"
AXES = ("AP", "DV", "ML")


def region_features(annotation: np.ndarray, ontology: pd.DataFrame) -> pd.DataFrame:
    """One row per label present in ``annotation`` (0 = outside): index, acronym, name.

    ``ontology`` is indexed by structure id with ``acronym`` and ``name`` columns (``Atlas.ontology``).
    """
    ids = np.unique(annotation).astype(np.int64)
    known = ontology.reindex(ids)
    acronym = known["acronym"].fillna("").astype(str).to_numpy()
    acronym[ids == 0] = "outside"
    return pd.DataFrame({"index": ids, "acronym": acronym, "name": known["name"].fillna("").astype(str).to_numpy()})


def pattern_colors(k: int) -> list[str]:
    """``k`` distinct bright colours (``#rrggbb``), hues evenly spaced around the colour wheel.

    Each becomes a black-to-colour colormap in napari, so patterns stay apart when blended.
    """
    from matplotlib.colors import hsv_to_rgb, to_hex

    return [to_hex(hsv_to_rgb((i / max(k, 1), 0.8 if i % 2 else 1.0, 1.0))) for i in range(k)]


def best_section(patterns: np.ndarray) -> int:
    """The coronal (AP) index where every pattern shows best.

    A pattern's coverage of section ``s`` is the maximum of the pattern in ``s`` over its maximum
    anywhere (1 at its peak section); the section chosen maximises the smallest coverage over the
    patterns, ties broken by the mean coverage, then by the lower index.
    """
    patterns = np.nan_to_num(np.asarray(patterns, dtype=np.float64), nan=0.0)
    if patterns.ndim != 4 or patterns.shape[1] == 0:
        raise InputError(f"patterns must be K × AP × DV × ML, got shape {patterns.shape}")
    per_section = patterns.max(axis=(2, 3))  # (K, AP)
    top = per_section.max(axis=1, keepdims=True)
    coverage = np.divide(per_section, top, out=np.zeros_like(per_section), where=top > 0)
    order = np.lexsort((-np.arange(coverage.shape[1]), coverage.mean(axis=0), coverage.min(axis=0)))
    return int(order[-1])


def pattern_layers(
    patterns: np.ndarray,
    pattern_names: list[str],
    spacing_um=(200.0, 200.0, 200.0),
    annotation: np.ndarray | None = None,
    ontology: pd.DataFrame | None = None,
    n_visible: int | None = None,
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
    n_visible : how many pattern layers start visible (default all; the rest are one click away).

    Returns
    -------
    list of ``(data, kwargs, layer_type)``: K ``"image"`` layers (additive blending, one colour
    each from :func:`pattern_colors`, contrast 0 .. the pattern's own maximum over the whole volume,
    so every section is drawn on the same scale and a pattern absent from a section stays dark
    there) then, with ``annotation``, one visible
    ``"labels"`` layer named ``"annotation"``.
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
    colors = pattern_colors(len(pattern_names))
    n_visible = len(pattern_names) if n_visible is None else n_visible
    for i, (name, volume) in enumerate(zip(pattern_names, patterns, strict=True)):
        top = contrast_top(volume)
        layers.append((volume, {
            "name": str(name), "scale": scale, "colormap": colors[i], "blending": "additive",
            "contrast_limits": (0.0, top),
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
        kwargs = {"name": "annotation", "scale": scale, "opacity": 0.7, "visible": True,
                  "metadata": {"kind": "atlas annotation", "axes": AXES}}
        if ontology is not None:
            kwargs["features"] = region_features(annotation, ontology)
        small = annotation.size == 0 or (annotation.min() >= 0 and annotation.max() < 2**31)
        layers.append((annotation.astype(np.int32 if small else np.int64, copy=False), kwargs, "labels"))
    return layers


def contrast_top(volume: np.ndarray) -> float:
    """Upper contrast limit of one pattern: its maximum over the whole volume (1 when not positive).

    One scale per pattern for every section: a section's own maximum would stretch a pattern's
    noise wherever the pattern is absent, and saturate it where it peaks.
    """
    finite = np.asarray(volume)[np.isfinite(volume)]
    top = float(finite.max()) if finite.size else 0.0
    return top if top > 0 else 1.0


def _import_napari():
    try:
        import napari
    except ImportError as exc:
        raise ConfigError(f"osnmf view needs napari, which is not installed ({exc}); run: {INSTALL}") from None
    return napari


def _check_display() -> None:
    """Qt aborts the process without a display or without its xcb libraries; say so first, in one
    line (offscreen platforms are allowed; :func:`osnmf.qtcheck.qt_problem`)."""
    if not sys.platform.startswith("linux"):
        return
    if os.environ.get("QT_QPA_PLATFORM") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        problem = qt_problem()
        if problem:
            raise ConfigError(problem)
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


def _open_on_patterns(viewer, added: list, section: int, spacing_um, n_sections: int) -> None:
    """Grid of one cell per layer, each named in its cell, at coronal ``section`` (older napari
    versions lack some of these; what exists is used)."""
    canvas = getattr(viewer, "canvas", None)
    grid = getattr(canvas, "grid", None) or getattr(viewer, "grid", None)
    if grid is not None:
        grid.enabled = True
    for layer in added:
        overlay = getattr(layer, "name_overlay", None)
        if overlay is not None:
            overlay.visible = True
    # step away first: when ``section`` is napari's initial (middle) step, setting it alone would not
    # slice the layers again after the changes above, and the canvas would stay black
    viewer.dims.set_current_step(0, (section + 1) % max(n_sections, 1))
    viewer.dims.set_current_step(0, section)
    overlays = getattr(canvas, "overlays", None)
    text = getattr(overlays, "text", None) or getattr(viewer, "text_overlay", None)
    if text is not None:  # short, bottom left: clear of the scale bar (bottom right)
        text.text = section_text(section, n_sections, spacing_um)
        text.position = "bottom_left"
        text.font_size = 10
        text.visible = True
        _follow_slider(viewer, text, n_sections, spacing_um)
    _select_first_pattern(viewer, added)
    _fit_window(viewer)


def section_text(section: int, n_sections: int, spacing_um) -> str:
    """The overlay's text: ``AP 5.6 mm from grid front edge (not bregma) · section 29 of 67``."""
    return f"{position_label('AP', section, spacing_um)} · section {section + 1} of {n_sections}"


def _follow_slider(viewer, text, n_sections: int, spacing_um) -> None:
    """Rewrite the overlay whenever the AP slider moves (napari's ``dims.events.current_step``)."""
    events = getattr(getattr(viewer.dims, "events", None), "current_step", None)
    if events is None:
        return

    def update(event=None) -> None:
        text.text = section_text(int(viewer.dims.current_step[0]), n_sections, spacing_um)

    events.connect(update)


def _select_first_pattern(viewer, added: list) -> None:
    """Make the first pattern the active layer, so the atlas labels are not open for painting."""
    selection = getattr(getattr(viewer, "layers", None), "selection", None)
    if selection is not None and added:
        selection.active = added[0]


def _screen_size() -> tuple[int, int] | None:
    """Width and height (pixels) of the screen's available area; None without a Qt application."""
    try:
        from qtpy.QtWidgets import QApplication

        screen = QApplication.primaryScreen().availableGeometry()
    except (ImportError, AttributeError):
        return None
    return screen.width(), screen.height()


def _process_events() -> None:
    """Let Qt handle pending events (a resize); nothing without Qt (napari not installed with it)."""
    try:
        from qtpy.QtWidgets import QApplication
    except ImportError:
        return
    QApplication.processEvents()


def _fit_window(viewer, fraction: float = 0.85) -> None:
    """Size the window to ``fraction`` of the screen, then fit every grid cell inside the canvas."""
    size, window = _screen_size(), getattr(viewer, "window", None)
    if size is not None and hasattr(window, "resize"):
        window.resize(int(size[0] * fraction), int(size[1] * fraction))
        _process_events()  # let the canvas take its new size before fitting the view
    if hasattr(viewer, "reset_view"):
        try:
            viewer.reset_view(margin=0.08)  # room for the overlays at the canvas edges
        except TypeError:  # napari < 0.6 has no margin
            viewer.reset_view()


def view_run(run_dir: str | os.PathLike, annotation: bool = True, show: bool = True):
    """Open the patterns of ``run_dir`` in a napari viewer and return it.

    The window opens on a grid of all patterns (own colour, anatomical name) at the coronal
    section where all of them show best (:func:`best_section`). ``annotation`` adds the default
    atlas annotation as a labels layer when its grid matches the patterns'. ``show`` starts
    napari's event loop (blocks until the window is closed).
    Raises :class:`InputError` for a missing or invalid run directory and :class:`ConfigError`
    when napari (``pip install 'osnmf[viewer]'``) or a display is missing.
    """
    run = read_patterns(run_dir)
    napari = _import_napari()
    _check_display()
    labels = ontology = None
    if annotation:
        from osnmf.atlas import Atlas

        atlas = Atlas.default()
        if atlas.shape == run.patterns.shape[1:]:
            labels, ontology = atlas.annotation, atlas.ontology
    section = best_section(run.patterns)
    layers = pattern_layers(run.patterns, run.pattern_names, run.spacing_um, labels, ontology)
    try:
        viewer = napari.Viewer(title=f"osnmf: {Path(run_dir).resolve().name} (opens on the coronal section where "
                                     "all patterns show best; move the AP slider for others)", ndisplay=2)
    except ImportError as exc:  # napari without a Qt backend
        raise ConfigError(f"napari cannot open a window ({exc}); run: {INSTALL}") from None
    added = [getattr(viewer, f"add_{layer_type}")(data, **kwargs) for data, kwargs, layer_type in layers]
    viewer.dims.axis_labels = AXES
    _show_micrometres(viewer, added)
    _open_on_patterns(viewer, added, section, run.spacing_um, run.patterns.shape[1])
    if show:
        napari.run()
    return viewer
