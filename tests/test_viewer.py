"""`osnmf view`: reading a run's patterns.npz, the napari layers it becomes, and the messages a user
gets for a bad run directory or a missing napari. napari itself is replaced by a recording double
(the `viewer` extra is not part of the test environment)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

from osnmf import cli
from osnmf.atomic import save_npz
from osnmf.errors import ConfigError, InputError
from osnmf.run.layout import read_patterns
from osnmf.viewer import INSTALL, best_section, pattern_colors, pattern_layers, region_features, view_run


def _run_dir(tmp_path, shape=(6, 5, 4), k=3, spacing=(200.0, 100.0, 50.0), **extra):
    rng = np.random.default_rng(1)
    patterns = rng.random((k, *shape)).astype(np.float32)
    patterns[:, 0] = 0.0  # zero outside the "brain"
    genes = np.array([f"g{i}" for i in range(10)])
    arrays = {"patterns": patterns, "coefficients": rng.random((10, k)), "genes": genes,
              "pattern_names": np.array([f"PP{i + 1}" for i in range(k)]), "spacing_um": np.array(spacing),
              "support": patterns.max(axis=0) > 0}
    arrays.update(extra)
    save_npz(tmp_path / "patterns.npz", **{k: v for k, v in arrays.items() if v is not None})
    return tmp_path, patterns


def test_read_patterns_roundtrip(tmp_path):
    run, patterns = _run_dir(tmp_path)
    got = read_patterns(run)
    np.testing.assert_array_equal(got.patterns, patterns)
    np.testing.assert_array_equal(got.support, patterns.max(axis=0) > 0)
    assert got.pattern_names == ["PP1", "PP2", "PP3"]
    assert got.spacing_um == (200.0, 100.0, 50.0)
    assert got.path == tmp_path / "patterns.npz"


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no_dir", ["not found", "--out"]),
        ("no_npz", ["no patterns.npz"]),
        ("garbage", ["cannot read"]),
        ("pickled", ["cannot read"]),
        ("no_names", ["pattern_names"]),
        ("no_support", ["lacks", "support"]),
        ("bad_support", ["'support' must be a bool"]),
        ("names_mismatch", ["2 pattern names for 3 patterns"]),
        ("three_d", ["K × AP × DV × ML"]),
        ("bad_spacing", ["spacing_um"]),
    ],
)
def test_bad_run_dir_is_input_error(tmp_path, case, words):
    run = tmp_path / "run"
    run.mkdir()
    if case == "no_dir":
        run = tmp_path / "missing"
    elif case == "garbage":
        (run / "patterns.npz").write_bytes(b"PK\x03\x04 not really a zip")
    elif case == "pickled":
        np.savez(run / "patterns.npz", patterns=np.array([{"a": 1}], dtype=object),
                 pattern_names=np.array(["PP1"]), spacing_um=np.ones(3), support=np.ones((1, 1, 1), bool))
    elif case == "no_names":
        _run_dir(run, pattern_names=None)
    elif case == "no_support":
        _run_dir(run, support=None)
    elif case == "bad_support":
        _run_dir(run, support=np.ones((6, 5), bool))
    elif case == "names_mismatch":
        _run_dir(run, pattern_names=np.array(["a", "b"]))
    elif case == "three_d":
        _run_dir(run, patterns=np.zeros((3, 4, 5), np.float32))
    elif case == "bad_spacing":
        _run_dir(run, spacing=(200.0, -1.0, 200.0))
    with pytest.raises(InputError) as exc:
        read_patterns(run)
    message = str(exc.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_pattern_layers_images_and_labels(atlas):
    crop = (slice(20, 30), slice(10, 18), slice(25, 33))
    annotation = atlas.annotation[crop]
    rng = np.random.default_rng(2)
    patterns = (rng.random((2, *annotation.shape)) * (annotation > 0)).astype(np.float32)
    layers = pattern_layers(patterns, ["PP1", "PP2"], atlas.spacing_um, annotation, atlas.ontology)

    assert [t for _, _, t in layers] == ["image", "image", "labels"]
    for i, (data, kw, _) in enumerate(layers[:2]):
        assert data is patterns[i] or np.shares_memory(data, patterns)
        assert kw["name"] == f"PP{i + 1}"
        assert kw["scale"] == (200.0, 200.0, 200.0)
        assert kw["contrast_limits"] == (0.0, pytest.approx(float(patterns[i].max())))
        assert kw["visible"] is True  # every pattern visible (each in its own grid cell)
        assert kw["colormap"] == pattern_colors(2)[i]
    labels, kw, _ = layers[2]
    np.testing.assert_array_equal(labels, annotation.astype(np.int64))
    assert labels.dtype == np.int32 and kw["name"] == "annotation" and kw["scale"] == (200.0, 200.0, 200.0)
    feats = kw["features"]
    present = sorted(set(annotation.ravel().tolist()))
    assert feats["index"].tolist() == present
    for region_id, acronym, name in feats.itertuples(index=False):
        if region_id == 0:
            assert acronym == "outside"
        else:  # the atlas' own lookups as reference
            assert acronym == atlas.acronym(int(region_id)) and name == atlas.name(int(region_id))


def test_pattern_layers_edge_cases():
    zeros = np.zeros((1, 2, 2, 2), np.float32)
    (_, kw, _), = pattern_layers(zeros, ["flat"], (10, 20, 30))
    assert kw["contrast_limits"] == (0.0, 1.0) and kw["scale"] == (10.0, 20.0, 30.0)
    with pytest.raises(InputError, match="differs from the patterns' grid"):
        pattern_layers(zeros, ["flat"], annotation=np.zeros((2, 2, 3), np.int32))
    with pytest.raises(InputError, match="1 pattern names for 2 patterns"):
        pattern_layers(np.zeros((2, 2, 2, 2)), ["one"])
    with pytest.raises(InputError, match="integer structure ids"):
        pattern_layers(zeros, ["flat"], annotation=np.zeros((2, 2, 2), float))


def test_region_features_unknown_id():
    onto = pd.DataFrame({"acronym": ["CTX"], "name": ["Cortex"]}, index=pd.Index([5], name="id"))
    feats = region_features(np.array([[0, 5], [7, 5]]), onto)
    assert feats.to_dict("list") == {"index": [0, 5, 7], "acronym": ["outside", "CTX", ""],
                                     "name": ["", "Cortex", ""]}


def test_missing_napari_is_config_error(tmp_path, monkeypatch):
    run, _ = _run_dir(tmp_path)
    monkeypatch.setitem(sys.modules, "napari", None)  # makes `import napari` raise ImportError
    with pytest.raises(ConfigError) as exc:
        view_run(run)
    assert INSTALL in str(exc.value) and "\n" not in str(exc.value)


class _FakeDims:
    def __init__(self):
        self.axis_labels, self.current_step = None, [0, 0, 0]

    def set_current_step(self, axis, value):
        self.current_step[axis] = value


class _FakeViewer:
    def __init__(self, **kwargs):
        self.kwargs, self.added = kwargs, []
        self.dims = _FakeDims()
        self.scale_bar = types.SimpleNamespace(visible=False, unit=None)
        self.grid = types.SimpleNamespace(enabled=False)
        self.text_overlay = types.SimpleNamespace(visible=False, text="")

    def add_image(self, data, **kwargs):
        self.added.append(("image", data, kwargs))

    def add_labels(self, data, **kwargs):
        self.added.append(("labels", data, kwargs))


class _FakeViewerWithUnits(_FakeViewer):
    """napari >= 0.6: layers carry ``units``; >= 0.9: the scale bar lives in ``canvas.overlays``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.canvas = types.SimpleNamespace(overlays=types.SimpleNamespace(scale_bar=self.scale_bar,
                                                                           text=self.text_overlay),
                                            grid=self.grid)
        self.layers = []

    def _layer(self):
        self.layers.append(types.SimpleNamespace(units=None, name_overlay=types.SimpleNamespace(visible=False)))
        return self.layers[-1]

    def add_image(self, data, **kwargs):
        _FakeViewer.add_image(self, data, **kwargs)
        return self._layer()

    def add_labels(self, data, **kwargs):
        _FakeViewer.add_labels(self, data, **kwargs)
        return self._layer()


