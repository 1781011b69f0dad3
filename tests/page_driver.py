"""Drive a page in headless Chromium the way a reader does: click, type, press keys, move the mouse.

Built on :mod:`browser_check`'s DevTools pipe client; input goes through ``Input.dispatch*`` so the
page receives real mouse and keyboard events::

    with open_page("report.html") as page:
        page.click("#av-gene")
        page.type_text("Calb1")
        print(page.text("#av-gene-info"))
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from browser_check import BrowserError, _DevTools, _start, _stop


class Page:
    """One tab of a running Chromium, attached through DevTools."""

    def __init__(self, dt: _DevTools, session: str):
        self.dt, self.session = dt, session

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.dt.send(method, params, session=self.session)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (promises awaited); page exceptions raise."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                               "returnByValue": True})
        if "exceptionDetails" in reply:
            raise BrowserError(f"page script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> None:
        """Poll until ``expression`` is truthy."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression}")
            time.sleep(0.05)

    def box(self, selector: str) -> dict:
        """The element's box in viewport pixels (scrolled into view first)."""
        return self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return {x: r.left, y: r.top, width: r.width, height: r.height}; })()")

    def mouse(self, kind: str, x: float, y: float, **extra) -> None:
        self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **extra})

    def click_at(self, selector: str, fx: float, fy: float) -> None:
        """A left click at a point of the element, given as fractions of its width and height."""
        b = self.box(selector)
        x, y = b["x"] + fx * b["width"], b["y"] + fy * b["height"]
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, button="left", clickCount=1)
        self.mouse("mouseReleased", x, y, button="left", clickCount=1)

    def click(self, selector: str) -> None:
        """A left click in the middle of the element."""
        self.click_at(selector, 0.5, 0.5)

    def hover(self, selector: str, fx: float, fy: float) -> None:
        """Move the mouse to a point of the element, given as fractions of its width and height."""
        b = self.box(selector)
        self.mouse("mouseMoved", b["x"] + fx * b["width"], b["y"] + fy * b["height"])

    def type_text(self, text: str) -> None:
        """Type into the focused element (one input event per call)."""
        self.send("Input.insertText", {"text": text})

    def press(self, key: str, code: int, times: int = 1) -> None:
        """Press a named key (``ArrowRight``…, with its Windows key code) on the focused element."""
        for _ in range(times):
            for kind in ("rawKeyDown", "keyUp"):
                self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key,
                                                     "windowsVirtualKeyCode": code})

    def text(self, selector: str) -> str:
        return self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText")

    def canvas_png(self, selector: str) -> bytes:
        """The canvas's pixels as PNG."""
        url = self.evaluate(f"document.querySelector({json.dumps(selector)}).toDataURL('image/png')")
        return base64.b64decode(url.split(",", 1)[1])

    def screenshot(self, path: str | Path | None = None, selector: str | None = None) -> bytes:
        """PNG of the viewport, or of one element's box (scrolled into view)."""
        params: dict = {"format": "png"}
        if selector is not None:
            b = self.box(selector)
            x, y = self.evaluate("[window.scrollX, window.scrollY]")
            params.update(captureBeyondViewport=True,
                          clip={**b, "x": b["x"] + x, "y": b["y"] + y, "scale": 1})
        png = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        if path is not None:
            Path(path).write_bytes(png)
        return png

    def errors(self) -> list[str]:
        """Uncaught exceptions and console errors so far."""
        out = []
        for event in self.dt.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(str(params["exceptionDetails"].get("exception", {}).get("description", params)))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        return out


@contextmanager
def open_page(path: str | Path, width: int = 1280, height: int = 1000, timeout: float = 20.0):
    """Load a local file in headless Chromium and yield its :class:`Page`."""
    url = Path(path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="osnmf-chromium-") as tmp:
        log = Path(tmp) / "chromium.log"
        proc, wfd, rfd = _start(Path(tmp) / "profile", log)
        try:
            dt = _DevTools(proc, wfd, rfd, log)
            tab = dt.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = dt.send("Target.attachToTarget", {"targetId": tab, "flatten": True}, timeout=timeout)["sessionId"]
            page = Page(dt, session)
            for domain in ("Page", "Runtime"):
                page.send(f"{domain}.enable")
            page.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            dt.events.clear()  # only what the page itself causes
            page.send("Page.navigate", {"url": url})
            dt.wait_event("Page.loadEventFired", timeout=timeout)
            yield page
        finally:
            _stop(proc, (wfd, rfd))
