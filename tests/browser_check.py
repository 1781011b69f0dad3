"""Open a report in headless Chromium and check it the way a reader would see it.

Used by ``tests/test_report_browser.py`` and reusable on a real run::

    from browser_check import check_report   # tests/ is on sys.path under pytest
    result = check_report("demo_out/report.html")
    assert result["ok"], result["problems"]

The browser is driven through the Chrome DevTools protocol over ``--remote-debugging-pipe``
(file descriptors 3 and 4, NUL-separated JSON), so no port is opened and only the standard library
is needed. Chromium comes from the distribution (``.ci/install-browser``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "run .ci/install-browser (as root) to install Debian's chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--no-default-browser-check", "--disable-dev-shm-usage", "--remote-debugging-pipe",
)

# Runs in the page after the load event: every <img> decoded with a non-zero natural size.
IMAGES_JS = """
(async (texts) => {
  const imgs = Array.from(document.images);
  const out = [];
  for (const img of imgs) {
    let error = null;
    try { await img.decode(); } catch (e) { error = String(e); }
    out.push({alt: img.alt, complete: img.complete, width: img.naturalWidth,
              height: img.naturalHeight, scheme: img.currentSrc.split(':')[0], error: error});
  }
  const body = document.body.innerText;
  return {images: out, title: document.title, text_length: body.length,
          texts_found: texts.map(t => body.includes(t)),
          scripts: document.scripts.length, height: document.documentElement.scrollHeight,
          scroll_width: document.documentElement.scrollWidth};
})(%s)
"""


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or did not answer in time."""


def chromium_path() -> str:
    """The Chromium binary, or a :class:`BrowserError` that says how to install it."""
    binary = os.environ.get("OSNMF_CHROMIUM", DEFAULT_CHROMIUM)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise BrowserError(f"headless Chromium not found at {binary}; {INSTALL_HINT}")
    return binary


class _DevTools:
    """Minimal DevTools client over the pipe pair (we write to Chromium's fd 3, read its fd 4)."""

    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int, log: Path):
        self.proc, self.wfd, self.rfd, self.log = proc, to_browser, from_browser, log
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return ""

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer in time; log: {self._log_tail()}")
            ready, _, _ = select.select([self.rfd], [], [], min(left, 0.5))
            if not ready:
                if self.proc.poll() is not None:
                    raise BrowserError(f"Chromium exited with {self.proc.returncode}; log: {self._log_tail()}")
                continue
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed the DevTools pipe; log: {self._log_tail()}")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 20.0) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.wfd, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 20.0) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event


def _start(user_dir: Path, log: Path) -> tuple[subprocess.Popen, int, int]:
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()

    def wire_fds() -> None:  # in the child: its fd 3 reads our commands, its fd 4 writes replies
        import fcntl

        a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
        os.dup2(a, 3)
        os.dup2(b, 4)

    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={user_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, close_fds=False,
            preexec_fn=wire_fds, start_new_session=True,
        )
    os.close(to_r)
    os.close(from_w)
    return proc, to_w, from_r