@pytest.mark.parametrize("viewer_class", [_FakeViewer, _FakeViewerWithUnits])
def test_view_run_adds_every_layer(tmp_path, monkeypatch, atlas, viewer_class):
    run, patterns = _run_dir(tmp_path, shape=atlas.shape, k=2, spacing=atlas.spacing_um)
    ran = []
    fake = types.SimpleNamespace(Viewer=viewer_class, run=lambda: ran.append(True))
    monkeypatch.setitem(sys.modules, "napari", fake)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    viewer = view_run(run)
    assert [(t, kw["name"]) for t, _, kw in viewer.added] == [("image", "PP1"), ("image", "PP2"),
                                                             ("labels", "annotation")]
    np.testing.assert_array_equal(viewer.added[1][1], patterns[1])
    np.testing.assert_array_equal(viewer.added[2][1], atlas.annotation)
    assert viewer.dims.axis_labels == ("AP", "DV", "ML") and viewer.scale_bar.visible
    if viewer_class is _FakeViewerWithUnits:
        assert [layer.units for layer in viewer.layers] == [("um",) * 3] * 3 and viewer.scale_bar.unit is None
    else:
        assert viewer.scale_bar.unit == "um"
    assert ran == [True]
    # it opens on something to see: all patterns in a grid, at the section where all show best
    assert viewer.grid.enabled and all(kw["visible"] for _, _, kw in viewer.added)
    assert viewer.dims.current_step[0] == _best_section_brute_force(patterns)
    assert viewer.text_overlay.visible and f"section {viewer.dims.current_step[0] + 1} of " in viewer.text_overlay.text
    if viewer_class is _FakeViewerWithUnits:
        assert all(layer.name_overlay.visible for layer in viewer.layers)
    # a grid other than the default atlas: patterns only
    other = tmp_path / "other"
    other.mkdir()
    _run_dir(other, shape=(5, 5, 5), k=1)
    assert [t for t, _, _ in view_run(other, show=False).added] == ["image"]


