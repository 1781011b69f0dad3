"""Can Qt open a window here? Asked before napari starts, because Qt aborts the whole process
(SIGABRT, exit 134, Qt's own messages only) when its platform plugin cannot load.

Two checks, cheapest first:

1. the shared libraries of Qt's ``xcb`` platform plugin (``platforms/libqxcb.so`` of the installed
   Qt binding) that the dynamic loader cannot find (``ldd`` says ``not found``), named as the
   Debian/Ubuntu packages that ship them (:func:`debian_package`);
2. a throw-away ``QApplication`` in a subprocess (:func:`probe_qt`), which catches the rest (no X
   server at ``DISPLAY``, a broken plugin) without taking this process down.

:func:`qt_problem` returns one line saying what to install or fix, or None when Qt starts.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

BINDINGS = ("PyQt5", "PyQt6", "PySide2", "PySide6")
PROBE = "import sys\nfrom qtpy.QtWidgets import QApplication\nQApplication(sys.argv[:1])\n"
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)
_SONAME = re.compile(r"^(lib.+?)\.so\.(\d+)")


def debian_package(soname: str) -> str:
    """The Debian package of a shared library, by Debian's naming policy: ``libxcb-cursor.so.0`` →
    ``libxcb-cursor0``, ``libxkbcommon-x11.so.0`` → ``libxkbcommon-x11-0`` (a dash when the name
    ends in a digit), lower case (``libX11-xcb.so.1`` → ``libx11-xcb1``)."""
    match = _SONAME.match(soname)
    if match is None:
        return soname
    name, version = match.group(1).lower(), match.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def missing_libraries(ldd_output: str) -> list[str]:
    """Sonames that ``ldd`` reports as ``not found``, each once, in the order listed."""
    return list(dict.fromkeys(_NOT_FOUND.findall(ldd_output)))


def xcb_plugins() -> list[Path]:
    """``platforms/libqxcb.so`` of every installed Qt binding (none without a binding)."""
    found = []
    for binding in BINDINGS:
        try:
            spec = importlib.util.find_spec(binding)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            found += sorted(Path(root).glob("**/platforms/libqxcb.so"))
    return found


def _ldd(path: Path) -> str:
    try:
        done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def probe_qt(timeout: float = 60.0) -> tuple[int, str]:
    """Start a ``QApplication`` in a subprocess: (its exit status, its last stderr line)."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return 0, ""  # slow, not broken: napari will say more
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    telling = [line for line in lines if "could not" in line.lower()]  # Qt's reason, not its plugin list
    return done.returncode, (telling or lines or [""])[-1]


def uses_xcb(environ=None) -> bool:
    """Whether Qt will use its xcb (X11) plugin: ``QT_QPA_PLATFORM`` unset (Linux default) or xcb."""
    environ = os.environ if environ is None else environ
    platform = environ.get("QT_QPA_PLATFORM", "")
    return sys.platform.startswith("linux") and (platform == "" or platform.startswith("xcb"))


def qt_problem(environ=None, ldd=None, probe=None) -> str | None:
    """One line on why Qt cannot open a window here, or None (also None without a Qt binding:
    napari then says that itself). ``ldd(path) -> text`` and ``probe() -> (status, line)`` default
    to running ``ldd`` and :func:`probe_qt`."""
    ldd, probe = ldd or _ldd, probe or probe_qt
    plugins = xcb_plugins()
    if not plugins and not any(_has(b) for b in BINDINGS):
        return None
    if uses_xcb(environ):
        missing = list(dict.fromkeys(lib for plugin in plugins for lib in missing_libraries(ldd(plugin))))
        if missing:
            packages = " ".join(dict.fromkeys(debian_package(lib) for lib in missing))
            return (f"Qt cannot open a window: its xcb plugin needs {', '.join(missing)}, not installed; "
                    f"on Debian/Ubuntu run: sudo apt-get install {packages}")
    status, last = probe()
    if status != 0:
        how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
        return (f"Qt cannot open a window here (a test QApplication {how}: {last or 'no message'}); "
                "check DISPLAY, or set QT_QPA_PLATFORM=offscreen for screenshots")
    return None


def _has(binding: str) -> bool:
    try:
        return importlib.util.find_spec(binding) is not None
    except (ImportError, ValueError):
        return False