def _stop(proc: subprocess.Popen, fds: tuple[int, int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    if proc.poll() is None:
        try:
            proc.wait(timeout=3)  # closing the pipe makes Chromium quit
        except subprocess.TimeoutExpired:
            pass
    try:  # the browser's own process group: its renderer and utility children
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=10)


def screenshot_stats(png: bytes) -> dict:
    """Pixel statistics of a PNG screenshot: variance, distinct colours, non-white fraction."""
    import matplotlib.image as mpimg

    rgb = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    q = np.round(rgb * 255).astype(np.uint8).reshape(-1, 3)
    colours = np.unique(q[:, 0].astype(np.int32) << 16 | q[:, 1].astype(np.int32) << 8 | q[:, 2])
    return {
        "shape": list(rgb.shape[:2]),
        "variance": float(rgb.var()),
        "distinct_colours": int(colours.size),
        "non_white_fraction": float((q < 250).any(axis=1).mean()),
    }


def check_report(path: str | os.PathLike, width: int = 1280, height: int = 1600, timeout: float = 60.0,
                 screenshot_to: str | os.PathLike | None = None, texts: tuple[str, ...] = ()) -> dict:
    """Load ``path`` in headless Chromium; return what was seen and a list of problems.

    Returns a dict with ``ok`` (no problems), ``problems`` (list of str), ``images`` (one dict per
    ``<img>``: complete, width, height, scheme, error), ``console`` (error-level console/log
    messages and uncaught exceptions), ``requests`` (URLs the page asked for beyond itself and
    ``data:``), ``screenshot`` (:func:`screenshot_stats` of a ``width`` × ``height`` viewport shot),
    plus ``title``, ``text_length``, ``scripts`` (number of ``<script>`` elements), ``height``
    (page height, px), ``scroll_width`` (px; above ``width`` = horizontal scrolling) and
    ``texts_found`` ({text: whether the rendered page shows it}).
    Raises :class:`BrowserError` when Chromium is missing or does not answer within ``timeout``
    seconds in total.
    """
    target = Path(path).resolve()
    if not target.is_file():
        raise FileNotFoundError(f"no report at {target}")
    url = target.as_uri()
    with tempfile.TemporaryDirectory(prefix="osnmf-chromium-") as tmp:
        log = Path(tmp) / "chromium.log"
        proc, wfd, rfd = _start(Path(tmp) / "profile", log)
        try:
            return _inspect(_DevTools(proc, wfd, rfd, log), url, width, height,
                            time.monotonic() + timeout, screenshot_to, tuple(texts))
        finally:
            _stop(proc, (wfd, rfd))


def _inspect(dt: _DevTools, url: str, width: int, height: int, deadline: float, screenshot_to,
             texts: tuple[str, ...]) -> dict:
    def left() -> float:
        return max(deadline - time.monotonic(), 0.1)

    tab = dt.send("Target.createTarget", {"url": "about:blank"}, timeout=left())["targetId"]
    session = dt.send("Target.attachToTarget", {"targetId": tab, "flatten": True}, timeout=left())["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        dt.send(f"{domain}.enable", session=session, timeout=left())
    dt.send("Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session, timeout=left())
    dt.events.clear()  # only what the report itself causes
    nav = dt.send("Page.navigate", {"url": url}, session=session, timeout=left())
    problems: list[str] = []
    if nav.get("errorText"):
        problems.append(f"navigation failed: {nav['errorText']}")
    dt.wait_event("Page.loadEventFired", timeout=left())
    script = IMAGES_JS % json.dumps(list(texts))
    page = dt.send("Runtime.evaluate", {"expression": script, "awaitPromise": True, "returnByValue": True},
                   session=session, timeout=left())
    if "exceptionDetails" in page:
        raise BrowserError(f"image check script failed: {page['exceptionDetails']}")
    info = page["result"]["value"]
    shot = dt.send("Page.captureScreenshot", {"format": "png"}, session=session, timeout=left())
    png = base64.b64decode(shot["data"])
    if screenshot_to is not None:
        Path(screenshot_to).write_bytes(png)

    console, requests = [], []
    for event in dt.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            console.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            console.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                  for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            console.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            console.append(f"request failed: {params.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            requested = params["request"]["url"]
            if requested != url and not requested.startswith("data:"):
                requests.append(requested)

    images = info["images"]
    bad = [im for im in images if not (im["complete"] and im["width"] > 0 and im["height"] > 0) or im["error"]]
    problems += [f"image not loaded: {im['alt']!r} ({im['error'] or 'naturalWidth 0'})" for im in bad]
    problems += [f"console error: {c}" for c in console]
    problems += [f"page fetched {r} (the report must be self-contained)" for r in requests]
    stats = screenshot_stats(png)
    if stats["variance"] < 1e-4 or stats["distinct_colours"] < 8 or stats["non_white_fraction"] < 0.002:
        problems.append(f"screenshot looks blank: {stats}")
    return {"ok": not problems, "problems": problems, "images": images, "console": console,
            "requests": requests, "screenshot": stats, "title": info["title"],
            "text_length": info["text_length"], "scripts": info["scripts"], "height": info["height"],
            "scroll_width": info["scroll_width"],
            "texts_found": dict(zip(texts, info["texts_found"], strict=True))}