def test_no_display_is_config_error(tmp_path, monkeypatch):
    run, _ = _run_dir(tmp_path)
    monkeypatch.setitem(sys.modules, "napari", types.SimpleNamespace(Viewer=_FakeViewer, run=lambda: None))
    monkeypatch.setattr(sys, "platform", "linux")
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="no display"):
        view_run(run, annotation=False)


@pytest.mark.parametrize("napari_present", [False, True])
def test_cli_view_exit_2_one_line(tmp_path, monkeypatch, capsys, napari_present):
    """Missing napari and a missing run directory: one line on stderr, exit code 2."""
    if napari_present:
        monkeypatch.setitem(sys.modules, "napari", types.SimpleNamespace(Viewer=_FakeViewer, run=lambda: None))
        target = tmp_path / "nope"
        expected = f"error: run directory {target} not found; pass the --out folder of 'osnmf run' or 'osnmf demo'"
    else:
        monkeypatch.setitem(sys.modules, "napari", None)
        try:  # the ImportError text Python gives for a blocked module, as the message quotes it
            import napari  # noqa: F401
        except ImportError as blocked:
            reason = str(blocked)
        target = _run_dir(tmp_path)[0]
        expected = (f"error: osnmf view needs napari, which is not installed ({reason}); "
                    "run: pip install 'osnmf[viewer]'")
    monkeypatch.setattr(sys, "argv", ["osnmf", "view", str(target)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert err == expected + "\n"  # the whole message, as written: no markup eaten, no emoji


def test_cli_help_shows_install_hint_verbatim(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["osnmf", "view", "--help"])
    try:
        cli.main()
    except SystemExit as exc:
        assert not exc.code
    out = " ".join(capsys.readouterr().out.split())
    assert "Open the patterns of a run in napari (needs the viewer extra: pip install 'osnmf[viewer]')." in out


def _best_section_brute_force(patterns) -> int:
    """Loop over sections: the one whose worst pattern coverage (section max / overall max) is largest."""
    best, best_key = None, None
    for s in range(patterns.shape[1]):
        cov = [float(p[s].max() / p.max()) if p.max() > 0 else 0.0 for p in patterns]
        key = (min(cov), sum(cov) / len(cov))
        if best_key is None or key > best_key:
            best, best_key = s, key
    return best


def test_best_section_is_where_every_pattern_shows():
    shape = (30, 6, 7)
    patterns = np.zeros((3, *shape), np.float32)
    patterns[0, 5, 2, 3] = 4.0      # a sharp peak at section 5 …
    patterns[0, 12, 2, 3] = 1.0     # … and some signal at 12
    patterns[1, 10:16] = 2.0        # a slab 10..15
    patterns[2, 12, 1, 1] = 0.5     # only at 12
    patterns[2, 20, 1, 1] = 1.0     # peak at 20
    assert best_section(patterns) == 12 == _best_section_brute_force(patterns)
    rng = np.random.default_rng(3)
    for _ in range(5):
        random = rng.random((4, 9, 3, 3)) ** 8
        assert best_section(random) == _best_section_brute_force(random)
    with pytest.raises(InputError, match="K × AP × DV × ML"):
        best_section(np.zeros((3, 4, 5)))


@pytest.mark.parametrize("k", [1, 2, 8, 30])
def test_pattern_colors_distinct(k):
    from matplotlib.colors import to_rgb

    colors = np.array([to_rgb(c) for c in pattern_colors(k)])
    assert colors.shape == (k, 3) and len(set(pattern_colors(k))) == k
    assert (colors.max(axis=1) == 1.0).all()  # bright: visible on napari's black canvas
    if k > 1:
        gaps = np.linalg.norm(colors[:, None] - colors[None], axis=-1)[~np.eye(k, dtype=bool)]
        assert gaps.min() > 0.1


class _FakeWindow:
    def __init__(self):
        self.size = None

    def resize(self, width, height):
        self.size = (width, height)


class _FakeViewerFull(_FakeViewerWithUnits):
    """napari >= 0.9 as the window opens: a layer selection, a window, reset_view, a scale bar corner."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scale_bar.position = "bottom_right"
        self.text_overlay.position = "top_left"
        self.layers = types.SimpleNamespace(selection=types.SimpleNamespace(active=None), items=[])
        self.window, self.margins = _FakeWindow(), []

    def _layer(self):
        layer = types.SimpleNamespace(units=None, name_overlay=types.SimpleNamespace(visible=False))
        self.layers.items.append(layer)
        self.layers.selection.active = layer  # napari selects each layer it adds
        return layer

    def reset_view(self, margin=0.05):
        self.margins.append(margin)


def test_view_run_opens_ready_to_read(tmp_path, monkeypatch, atlas):
    """Each pattern bright at the opening section, a short overlay clear of the scale bar, the first
    pattern selected (not the labels, so nothing is painted by a stray click), the window sized to the
    screen before the view is fitted."""
    import osnmf.viewer as viewer_module

    patterns = np.random.default_rng(4).random((3, *atlas.shape)).astype(np.float32)
    patterns[1] *= 0.05  # a weak pattern: its own contrast, not dimmed by the others
    run, _ = _run_dir(tmp_path, shape=atlas.shape, k=3, spacing=atlas.spacing_um, patterns=patterns)
    monkeypatch.setitem(sys.modules, "napari", types.SimpleNamespace(Viewer=_FakeViewerFull, run=lambda: None))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr(viewer_module, "_screen_size", lambda: (2000, 1000))
    viewer = view_run(run)
    section = viewer.dims.current_step[0]
    for i, (_, _, kw) in enumerate(viewer.added[:3]):  # contrast 0 … the pattern's own max anywhere
        assert kw["contrast_limits"] == (0.0, pytest.approx(float(patterns[i].max())))
    assert viewer.layers.selection.active is viewer.layers.items[0]
    text = viewer.text_overlay
    assert text.visible and len(text.text) <= 70 and text.position != viewer.scale_bar.position
    assert text.text.startswith(f"AP {section * atlas.spacing_um[0] / 1000:.1f} mm from grid front edge (not bregma)")
    assert viewer.window.size == (1700, 850) and viewer.margins and viewer.margins[-1] >= 0.05


def test_pattern_layers_contrast_over_the_whole_volume():
    """Contrast top = the pattern's maximum over every section (a loop over sections as reference),
    whichever section the window opens on; 1 for a pattern that is zero everywhere. A pattern absent
    from a section keeps its dark there: its noise is not stretched to the section's own maximum."""
    rng = np.random.default_rng(3)
    patterns = rng.random((3, 6, 4, 5)).astype(np.float32) * 0.01  # noise everywhere …
    patterns[0, 4, 1, 1] = 7.0  # … and a peak in section 4 only
    patterns[1] *= 10.0
    patterns[2] = 0.0
    layers = pattern_layers(patterns, ["a", "b", "c"])
    tops = [kw["contrast_limits"][1] for _, kw, _ in layers]
    loop = [max(float(p[s].max()) for s in range(p.shape[0])) for p in patterns[:2]]
    assert tops == [pytest.approx(loop[0]), pytest.approx(loop[1]), 1.0]
    assert tops[0] == pytest.approx(7.0)
    # section 0 of pattern 0 is noise: shown at most 0.01 / 7 of full brightness, not stretched to 1
    assert float(patterns[0, 0].max()) / tops[0] < 0.002
    nan = patterns[:1].copy()
    nan[0, 0, 0, 0] = np.nan
    assert pattern_layers(nan, ["n"])[0][1]["contrast_limits"] == (0.0, pytest.approx(7.0))


class _Signal:
    def __init__(self):
        self.callbacks = []

    def connect(self, callback):
        self.callbacks.append(callback)


class _SliderDims(_FakeDims):
    """napari's dims: moving the slider emits ``events.current_step``."""

    def __init__(self):
        super().__init__()
        self.events = types.SimpleNamespace(current_step=_Signal())

    def set_current_step(self, axis, value):
        super().set_current_step(axis, value)
        for callback in self.events.current_step.callbacks:
            callback(types.SimpleNamespace(value=tuple(self.current_step)))


class _SliderViewer(_FakeViewerFull):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dims = _SliderDims()


def test_overlay_follows_the_slider(tmp_path, monkeypatch, atlas):
    """After the window opens, each slider move rewrites the overlay: AP mm from the grid's front
    edge (index × spacing) and the section number of the step the slider is on."""
    import osnmf.viewer as viewer_module

    run, _ = _run_dir(tmp_path, shape=atlas.shape, k=2, spacing=atlas.spacing_um)
    monkeypatch.setitem(sys.modules, "napari", types.SimpleNamespace(Viewer=_SliderViewer, run=lambda: None))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr(viewer_module, "_screen_size", lambda: None)
    viewer = view_run(run)
    n = atlas.shape[0]
    for step in (0, 7, n - 1):
        viewer.dims.set_current_step(0, step)
        mm = step * atlas.spacing_um[0] / 1000
        assert viewer.text_overlay.text == (f"AP {mm:.1f} mm from grid front edge (not bregma) · "
                                            f"section {step + 1} of {n}")
