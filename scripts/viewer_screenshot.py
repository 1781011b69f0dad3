"""Screenshot of ``osnmf view RUN`` in a real napari window, and what its canvas shows.

Needs the viewer extra (``pip install 'osnmf[viewer]'``) and a display; on a headless machine
run it under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/viewer_screenshot.py demo_out view.png

Prints the layers (name, colour, visible, contrast limits beside the volume's maximum), the
overlay at the opening section and after the slider moves 15 sections (a second screenshot,
``*_section<N>.png``), the coronal section the window opened on, and canvas statistics: the fraction of lit pixels (any channel above 40 of 255) and the number of grid cells
with lit pixels. Exits 1 when the canvas is black.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main(run_dir: str, path: str) -> int:
    from qtpy.QtWidgets import QApplication

    from osnmf.viewer import view_run

    viewer = view_run(run_dir, show=False)
    viewer.window._qt_window.resize(1600, 1000)
    deadline = time.monotonic() + 60  # let the window draw (slicing and rendering are asynchronous)
    while True:
        for _ in range(50):
            QApplication.processEvents()
            time.sleep(0.02)
        canvas = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3]
        if (canvas.max(axis=-1) > 40).mean() > 0.01 or time.monotonic() > deadline:
            break
    viewer.screenshot(path, canvas_only=False, flash=False)
    opened = viewer.dims.current_step[0]
    text = getattr(getattr(viewer.canvas, "overlays", None), "text", None) or viewer.text_overlay
    print(f"overlay at the opening section: {text.text!r}")
    for layer in viewer.layers:
        colour = getattr(getattr(layer, "colormap", None), "name", "")
        limits = getattr(layer, "contrast_limits", None)
        top = float(np.nanmax(layer.data)) if layer.data.dtype.kind == "f" else None
        print(f"layer {layer.name!r:40} visible={layer.visible} colormap={colour} contrast_limits={limits}"
              + (f" (volume max {top:.4g})" if top is not None else ""))
    moved = max(0, opened - 15)  # the slider moves: the overlay must follow
    viewer.dims.set_current_step(0, moved)
    for _ in range(50):
        QApplication.processEvents()
        time.sleep(0.02)
    second = path.replace(".png", f"_section{moved + 1}.png")
    viewer.screenshot(second, canvas_only=False, flash=False)
    print(f"overlay after moving the slider to section {moved + 1}: {text.text!r}; screenshot: {second}")
    grid = getattr(getattr(viewer, "canvas", None), "grid", None) or viewer.grid
    print(f"opened on AP section {opened + 1} of {viewer.dims.nsteps[0]}; "
          f"grid {'on' if grid.enabled else 'off'}")
    lit = canvas.max(axis=-1) > 40
    rows, cols = grid.actual_shape(list(viewer.layers)) if grid.enabled else (1, 1)
    h, w = lit.shape
    cells = [lit[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols].mean()
             for r in range(rows) for c in range(cols)]
    print(f"canvas {w}×{h}: {100 * lit.mean():.1f}% lit pixels; {sum(f > 0.01 for f in cells)} of {len(cells)} "
          f"grid cells lit; screenshot: {path}")
    viewer.close()
    return 0 if lit.mean() > 0.01 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
