"""`osnmf view` without Qt's xcb libraries: one line naming the packages to install, exit 2, never
Qt's abort (SIGABRT, exit 134). The ldd output below is what `ldd PyQt6/Qt6/plugins/platforms/libqxcb.so`
printed on a Debian 12 machine without libxcb-icccm4 and libxcb-keysyms1 (where a QApplication
aborted with exit 134); the package names are checked against Debian's archive (`apt-cache show`)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

import osnmf.qtcheck as qtcheck
from osnmf import cli
from osnmf.atomic import save_npz

LDD = """\
\tlinux-vdso.so.1 (0x00007ffd5d1f2000)
\tlibQt6XcbQpa.so.6 => /venv/PyQt6/Qt6/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f2c1a000000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f2c19ff0000)
\tlibxcb-icccm.so.4 => not found
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f2c19fe0000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibX11-xcb.so.1 => /lib/x86_64-linux-gnu/libX11-xcb.so.1 (0x00007f2c19fd0000)
"""


@pytest.mark.parametrize(("soname", "package"), [
    # Debian 12 package names, from the archive (apt-cache show <package>)
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1"), ("libxcb-render-util.so.0", "libxcb-render-util0"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"), ("libX11-xcb.so.1", "libx11-xcb1"),
    ("libdbus-1.so.3", "libdbus-1-3"), ("libEGL.so.1", "libegl1"), ("libxcb-xkb.so.1", "libxcb-xkb1"),
])
def test_debian_package_names(soname, package):
    assert qtcheck.debian_package(soname) == package


def test_missing_libraries_from_ldd():
    assert qtcheck.missing_libraries(LDD) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert qtcheck.missing_libraries("") == []


def _fake_binding(monkeypatch, tmp_path):
    plugin = tmp_path / "PyQt6" / "Qt6" / "plugins" / "platforms" / "libqxcb.so"
    plugin.parent.mkdir(parents=True)
    plugin.write_bytes(b"")
    monkeypatch.setattr(qtcheck.importlib.util, "find_spec", lambda name: types.SimpleNamespace(
        submodule_search_locations=[str(tmp_path / name)]) if name == "PyQt6" else None)
    return plugin


def test_qt_problem_names_packages(monkeypatch, tmp_path):
    plugin = _fake_binding(monkeypatch, tmp_path)
    monkeypatch.setattr(sys, "platform", "linux")
    seen, probed = [], []
    line = qtcheck.qt_problem({"DISPLAY": ":0"}, ldd=lambda p: seen.append(p) or LDD,
                              probe=lambda: probed.append(1) or (0, ""))
    assert seen == [plugin] and not probed  # the libraries are named before anything starts Qt
    assert line == ("Qt cannot open a window: its xcb plugin needs libxcb-icccm.so.4, libxcb-keysyms.so.1, "
                    "not installed; on Debian/Ubuntu run: sudo apt-get install libxcb-icccm4 libxcb-keysyms1")
    # offscreen / wayland do not load the xcb plugin: only the probe counts
    assert qtcheck.qt_problem({"QT_QPA_PLATFORM": "offscreen"}, ldd=lambda p: LDD, probe=lambda: (0, "")) is None
    # every library there, but Qt still aborts (no X server at DISPLAY): the probe's verdict, one line
    line = qtcheck.qt_problem({"DISPLAY": ":9"}, ldd=lambda p: "",
                              probe=lambda: (-6, "could not connect to display :9"))
    assert line.startswith("Qt cannot open a window here (a test QApplication was killed by SIGABRT: could not "
                           "connect to display :9)") and "\n" not in line


def test_no_binding_no_check(monkeypatch):
    monkeypatch.setattr(qtcheck.importlib.util, "find_spec", lambda name: None)
    assert qtcheck.qt_problem({"DISPLAY": ":0"}, ldd=lambda p: LDD, probe=lambda: (-6, "")) is None


def test_probe_survives_an_abort(monkeypatch):
    """A subprocess that aborts the way Qt does (SIGABRT) is reported, and this process lives on."""
    monkeypatch.setattr(qtcheck, "PROBE", "import os, sys\nsys.stderr.write('qt.qpa.plugin: no xcb\\n')\nos.abort()\n")
    status, last = qtcheck.probe_qt()
    assert status == -6 and last == "qt.qpa.plugin: no xcb"


def test_cli_view_missing_xcb_libraries_exit_2(tmp_path, monkeypatch, capsys):
    """The whole command: one line on stderr naming the packages, exit status 2."""
    run = tmp_path / "run"
    run.mkdir()
    patterns = np.ones((1, 3, 3, 3), np.float32)
    save_npz(run / "patterns.npz", patterns=patterns, coefficients=np.ones((2, 1)), genes=np.array(["a", "b"]),
             pattern_names=np.array(["PP1"]), spacing_um=np.array([200.0, 200.0, 200.0]),
             support=np.ones((3, 3, 3), bool))
    _fake_binding(monkeypatch, tmp_path / "site")
    monkeypatch.setattr(qtcheck, "_ldd", lambda path: LDD)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setitem(sys.modules, "napari", types.SimpleNamespace(Viewer=None, run=None))
    monkeypatch.setattr(sys, "argv", ["osnmf", "view", str(run), "--no-annotation"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert err == ("error: Qt cannot open a window: its xcb plugin needs libxcb-icccm.so.4, libxcb-keysyms.so.1, "
                   "not installed; on Debian/Ubuntu run: sudo apt-get install libxcb-icccm4 libxcb-keysyms1\n")


def test_readme_names_the_packages():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for package in ("libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0"):
        assert package in readme
