"""One bounded HTTP GET into a file: a wall-clock cap, a body limit and safe redirects.

:func:`get_to_file` (standard library ``http.client``) enforces, whatever the server does:

- ``timeout``: the longest a connection may stay silent (each connect, TLS handshake and receive);
- ``max_seconds``: the whole attempt, headers and body, wall clock. A watchdog shuts the socket
  down at the deadline, so a server trickling a byte every few seconds (never silent for
  ``timeout``) is cut off at ``max_seconds`` too, also while it sends the headers;
- ``max_bytes``: the body; a larger ``Content-Length`` is refused before reading, a longer body
  when it passes the limit;
- redirects: followed (at most :data:`MAX_REDIRECTS`) only to http(s) on the same host; another
  host or scheme (``ftp://``, ``file://``) is refused.

Failures are :class:`Permanent` (retrying cannot help), :class:`Transient` or :class:`Unreachable`
(no HTTP answer at all: worth an http try if it was https). A failed write to ``dest`` (disk full,
read-only) is a :class:`~osnmf.errors.StorageError` naming the file, never a "connection error".
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
import urllib.parse
from pathlib import Path

from osnmf.errors import storage_error

CHUNK_BYTES = 1 << 16
MAX_REDIRECTS = 5
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
PERMANENT_HTTP_CODES = frozenset({400, 401, 403, 404, 410})


class Permanent(Exception):
    """A failure that retrying cannot fix (e.g. HTTP 404, a refused redirect); ``status``: the
    HTTP status when the server answered with one (also on :class:`Transient`), else None."""

    status: int | None = None


class Transient(Exception):
    """A failure worth retrying (server error, timeout, short body, too slow)."""

    status: int | None = None


class Unreachable(Transient):
    """No HTTP answer at all (TLS failure, refused connection, unknown host)."""


class _Watchdog:
    """Shuts the connection's socket down at ``deadline`` (monotonic seconds) unless cancelled."""

    def __init__(self, conn: http.client.HTTPConnection, deadline: float):
        self.conn, self.fired = conn, threading.Event()
        self.sock: socket.socket | None = None  # kept: the connection forgets it once a response will close
        self.timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        self.fired.set()
        sock = self.sock or self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv in the reading thread
            except OSError:
                pass

    def cancel(self) -> None:
        self.timer.cancel()


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return kind(parts.hostname, parts.port, timeout=timeout), target


def _redirect(url: str, location: str | None, code: int) -> str:
    """The URL to follow from a ``code`` redirect of ``url``; Permanent if it leaves the host or http(s)."""
    if not location:
        raise Permanent(f"HTTP {code} redirect without a Location")
    new = urllib.parse.urljoin(url, location)
    old_parts, new_parts = urllib.parse.urlsplit(url), urllib.parse.urlsplit(new)
    if new_parts.scheme not in ("http", "https"):
        raise Permanent(f"redirected to {new[:120]}, not http(s); refused")
    if new_parts.hostname != old_parts.hostname:
        raise Permanent(f"redirected to another host ({new_parts.hostname}); refused")
    return new


def get_bytes(url: str, timeout: float, max_bytes: int, max_seconds: float, headers: dict[str, str]) -> bytes:
    """GET ``url`` into memory (at most ``max_bytes``), under the same bounds as :func:`get_to_file`."""
    sink = _Memory()
    get_to_file(url, sink, timeout, max_bytes, max_seconds, headers)
    return sink.data.getvalue()


def get_to_file(url: str, dest: Path | _Memory, timeout: float, max_bytes: int, max_seconds: float,
                headers: dict[str, str]) -> int:
    """GET ``url`` into the file ``dest`` (created or truncated); returns the body's byte count."""
    deadline = time.monotonic() + max_seconds
    for _ in range(MAX_REDIRECTS + 1):
        conn, target = _connection(url, timeout)
        watchdog = _Watchdog(conn, deadline)
        received = [0]
        try:
            location = _attempt(conn, watchdog, target, dest, max_bytes, headers, received)
            if watchdog.fired.is_set():  # the shut-down socket reads as an end of file
                raise Transient("cut off")
        except (OSError, http.client.HTTPException, Transient) as exc:
            if watchdog.fired.is_set():
                raise Transient(f"too slow: {received[0]} bytes in {max_seconds:g} s") from None
            raise _transient(exc, timeout, received[0]) from None
        finally:
            watchdog.cancel()
            conn.close()
        if location is None:
            return received[0]
        url = _redirect(url, *location)
    raise Permanent(f"more than {MAX_REDIRECTS} redirects")


def _attempt(conn, watchdog: _Watchdog, target: str, dest: Path, max_bytes: int, headers: dict,
             received: list[int]) -> tuple[str | None, int] | None:
    """One request on ``conn``; a redirect's (Location, code), else None after writing the body."""
    try:
        conn.connect()
    except TimeoutError:
        raise
    except OSError as exc:  # refused, reset, TLS handshake failure, unknown host
        raise Unreachable(f"connection failed ({exc})") from None
    watchdog.sock = conn.sock
    conn.request("GET", target, headers=headers)
    response = conn.getresponse()
    if response.status in REDIRECT_CODES:
        return response.getheader("Location"), response.status
    if response.status >= 300:
        error = (Permanent if response.status in PERMANENT_HTTP_CODES else Transient)(
            f"HTTP {response.status} {response.reason}")
        error.status = response.status
        raise error
    length_text = response.getheader("Content-Length")
    expected = int(length_text) if length_text and length_text.isdigit() else None
    if expected is not None and expected > max_bytes:
        raise Permanent(f"server announces {expected} bytes, more than the {max_bytes}-byte limit")
    with dest.reset() if isinstance(dest, _Memory) else _Sink(dest) as sink:
        while True:  # read1: returns after one receive, so the deadline is checked while trickling
            chunk = response.read1(CHUNK_BYTES)
            if not chunk:
                break
            received[0] += len(chunk)
            if received[0] > max_bytes:
                raise Permanent(f"body exceeds the {max_bytes}-byte limit")
            sink.write(chunk)
    if expected is not None and received[0] != expected:
        raise Transient(f"body cut short: {received[0]} of {expected} bytes")
    if received[0] == 0:
        raise Transient("empty response body")
    return None


class _Memory:
    """An in-memory body (:func:`get_bytes`); emptied at each attempt (a redirect starts afresh)."""

    def __init__(self):
        self.data = io.BytesIO()

    def reset(self) -> _Memory:
        self.data = io.BytesIO()
        return self

    def write(self, data: bytes) -> None:
        self.data.write(data)

    def __enter__(self) -> _Memory:
        return self

    def __exit__(self, *exc) -> None:
        pass


class _Sink:
    """The body's file; its OSErrors (disk full, read-only) become StorageError naming it."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.handle = open(path, "wb")  # noqa: SIM115 (closed in __exit__)
        except OSError as exc:
            raise storage_error(exc, path) from None

    def write(self, data: bytes) -> None:
        try:
            self.handle.write(data)
        except OSError as exc:
            raise storage_error(exc, self.path) from None

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.handle.close()
        except OSError as err:
            if exc[0] is None:
                raise storage_error(err, self.path) from None


def _transient(exc: BaseException, timeout: float, received: int) -> Transient:
    if isinstance(exc, Transient):
        return exc
    if isinstance(exc, TimeoutError):
        return Transient(f"timed out after {timeout:g} s without data")
    if isinstance(exc, http.client.IncompleteRead):
        return Transient(f"body cut short: {received} bytes then the connection closed")
    return Transient(f"connection error ({type(exc).__name__}: {exc})")
